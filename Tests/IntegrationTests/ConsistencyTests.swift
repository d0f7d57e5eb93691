import Foundation
import XCTest

/// Tests/Consistency/kv_history.py against the real binary: concurrent KV operations and blocking
/// queries while the registry is killed with -9 again and again; the history has no anomaly.
final class ConsistencyTests: XCTestCase {
    func testAHistoryOfKVOperationsAcrossKillNineHasNoAnomaly() throws {
        let tool = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Consistency/kv_history.py").path
        let dataDir = try temporaryDirectory(self) + "/data"
        let run = try runToEnd("/usr/bin/env", ["python3", tool, TrellisBinary.path, dataDir, "--seconds", "12", "--clients", "4",
                                                "--kill-every", "2", "--seed", "7"])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains(" 0 anomalies"), run.output)
        let kills = run.output.split(separator: "\n").last { $0.hasPrefix("history:") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        XCTAssertGreaterThanOrEqual(kills, 3, "the registry was killed several times: \(run.output)")
    }
}
