// Times Telemetry's Prometheus text writer and parser on 100,000 series and writes the text
// to the path given as the first argument, so another implementation can parse the same bytes.
import Foundation
import Telemetry

let families = (0..<100).map { metric in
    MetricFamily(name: "bench_metric_\(metric)_total", help: "Benchmark counter \(metric).", type: .counter, samples: (0..<1000).map { series in
        Sample(name: "bench_metric_\(metric)_total",
               labels: [Label("service", "svc\(series % 20)"), Label("instance", "svc-\(series)"), Label("path", "/api/v1/items/\(series % 50)")],
               value: Double(series) * 1.5)
    })
}

func median(_ run: () throws -> Void) rethrows -> Double {
    var times: [Double] = []
    for _ in 0..<7 {
        let start = ContinuousClock.now
        try run()
        let elapsed = start.duration(to: .now)
        times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
    }
    return times.sorted()[times.count / 2]
}

var text: [UInt8] = []
let render = median { text = Exposition.render(families) }
var parsed = 0
let parse = try median { parsed = try ExpositionParser.parse(text).reduce(0) { $0 + $1.samples.count } }
precondition(parsed == 100_000)
if CommandLine.arguments.count > 1 { try Data(text).write(to: URL(fileURLWithPath: CommandLine.arguments[1])) }
print(String(format: "trellis render_ms %.1f parse_ms %.1f bytes %d", render, parse, text.count))
