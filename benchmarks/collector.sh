#!/usr/bin/env bash
# Collector benchmarks: (1) log lines through push-in -> disk buffer -> push-out, the collector
# pinned to one core (CPU 0), wrk and an nginx standing in for Loki on CPU 1; (2) the Prometheus
# text writer and parser on 100,000 series next to Python's prometheus_client on the same series.
source "$(dirname "$0")/common.sh"
LINES_PER_PUSH=1000

metric() { curl -s "127.0.0.1:19464/metrics" | awk -v m="$1" 'index($0, m) == 1 {sum += $NF} END {printf "%d", sum}'; }

/usr/bin/python3 benchmarks/make_push.py "$WORK/push.bin"
start_nginx 1 "location / { client_max_body_size 64m; return 204; }"
taskset -c 1 "$BIN" registry --http-addr 127.0.0.1:18500 --data-dir "$WORK/reg" --log-level error > /dev/null 2>&1 &
PIDS+=("$!")
sleep 0.5
taskset -c 0 "$BIN" collector --http-addr 127.0.0.1:19464 --data-dir "$WORK/col" --registry 127.0.0.1:18500 \
  --loki-url http://127.0.0.1:18080 --log-level error > /dev/null 2>&1 & COLLECTOR_PID=$!; PIDS+=("$COLLECTOR_PID")
for _ in $(seq 100); do curl -sf 127.0.0.1:19464/ready > /dev/null && break; sleep 0.1; done

echo "== log pipeline: $LINES_PER_PUSH lines of 200 bytes per push, snappy protobuf in and out, $DURATION"
cpu_before=$(cpu_ticks "$COLLECTOR_PID")
started=$(date +%s.%N)
out=$(PUSH_BODY="$WORK/push.bin" taskset -c 1 wrk -t1 -c8 -d"$DURATION" --latency -s benchmarks/push.lua http://127.0.0.1:19464/loki/api/v1/push)
pushed=$(echo "$out" | awk '/requests in/ {print $1}')
accepted=$(metric 'trellis_collector_log_lines_received_total{source="push"}')
while [ "$(metric trellis_collector_log_lines_shipped_total)" -lt "$accepted" ]; do sleep 0.1; done
drained=$(date +%s.%N)
cpu_after=$(cpu_ticks "$COLLECTOR_PID")
non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
echo "$out" | grep -E "Requests/sec|Latency|99%" | sed 's/^/  wrk: /'
awk -v a="$accepted" -v p="$pushed" -v s="$started" -v d="$drained" -v c0="$cpu_before" -v c1="$cpu_after" -v hz="$(getconf CLK_TCK)" -v n="${non2xx:-0}" 'BEGIN {
  secs = d - s
  printf "  accepted %d lines (%d pushes, %d non-2xx), all shipped after %.1f s: %.0f lines/s end to end\n", a, p, n, secs, a / secs
  printf "  collector CPU: %.2f s = %.2f us per line (%.0f lines per CPU-second)\n", (c1 - c0) / hz, (c1 - c0) / hz * 1e6 / a, a / ((c1 - c0) / hz)
}'
echo "  collector RSS: $(( $(rss_kib "$COLLECTOR_PID") / 1024 )) MiB"

echo "== exposition of 100,000 series (median of 7 runs; python: median of 3), one core"
swift build -c release --product exposition-bench > /dev/null
taskset -c 0 .build/release/exposition-bench "$WORK/exposition.txt" | sed 's/^/  /'
taskset -c 0 /usr/bin/python3 benchmarks/exposition.py "$WORK/exposition.txt" | sed 's/^/  /'
