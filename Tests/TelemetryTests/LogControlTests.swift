import Logging
import Synchronization
@testable import Telemetry
import XCTest

/// Collects the lines a handler is given.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    let lines = Mutex<[String]>([])
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { lines.withLock { $0.append("\(event.level) \(event.message)") } }
}

final class LogControlTests: XCTestCase {
    func testTheDaemonsOutputFollowsTheControlsLevelAsItChanges() {
        let control = LogControl(level: .warning)
        let output = RecordingLogHandler()
        let logger = Logger(label: "t") { _ in ControlledLogHandler(output, label: "t", control: control) }
        logger.info("hidden")
        logger.warning("shown")
        control.level = .debug
        logger.debug("now shown")
        XCTAssertEqual(output.lines.withLock { $0 }, ["warning shown", "debug now shown"])
    }

    func testListenersGetLinesAtTheirOwnLevelUntilTheyUnsubscribe() {
        let control = LogControl(level: .error)
        let output = RecordingLogHandler()
        var logger = Logger(label: "registry") { _ in ControlledLogHandler(output, label: "registry", control: control) }
        logger[metadataKey: "node"] = "n1"
        let received = Mutex<[LogControl.Record]>([])
        let token = control.subscribe(level: .debug) { record in received.withLock { $0.append(record) } }
        XCTAssertEqual(control.threshold, .debug, "the logger lets through what the most verbose listener wants")
        logger.debug("for the listener", metadata: ["key": "a"])
        control.unsubscribe(token)
        logger.debug("for nobody")
        XCTAssertEqual(control.threshold, .error)
        let records = received.withLock { $0 }
        XCTAssertEqual(records.map(\.message), ["for the listener"])
        XCTAssertEqual(records.first?.label, "registry")
        XCTAssertEqual(records.first?.metadata.map { "\($0.key)=\($0.value)" }, ["key=a", "node=n1"])
        XCTAssertTrue(output.lines.withLock { $0 }.isEmpty, "the daemon's own output stays at error")
    }
}
