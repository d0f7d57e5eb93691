import NIOCore
import NIOHTTP1
import Policy

/// What an attempt is sent to: an upstream instance.
protocol AttemptTarget: AnyObject {
    /// `host:port`, for the sidecar's own answers.
    var address: String { get }
}

/// A response the sidecar makes itself, with the reason it gives in `x-trellis-error` (an error
/// where a stage refuses the request with it).
struct LocalAnswer: Equatable, Error {
    var status: HTTPResponseStatus
    var reason: String
    var message: String
    /// A JSON body sent instead of the plain-text message (the gateway's refusals).
    var json: String?
    /// Further header lines (an authentication challenge, CORS).
    var headerLines: [HeaderLine]

    init(status: HTTPResponseStatus, reason: String, message: String, json: String? = nil, headerLines: [(String, String)] = []) {
        self.status = status
        self.reason = reason
        self.message = message
        self.json = json
        self.headerLines = headerLines.map { HeaderLine(name: $0.0, value: $0.1) }
    }
}

/// One response header line the proxy adds.
struct HeaderLine: Equatable {
    var name: String
    var value: String
}

/// The life of one proxied request from admission to the end of its response: attempts, which
/// failures are retried, the retry budget, backoff with jitter, replay of the body, per-try and
/// whole-request deadlines, and what the sidecar answers itself.
///
/// A plain value with no I/O: the handler feeds it events (`start`, `connected`, `responseHead`,
/// `failed`, `timerFired`, …) and performs the actions it returns. The one deadline it wants next
/// is `deadline`; the handler calls `timerFired` once it has passed.
struct AttemptMachine<Instance: AttemptTarget> {
    enum Failure: Equatable {
        /// No connection could be made: the request never reached the instance.
        case connect(String)
        /// The connection ended before the response was complete.
        case reset
    }

    enum Action: Equatable {
        case none
        /// Choose an instance (one not in `tried` while another is left) and call `attempt(on:)`,
        /// or `noInstance` when there is none.
        case connect
        /// Drop the attempt's connection; the next attempt starts when `deadline` has passed.
        case retry
        /// Keep the response (head and body) until it is complete: the client has seen none of it,
        /// so a failure before its end can still be retried.
        case hold
        /// Send the response to the client as it comes.
        case commit
        /// Drop the attempt and answer the client with this.
        case respondLocally(LocalAnswer)
        /// The response failed after part of it reached the client: close the client's connection.
        case abortResponse
    }

    /// What to do with a part of the request body.
    enum BodyAction: Equatable {
        /// Write it to the attempt's connection.
        case write
        /// No connection takes it yet: it waits in `replay`.
        case wait
        /// As `wait`, and more is waiting than a replay keeps: stop reading from the client.
        case waitAndPause
        /// The request is over.
        case drop
    }

    private enum Phase: Equatable {
        case admitted, connecting, sending, backoff, holding, responding, done
    }

    let upstream: String
    let rules: AttemptRules
    let idempotent: Bool
    private var phase = Phase.admitted
    /// Attempts started so far.
    private(set) var attempts = 0
    private(set) var tried = TriedInstances<Instance>()
    private(set) var replay: ReplayBuffer
    /// Set when the retry budget refused a retry (the handler books it with the request).
    private(set) var budgetExhausted = false
    private var requestDeadline: NIODeadline?
    private var tryDeadline: NIODeadline?
    private var backoffUntil: NIODeadline?

    init(upstream: String, rules: AttemptRules, idempotent: Bool) {
        self.upstream = upstream
        self.rules = rules
        self.idempotent = idempotent
        self.replay = ReplayBuffer(limit: rules.retries.bufferLimit)
    }

    private var retries: RetryPolicy { rules.retries }
    private var timeouts: Timeouts { rules.timeouts }

    /// The next instant at which the machine wants `timerFired`.
    var deadline: NIODeadline? { Self.earlier(Self.earlier(requestDeadline, tryDeadline), backoffUntil) }

    private static func earlier(_ a: NIODeadline?, _ b: NIODeadline?) -> NIODeadline? {
        guard let a else { return b }
        guard let b else { return a }
        return min(a, b)
    }

    /// The response is being held back from the client until it is complete.
    var isHoldingResponse: Bool { phase == .holding }
    /// A response is under way (held or sent as it comes).
    var hasResponse: Bool { phase == .holding || phase == .responding }
    /// The attempt's own deadline has passed (its instance did not answer in time).
    func tryDeadlinePassed(at now: NIODeadline) -> Bool { tryDeadline.map { $0 <= now } ?? false }

    // MARK: Events

    /// The request was admitted: the first attempt starts now.
    mutating func start(now: NIODeadline, budget: inout RetryBudget) -> Action {
        budget.recordRequest(at: now)
        if let request = timeouts.request { requestDeadline = now + request }
        phase = .connecting
        return .connect
    }

    /// An attempt begins on `instance`.
    mutating func attempt(on instance: Instance, now: NIODeadline) {
        attempts += 1
        tried.append(instance)
        phase = .connecting
        tryDeadline = timeouts.perTry.map { now + $0 }
    }

    /// No instance is left to try.
    mutating func noInstance(_ which: String) -> Action {
        answer(.serviceUnavailable, "no_healthy_upstream", "no healthy instance of \(which)")
    }

    /// The cluster's queue of requests waiting for a connection is full.
    mutating func pendingOverflow(limit: Int) -> Action {
        answer(.serviceUnavailable, "overflow",
               "upstream \(upstream): too many pending requests (circuit breaker max_pending_requests \(limit))")
    }

