import NIOCore
import NIOHTTP1
@testable import Policy
@testable import Sidecar
import XCTest

/// The attempt state machine, driven through tables of events on a manual clock (times are
/// milliseconds after the request's start).
final class AttemptMachineTests: XCTestCase {
    final class Instance: AttemptTarget {
        let address: String
        init(_ address: String) { self.address = address }
    }

    typealias Machine = AttemptMachine<Instance>
    typealias Action = Machine.Action

    enum Step {
        case start
        /// An attempt begins on the next of three instances (the chooser's part, done here).
        case attempt
        /// The connection is ready: expects the number of body parts to replay on it.
        case connected
        case body(bytes: Int)
        case requestEnded
        case head(status: Int, body: BodyLength)
        case fail(Machine.Failure)
        case noInstance
        case overflow
        /// The clock moves to this many milliseconds and the timer fires.
        case timer(at: Int)
        case responseEnded
    }

    enum Outcome: Equatable {
        case action(Action)
        case parts(Int)
        case body(Machine.BodyAction)
        case nothing
    }

    struct Row {
        let name: String
        var settings = RouteSettings(timeouts: Timeouts(connect: .seconds(1), perTry: nil, request: nil),
                                     retries: RetryPolicy(backoffBase: .zero), rateLimit: nil)
        var idempotent = true
        var budget = RetryBudgetPolicy()
        let steps: [(Step, Outcome)]
        /// Milliseconds of the deadline the machine wants after the last step; nil for none.
        var deadlineAfter: Int?? = .none
        var attempts: Int?
        var budgetExhausted = false
    }

    private let start = NIODeadline.uptimeNanoseconds(10_000_000_000)
    private func at(_ ms: Int) -> NIODeadline { start + .milliseconds(Int64(ms)) }

    private func run(_ row: Row, file: StaticString = #filePath, line: UInt = #line) {
        var settings = row.settings
        settings.retries.budget = row.budget
        var machine = Machine(upstream: "catalog", rules: AttemptRules(settings), idempotent: row.idempotent)
        var budget = RetryBudget(window: row.budget.window)
        var random = FastRandom()
        var now = start
        let instances = [Instance("10.0.0.1:80"), Instance("10.0.0.2:80"), Instance("10.0.0.3:80")]
        var next = 0
        for (index, (step, expected)) in row.steps.enumerated() {
            let outcome: Outcome
            switch step {
            case .start: outcome = .action(machine.start(now: now, budget: &budget))
            case .attempt:
                machine.attempt(on: instances[next % 3], now: now)
                next += 1
                outcome = .nothing
            case .connected: outcome = .parts(machine.connected().count)
            case .body(let bytes): outcome = .body(machine.bodyPart(ByteBuffer(repeating: 0x61, count: bytes)))
            case .requestEnded: outcome = .nothing
            case .head(let status, let body):
                outcome = .action(machine.responseHead(status: status, body: body, now: now, budget: &budget, random: &random))
            case .fail(let failure): outcome = .action(machine.failed(failure, now: now, budget: &budget, random: &random))
            case .noInstance: outcome = .action(machine.noInstance("catalog"))
            case .overflow: outcome = .action(machine.pendingOverflow(limit: 8))
            case .timer(let ms):
                now = at(ms)
                outcome = .action(machine.timerFired(now: now, budget: &budget, random: &random))
            case .responseEnded:
                machine.responseEnded()
                outcome = .nothing
            }
            XCTAssertEqual(outcome, expected, "\(row.name): step \(index + 1) (\(step))", file: file, line: line)
        }
        if case .some(let expected) = row.deadlineAfter {
            XCTAssertEqual(machine.deadline, expected.map(at), "\(row.name): deadline", file: file, line: line)
        }
        if let attempts = row.attempts { XCTAssertEqual(machine.attempts, attempts, "\(row.name): attempts", file: file, line: line) }
        XCTAssertEqual(machine.budgetExhausted, row.budgetExhausted, "\(row.name): budget exhausted", file: file, line: line)
    }

    private func answer(_ status: HTTPResponseStatus, _ reason: String, _ message: String) -> Outcome {
        .action(.respondLocally(LocalAnswer(status: status, reason: reason, message: message)))
    }

