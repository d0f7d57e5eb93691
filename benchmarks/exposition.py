"""prometheus_client (Debian's python3-prometheus-client) on the same 100,000 series: writer and parser."""
import statistics, sys, time
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

def median_ms(run):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)

registry = CollectorRegistry()
for metric in range(100):
    counter = Counter("bench_metric_%d" % metric, "Benchmark counter %d." % metric, ["service", "instance", "path"], registry=registry)
    for series in range(1000):
        counter.labels("svc%d" % (series % 20), "svc-%d" % series, "/api/v1/items/%d" % (series % 50)).inc(series * 1.5)
render = median_ms(lambda: generate_latest(registry))
text = open(sys.argv[1]).read()
count = [0]
def parse():
    count[0] = sum(len(family.samples) for family in text_string_to_metric_families(text))
parse_ms = median_ms(parse)
assert count[0] == 100000, count[0]
print("python render_ms %.1f parse_ms %.1f" % (render, parse_ms))