    /// The attempt's connection is ready; returns the body parts to write after the head, which
    /// the replay buffer lets go of when they are more than it keeps.
    mutating func connected() -> [ByteBuffer] {
        guard phase == .connecting else { return [] }
        phase = .sending
        let parts = replay.parts
        replay.settle()
        return parts
    }

    mutating func bodyPart(_ part: ByteBuffer) -> BodyAction {
        switch phase {
        case .sending, .holding:
            replay.keepSent(part)
            return .write
        case .responding:
            return .write
        case .admitted, .connecting, .backoff:
            return replay.wait(part) ? .waitAndPause : .wait
        case .done:
            return .drop
        }
    }

    /// The attempt's response head arrived: retried when its status is listed, held when it is
    /// small, framed by `Content-Length` and a reset could still be retried, otherwise committed.
    mutating func responseHead(status: Int, body: BodyLength, now: NIODeadline,
                               budget: inout RetryBudget, random: inout FastRandom) -> Action {
        guard phase == .sending else { return .none }
        let condition = RetryPolicy.Condition.status(status)
        if rules.retries(on: condition) && mayRetry(condition, now: now, budget: &budget) {
            return scheduleRetry(now: now, random: &random)
        }
        requestDeadline = nil
        if case .length(let length) = body, length <= retries.bufferLimit, couldRetry(.reset) {
            phase = .holding
            return .hold
        }
        phase = .responding
        return .commit
    }

    /// The response is complete.
    mutating func responseEnded() {
        guard hasResponse else { return }
        phase = .done
        tryDeadline = nil
    }

    mutating func failed(_ failure: Failure, now: NIODeadline, budget: inout RetryBudget, random: inout FastRandom) -> Action {
        switch phase {
        case .responding:
            return abort()
        case .connecting, .sending, .holding:
            let condition: RetryPolicy.Condition = if case .connect = failure { .connectFailure } else { .reset }
            if mayRetry(condition, now: now, budget: &budget) { return scheduleRetry(now: now, random: &random) }
            switch failure {
            case .connect(let message):
                return answer(.badGateway, "connect_failure", "upstream \(upstream): \(message)")
            case .reset:
                let when = phase == .holding ? "before the response was complete" : "before a response"
                return answer(.badGateway, "upstream_reset", "upstream \(upstream): connection to \(address) closed \(when)")
            }
        case .admitted, .backoff, .done:
            return .none
        }
    }

    /// `deadline` has passed.
    mutating func timerFired(now: NIODeadline, budget: inout RetryBudget, random: inout FastRandom) -> Action {
        if let requestDeadline, requestDeadline <= now, let timeout = timeouts.request {
            return answer(.gatewayTimeout, "timeout", "upstream \(upstream): no response within \(timeout)")
        }
        if let tryDeadline, tryDeadline <= now, let perTry = timeouts.perTry {
            self.tryDeadline = nil
            switch phase {
            case .responding:
                return abort()
            case .connecting, .sending, .holding:
                if mayRetry(.timeout, now: now, budget: &budget) { return scheduleRetry(now: now, random: &random) }
                return answer(.gatewayTimeout, "timeout", "upstream \(upstream): no response from \(address) within \(perTry)")
            case .admitted, .backoff, .done:
                return .none
            }
        }
        if let backoffUntil, backoffUntil <= now, phase == .backoff {
            self.backoffUntil = nil
            phase = .connecting
            return .connect
        }
        return .none
    }

    // MARK: Decisions

    private var address: String { tried.last?.address ?? "?" }

    /// Whether the rules allow another attempt after `condition`, before the budget is asked.
    private func couldRetry(_ condition: RetryPolicy.Condition) -> Bool {
        guard attempts <= retries.attempts, rules.retries(on: condition) else { return false }
        // A refused connection never reached the service: safe for any method.
        guard condition == .connectFailure || retries.allMethods || idempotent else { return false }
        return replay.isReplayable
    }

    /// Whether one more attempt may be made; spends retry budget when it says yes.
    private mutating func mayRetry(_ condition: RetryPolicy.Condition, now: NIODeadline, budget: inout RetryBudget) -> Bool {
        guard couldRetry(condition) else { return false }
        guard budget.tryRetry(retries.budget, at: now) else {
            budgetExhausted = true
            return false
        }
        return true
    }

    /// Waits a jittered exponential backoff, then the next attempt.
    private mutating func scheduleRetry(now: NIODeadline, random: inout FastRandom) -> Action {
        phase = .backoff
        tryDeadline = nil
        backoffUntil = now + Backoff.delay(retry: attempts - 1, base: retries.backoffBase, max: retries.backoffMax, random: &random)
        return .retry
    }

    private mutating func answer(_ status: HTTPResponseStatus, _ reason: String, _ message: String) -> Action {
        finish()
        return .respondLocally(LocalAnswer(status: status, reason: reason, message: message))
    }

    private mutating func abort() -> Action {
        finish()
        return .abortResponse
    }

    private mutating func finish() {
        phase = .done
        requestDeadline = nil
        tryDeadline = nil
        backoffUntil = nil
    }
}

/// The instances one request has tried, in order. The last one is kept apart from the earlier
/// ones (which exist only after a retry), so a first attempt allocates nothing.
struct TriedInstances<Instance: AnyObject> {
    private(set) var last: Instance?
    private var earlier: [Instance] = []

    var isEmpty: Bool { last == nil }

    func contains(_ instance: Instance) -> Bool {
        last === instance || earlier.contains { $0 === instance }
    }

    mutating func append(_ instance: Instance) {
        if let last { earlier.append(last) }
        last = instance
    }
}