    private static func settings(perTry: Int? = nil, request: Int? = nil, attempts: Int = 2, allMethods: Bool = false,
                                 conditions: Set<RetryPolicy.Condition>? = nil, bufferLimit: Int = 64 * 1024) -> RouteSettings {
        var retries = RetryPolicy(attempts: attempts, allMethods: allMethods, backoffBase: .zero, bufferLimit: bufferLimit)
        if let conditions { retries.conditions = conditions }
        return RouteSettings(timeouts: Timeouts(connect: .seconds(1), perTry: perTry.map { .milliseconds(Int64($0)) },
                                                request: request.map { .milliseconds(Int64($0)) }),
                             retries: retries, rateLimit: nil)
    }

    func testWhichFailuresAreRetried() {
        let rows = [
            Row(name: "a refused connection is retried, on another attempt",
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.fail(.connect("connect to 10.0.0.1:80 failed: refused")), .action(.retry)),
                        (.timer(at: 0), .action(.connect))], attempts: 1),
            Row(name: "a refused connection is retried for a POST too", idempotent: false,
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.fail(.connect("refused")), .action(.retry))]),
            Row(name: "a reset is retried for a GET",
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)), (.fail(.reset), .action(.retry))]),
            Row(name: "a reset is not retried for a POST", idempotent: false,
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.fail(.reset), answer(.badGateway, "upstream_reset", "upstream catalog: connection to 10.0.0.1:80 closed before a response"))]),
            Row(name: "retry_on all retries a POST after a reset", settings: Self.settings(allMethods: true), idempotent: false,
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)), (.fail(.reset), .action(.retry))]),
            Row(name: "a listed status is retried",
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 503, body: .length(10)), .action(.retry))]),
            Row(name: "an unlisted status is the client's response",
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 500, body: .chunked), .action(.commit))]),
            Row(name: "a condition that is not listed is answered", settings: Self.settings(conditions: [.connectFailure]),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.fail(.reset), answer(.badGateway, "upstream_reset", "upstream catalog: connection to 10.0.0.1:80 closed before a response"))]),
            Row(name: "a failed connection without retries left is answered with 502", settings: Self.settings(attempts: 1),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.fail(.connect("refused")), .action(.retry)),
                        (.timer(at: 0), .action(.connect)), (.attempt, .nothing),
                        (.fail(.connect("connect to 10.0.0.2:80 failed: refused")),
                         answer(.badGateway, "connect_failure", "upstream catalog: connect to 10.0.0.2:80 failed: refused"))],
                attempts: 2),
            Row(name: "the status of the last attempt reaches the client", settings: Self.settings(attempts: 1),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 503, body: .chunked), .action(.retry)), (.timer(at: 0), .action(.connect)), (.attempt, .nothing),
                        (.connected, .parts(0)), (.head(status: 503, body: .chunked), .action(.commit))]),
        ]
        for row in rows { run(row) }
    }

    func testRetryBudget() {
        let noFloor = RetryBudgetPolicy(percent: 0, minRetriesPerSecond: 0, window: .seconds(10))
        run(Row(name: "an exhausted budget answers the failure", budget: noFloor,
                steps: [(.start, .action(.connect)), (.attempt, .nothing),
                        (.fail(.connect("refused")), answer(.badGateway, "connect_failure", "upstream catalog: refused"))],
                budgetExhausted: true))
        run(Row(name: "an exhausted budget passes a listed status on", budget: noFloor,
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 503, body: .chunked), .action(.commit))],
                budgetExhausted: true))
    }

    func testBackoffWaitsAJitteredDelayBelowTheBase() throws {
        var machine = Machine(upstream: "catalog", rules: AttemptRules(Self.settings()), idempotent: true)
        var budget = RetryBudget(window: .seconds(10))
        var random = FastRandom()
        let instance = Instance("10.0.0.1:80")
        XCTAssertEqual(machine.start(now: start, budget: &budget), .connect)
        machine.attempt(on: instance, now: start)
        XCTAssertEqual(machine.failed(.reset, now: start, budget: &budget, random: &random), .retry)
        XCTAssertEqual(machine.deadline, start, "a zero base waits for nothing")

        var jittered = Machine(upstream: "catalog", rules: AttemptRules(RouteSettings(timeouts: .init(), retries: .init(), rateLimit: nil)),
                               idempotent: true)
        XCTAssertEqual(jittered.start(now: start, budget: &budget), .connect)
        jittered.attempt(on: instance, now: start)
        XCTAssertEqual(jittered.failed(.reset, now: start, budget: &budget, random: &random), .retry)
        let wait = try XCTUnwrap(jittered.deadline) - start
        XCTAssertLessThanOrEqual(wait, .milliseconds(25), "the first retry waits at most the base (25ms)")
        XCTAssertEqual(jittered.timerFired(now: start + wait - .nanoseconds(1), budget: &budget, random: &random), .none, "not before the backoff")
        XCTAssertEqual(jittered.timerFired(now: start + wait, budget: &budget, random: &random), .connect)
    }

    func testDeadlines() {
        let rows = [
            Row(name: "a per-try timeout is retried, the last one answered 504",
                settings: Self.settings(perTry: 100, attempts: 1, conditions: [.timeout]),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.timer(at: 100), .action(.retry)), (.timer(at: 100), .action(.connect)), (.attempt, .nothing),
                        (.connected, .parts(0)),
                        (.timer(at: 200), answer(.gatewayTimeout, "timeout", "upstream catalog: no response from 10.0.0.2:80 within 100 ms"))],
                deadlineAfter: .some(nil)),
            Row(name: "a per-try timeout leaves time for one more try but not two",
                settings: Self.settings(perTry: 100, request: 150, conditions: [.timeout]),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.timer(at: 100), .action(.retry)), (.timer(at: 100), .action(.connect)), (.attempt, .nothing),
                        (.timer(at: 150), answer(.gatewayTimeout, "timeout", "upstream catalog: no response within 150 ms"))],
                deadlineAfter: .some(nil), attempts: 2),
            Row(name: "the per-try deadline is the nearer one while it comes first", settings: Self.settings(perTry: 100, request: 150),
                steps: [(.start, .action(.connect)), (.attempt, .nothing)], deadlineAfter: 100),
            Row(name: "after a failure the next deadline is the end of the backoff", settings: Self.settings(request: 50),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.fail(.reset), .action(.retry))], deadlineAfter: 0),
            Row(name: "the request deadline ends at the response head", settings: Self.settings(request: 50),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .chunked), .action(.commit)), (.timer(at: 60), .action(.none))],
                deadlineAfter: .some(nil)),
            Row(name: "a per-try timeout after the response started cuts it", settings: Self.settings(perTry: 100),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .chunked), .action(.commit)), (.timer(at: 100), .action(.abortResponse))]),
            Row(name: "a timer that fires early does nothing", settings: Self.settings(perTry: 100),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.timer(at: 99), .action(.none))], deadlineAfter: 100),
        ]
        for row in rows { run(row) }
    }

    func testReplayOfTheRequestBody() {
        let rows = [
            Row(name: "a body that fits is replayed on the next attempt", settings: Self.settings(allMethods: true, bufferLimit: 100),
                idempotent: false,
                steps: [(.start, .action(.connect)), (.body(bytes: 40), .body(.wait)), (.attempt, .nothing), (.connected, .parts(1)),
                        (.body(bytes: 40), .body(.write)), (.requestEnded, .nothing), (.fail(.reset), .action(.retry)),
                        (.timer(at: 0), .action(.connect)), (.attempt, .nothing), (.connected, .parts(2))]),
            Row(name: "a POST whose body was partly streamed is not retried", settings: Self.settings(allMethods: true, bufferLimit: 100),
                idempotent: false,
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)), (.body(bytes: 60), .body(.write)),
                        (.body(bytes: 60), .body(.write)),
                        (.fail(.reset), answer(.badGateway, "upstream_reset", "upstream catalog: connection to 10.0.0.1:80 closed before a response"))]),
            Row(name: "more waiting than a replay keeps pauses the client and is sent once", settings: Self.settings(bufferLimit: 100),
                steps: [(.start, .action(.connect)), (.body(bytes: 60), .body(.wait)), (.body(bytes: 60), .body(.waitAndPause)),
                        (.attempt, .nothing), (.connected, .parts(2)),
                        (.fail(.reset), answer(.badGateway, "upstream_reset", "upstream catalog: connection to 10.0.0.1:80 closed before a response"))]),
            Row(name: "a part after the answer is dropped",
                steps: [(.start, .action(.connect)), (.noInstance, answer(.serviceUnavailable, "no_healthy_upstream", "no healthy instance of catalog")),
                        (.body(bytes: 10), .body(.drop))]),
        ]
        for row in rows { run(row) }
    }

    func testSmallResponsesAreHeldUntilCompleteAndRetriedWhenCut() {
        let rows = [
            Row(name: "a small response cut before its end is retried",
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .length(361)), .action(.hold)), (.fail(.reset), .action(.retry)),
                        (.timer(at: 0), .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .length(361)), .action(.hold)), (.responseEnded, .nothing)],
                deadlineAfter: .some(nil), attempts: 2),
            Row(name: "a response is not held when no retry is left", settings: Self.settings(attempts: 0),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .length(361)), .action(.commit))]),
            Row(name: "a held response that cannot be retried any more is answered 502",
                budget: RetryBudgetPolicy(percent: 0, minRetriesPerSecond: 0, window: .seconds(10)),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .length(361)), .action(.hold)),
                        (.fail(.reset), answer(.badGateway, "upstream_reset",
                                               "upstream catalog: connection to 10.0.0.1:80 closed before the response was complete"))],
                budgetExhausted: true),
            Row(name: "a per-try timeout while held is retried", settings: Self.settings(perTry: 100, conditions: [.reset, .timeout]),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .length(10)), .action(.hold)), (.timer(at: 100), .action(.retry))]),
            Row(name: "a response larger than the replay limit goes out as it comes", settings: Self.settings(bufferLimit: 100),
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .length(101)), .action(.commit)), (.fail(.reset), .action(.abortResponse))]),
            Row(name: "a chunked response goes out as it comes",
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .chunked), .action(.commit)), (.fail(.reset), .action(.abortResponse))]),
            Row(name: "a POST's response is not held: it could not be retried", idempotent: false,
                steps: [(.start, .action(.connect)), (.attempt, .nothing), (.connected, .parts(0)),
                        (.head(status: 200, body: .length(10)), .action(.commit))]),
        ]
        for row in rows { run(row) }
    }

    func testTheSidecarsOwnAnswers() {
        run(Row(name: "no instance", steps: [(.start, .action(.connect)),
                                              (.noInstance, answer(.serviceUnavailable, "no_healthy_upstream", "no healthy instance of catalog"))],
                deadlineAfter: .some(nil)))
        run(Row(name: "the pool's queue is full", steps: [(.start, .action(.connect)), (.attempt, .nothing),
                                                          (.overflow, answer(.serviceUnavailable, "overflow",
                                                                             "upstream catalog: too many pending requests (circuit breaker max_pending_requests 8)"))]))
        run(Row(name: "the request timeout while connecting", settings: Self.settings(request: 30),
                steps: [(.start, .action(.connect)), (.attempt, .nothing),
                        (.timer(at: 30), answer(.gatewayTimeout, "timeout", "upstream catalog: no response within 30 ms"))]))
    }

    func testEachAttemptIsRecordedInOrder() {
        var machine = Machine(upstream: "catalog", rules: AttemptRules(Self.settings()), idempotent: true)
        var budget = RetryBudget(window: .seconds(10))
        var random = FastRandom()
        let (a, b) = (Instance("a"), Instance("b"))
        _ = machine.start(now: start, budget: &budget)
        XCTAssertTrue(machine.tried.isEmpty)
        machine.attempt(on: a, now: start)
        _ = machine.failed(.reset, now: start, budget: &budget, random: &random)
        _ = machine.timerFired(now: start, budget: &budget, random: &random)
        machine.attempt(on: b, now: start)
        XCTAssertTrue(machine.tried.contains(a) && machine.tried.contains(b))
        XCTAssertFalse(machine.tried.contains(Instance("c")))
        XCTAssertTrue(machine.tried.last === b)
    }
}
