import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import TrellisCore
import TrellisHTTP

/// Sends the sidecar's log lines (service output and access log) to the collector as Loki JSON
/// pushes, under `{service, instance, job="trellis-sidecar"}`. The collector is found in the
/// registry (or given). Lines wait in a bounded queue while it is unreachable; past the bound the
/// oldest are dropped and counted. Every line is also on the sidecar's stdout.
final class LogForwarder: Sendable {
    private struct Queue {
        var lines: [LogLine] = []
        var instance = ""
        var collector: (host: String, port: Int)?
    }

    struct LogLine {
        var timestampNs: Int64
        var text: String
    }

    private let service: String
    private let capacity: Int
    private let queue = Mutex(Queue())
    private let metrics: SidecarMetrics

    init(service: String, capacity: Int = 20_000, metrics: SidecarMetrics) {
        self.service = service
        self.capacity = capacity
        self.metrics = metrics
    }

    func setInstance(_ instance: String) { queue.withLock { $0.instance = instance } }

    func setCollector(_ address: (host: String, port: Int)?) { queue.withLock { $0.collector = address } }

    /// Takes one or more newline-terminated lines.
    func enqueue(_ bytes: [UInt8]) {
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        let lines = bytes.split(separator: 0x0A).map { LogLine(timestampNs: now, text: String(decoding: $0, as: UTF8.self)) }
        let dropped = queue.withLock { queue -> Int in
            queue.lines.append(contentsOf: lines)
            let excess = max(0, queue.lines.count - capacity)
            queue.lines.removeFirst(excess)
            return excess
        }
        if dropped > 0 { metrics.logLinesDropped.increment(by: Int64(dropped)) }
    }

    /// Pushes queued lines every 250 ms until cancelled.
    func run(client: HTTPClient) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            while await pushBatch(client: client) == .more {}
        }
    }

    /// At shutdown: pushes what is queued, giving up at the first failure.
    func drain(client: HTTPClient) async {
        while await pushBatch(client: client) == .more {}
    }

    private enum BatchResult { case more, done }

    /// Pushes up to 5,000 lines; a batch that failed for a retryable reason goes back to the front.
    private func pushBatch(client: HTTPClient) async -> BatchResult {
        let (batch, instance, collector) = queue.withLock { queue in
            guard queue.collector != nil else { return ([LogLine](), queue.instance, queue.collector) }
            let batch = Array(queue.lines.prefix(5000))
            queue.lines.removeFirst(batch.count)
            return (batch, queue.instance, queue.collector)
        }
        guard let collector, !batch.isEmpty else { return .done }
        let stream = "{\"streams\":[{\"stream\":{\"job\":\"trellis-sidecar\",\"service\":\(JSON.string(service).text),\"instance\":\(JSON.string(instance).text)},\"values\":["
        var body = Array(stream.utf8)
        for (index, line) in batch.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: "[\"\(line.timestampNs)\",".utf8)
            JSON.writeString(line.text, into: &body)
            body.append(UInt8(ascii: "]"))
        }
        body.append(contentsOf: "]}]}".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        let status = try? await client.send(.POST, host: collector.host, port: collector.port, path: "/loki/api/v1/push",
                                            headers: headers, body: ByteBuffer(bytes: body), timeout: .seconds(10)).status.code
        switch status {
        case .some(200..<300):
            metrics.logLinesShipped.increment(by: Int64(batch.count))
            return batch.count == 5000 ? .more : .done
        case .some(400..<500) where status != 429:
            metrics.logLinesDropped.increment(by: Int64(batch.count))  // refused as invalid: retrying cannot help
            return .more
        default:
            queue.withLock { $0.lines.insert(contentsOf: batch, at: 0) }
            return .done
        }
    }
}
