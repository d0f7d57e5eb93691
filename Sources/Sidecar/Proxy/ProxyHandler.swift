import EventIO
import NIOCore
import NIOHTTP1

/// Proxies the requests of one downstream connection, one at a time, reading them straight from
/// the bytes received (a pipelined request waits in `inbox` until the response before it is
/// complete): route, rate limit, circuit breaker, balancer, upstream attempt, retries with backoff,
/// timeouts, trace headers, metrics and access log.
final class ProxyHandler: StreamSocketDelegate, UpstreamReceiver {
    private enum Phase { case idle, connecting, sending, backoff, responding, answered }
    /// What the next bytes from the client are: a request head, the current request's body, a
    /// request that waits for the current response, or nothing more (the connection closes).
    private enum Reading { case head, body, waiting, closing }

    /// Why an attempt failed; the retry condition and the sidecar's own answer follow from it.
    private enum Failure {
        case connect(String), reset(String), timeout(String)

        var condition: RetryPolicy.Condition {
            switch self {
            case .connect: .connectFailure
            case .reset: .reset
            case .timeout: .timeout
            }
        }
    }

    private let plane: DataPlane
    private let listenerKey: String
    private let listener: ListenerRuntime
    private let isInbound: Bool
    private let downstream: StreamSocket
    private let client: String

    // The request in flight.
    private var phase = Phase.idle
    private var head: MessageHead!
    private var upstreamHead: ByteBuffer?
    private var route: RouteRuntime!
    private var subset: String?
    private var trace: TraceContext?
    private var started = NIODeadline.now()
    private var keepAlive = true
    private var requestEnded = false
    private var bodyParts: [ByteBuffer] = []
    private var bufferedBytes = 0
    /// False once a body part was sent and not kept: the request can no longer be replayed.
    private var replayable = true
    private var attempts = 0
    private var tried: [Endpoint] = []
    private var endpoint: Endpoint?
    private var connection: UpstreamConnection?
    private var waiter: Int?
    /// Bumped per attempt so that late callbacks of an abandoned attempt are ignored.
    private var generation = 0
    private lazy var perTryTimeout = DeadlineTimer(reactor: plane.reactor) { [unowned self] in perTryTimedOut() }
    private lazy var requestTimeout = DeadlineTimer(reactor: plane.reactor) { [unowned self] in requestTimedOut() }
    private var backoffTimer: ReactorTimer?
    private var status = 0
    private var bytesSent = 0
    private var countedActive = false
    /// `X-RateLimit-*` header lines for the response, when the route is rate limited.
    private var rateLimitHeaders: ByteBuffer?
    /// The response head, with the first small body parts appended: one write for a small response.
    private var responseStart: ByteBuffer?

    /// Bytes received and not read yet.
    private var inbox: ByteBuffer?
    private var reading = Reading.head
    private var requestBody = BodyFramer(.none)
    /// Set while `readInbox` runs.
    private var readingInbox = false

    /// Serves `downstream`, a connection accepted by the listener `listenerKey`.
    init(plane: DataPlane, listenerKey: String, downstream: StreamSocket) {
        self.plane = plane
        self.listenerKey = listenerKey
        self.downstream = downstream
        listener = plane.listeners[listenerKey]!
        isInbound = listenerKey == DataPlane.inboundKey
        client = downstream.remoteIP ?? "-"
        plane.downstreamConnections[listenerKey, default: 0] += 1
    }

    // MARK: Downstream

    func socketRead(_ socket: StreamSocket, _ bytes: ByteBuffer) {
        readingDownstream = true
        inbox.append(bytes)
        readInbox()
    }

    /// Reads requests from `inbox` as far as the request in flight allows.
    private func readInbox() {
        readingInbox = true
        defer { readingInbox = false }
        parsing: while downstream.isOpen, let available = inbox?.readableBytes, available > 0 {
            switch reading {
            case .closing:
                inbox = nil
            case .waiting:
                // Pipelined requests wait for the response before them; reading pauses when they pile up.
                if available > 1 << 20 { pauseReading() }
                return
            case .head:
                switch HeadParser.request(from: &inbox!) {
                case .incomplete:
                    break parsing
                case .invalid(let status, let reason):
                    refuse(HTTPResponseStatus(statusCode: status), reason)
                case .complete(let head):
                    requestBody = BodyFramer(head.body)
                    requestEnded = requestBody.isDone
                    reading = requestEnded ? .waiting : .body
                    begin(head)
                }
            case .body:
                do {
                    if try requestBody.read(&inbox!, emit: receiveBody) { endOfRequest() }
                } catch {
                    refuse(.badRequest, "invalid chunked body: \((error as? BodyFramer.Malformed)?.reason ?? "\(error)")")
                }
            }
        }
        if inbox?.readableBytes == 0 { inbox = nil }
    }

    /// The request's last byte was read.
    private func endOfRequest() {
        requestEnded = true
        reading = .waiting
        if phase == .sending, let socket = connection?.socket { flushUpstream(socket) }
    }

    /// The client's bytes are not HTTP/1.1 that can be forwarded safely: answered with `status`
    /// unless a response is under way; the connection closes either way, since the stream cannot
    /// be resynchronised.
    private func refuse(_ status: HTTPResponseStatus, _ reason: String) {
        reading = .closing
        inbox = nil
        keepAlive = false
        switch phase {
        case .idle:
            let response = HeaderRules.localResponse(status, reason: "bad_request", message: "\(status.reasonPhrase): \(reason)",
                                                     clientMinorVersion: 1, keepAlive: false, withBody: true, extra: nil,
                                                     allocator: plane.reactor.allocator)
            downstream.write(response)
            finishResponse(thenClose: true)
        case .responding:
            abortResponse()
        case .answered:
            downstream.close()
        case .connecting, .sending, .backoff:
            answer(status, reason: "bad_request", message: "\(status.reasonPhrase): \(reason)")
        }
    }

    /// Set while the upstream connection stops reading because the client is slow to take the response.
    private var upstreamPaused = false
    /// Set between a downstream read and its read-complete.
    private var readingDownstream = false
    private var readingPaused = false

    private func pauseReading() {
        guard !readingPaused else { return }
        readingPaused = true
        downstream.pauseReading()
    }

    private func resumeReading() {
        guard readingPaused, downstream.isOpen else { return }
        readingPaused = false
        downstream.resumeReading()
    }

    func socketReadComplete(_ socket: StreamSocket) {
        readingDownstream = false
        if phase == .sending, let upstream = connection?.socket { plane.flushAfterReads(upstream) }
    }

    func socketClosed(_ socket: StreamSocket) {
        if phase != .idle && phase != .answered {
            abandonAttempt(reusable: false)
            status = 0
            complete(localReason: "client_closed", thenClose: true)
        }
        plane.downstreamConnections[listenerKey, default: 1] -= 1
        abandonAttempt(reusable: false)
        perTryTimeout.stop()
        requestTimeout.stop()
    }

    func socketWritabilityChanged(_ socket: StreamSocket) {
        // Back-pressure: read from the upstream only as fast as the client takes the response.
        if phase == .responding, let upstream = connection?.socket {
            upstreamPaused = !downstream.isWritable
            if upstreamPaused { upstream.pauseReading() } else { upstream.resumeReading() }
        }
    }

    private func begin(_ head: MessageHead) {
        let now = plane.reactor.now
        self.head = head
        started = .now()
        phase = .connecting
        bodyParts.removeAll(keepingCapacity: true)
        bufferedBytes = 0
        replayable = true
        attempts = 0
        tried.removeAll(keepingCapacity: true)
        status = 0
        bytesSent = 0
        trace = nil
        keepAlive = head.keepAlive && !(plane.draining && isInbound)
        route = listener.route(for: head)
        let cluster = listener.cluster

        if let limiter = route.rateLimiter {
            let decision = limiter.take(key: rateLimitKey(limiter.policy.key, head), at: now)
            var headers = plane.reactor.allocator.buffer(capacity: 96)
            HeaderRules.writeLine("X-RateLimit-Limit", String(limiter.policy.requests), to: &headers)
            HeaderRules.writeLine("X-RateLimit-Remaining", String(decision.remaining), to: &headers)
            HeaderRules.writeLine("X-RateLimit-Reset", String(Int(decision.resetAfter.rounded(.up))), to: &headers)
            if !decision.allowed {
                HeaderRules.writeLine("Retry-After", String(max(1, Int(decision.retryAfter.rounded(.up)))), to: &headers)
            }
            rateLimitHeaders = headers
            if !decision.allowed {
                route.stats.rateLimited.increment()
                answer(.tooManyRequests, reason: "rate_limited", message: "rate limit of route \(route.name) exceeded")
                return
            }
        } else {
            rateLimitHeaders = nil
        }
        guard cluster.limits.activeRequests < cluster.limits.policy.maxRequests else {
            plane.metrics.breakerOverflow(upstream: cluster.name, limit: "max_requests")
            answer(.serviceUnavailable, reason: "overflow",
                   message: "upstream \(cluster.name): too many active requests (circuit breaker max_requests \(cluster.limits.policy.maxRequests))")
            return
        }
        cluster.limits.activeRequests += 1
        countedActive = true
        if isInbound { plane.inboundInFlight += 1 }
        cluster.retryBudget.recordRequest(at: now)

        let trace = TraceContext(headers: head, random: &plane.random)
        self.trace = trace
        upstreamHead = HeaderRules.upstreamRequest(head, client: client, trace: trace, allocator: plane.reactor.allocator)
        if !requestEnded && head.minorVersion == 1 && head.expectsContinue {
            downstream.write(ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n"))
            downstream.flush()
        }
        subset = route.pickSubset(random: &plane.random)
        if let timeout = route.settings.timeouts.request { requestTimeout.arm(in: timeout) }
        startAttempt()
    }

    private func rateLimitKey(_ key: RateLimitPolicy.Key, _ head: MessageHead) -> String {
        switch key {
        case .none: ""
        case .source: client
        case .header(let name): head.first(name: name) ?? ""
        }
    }

    private func receiveBody(_ part: ByteBuffer) {
        switch phase {
        case .idle, .answered:
            return
        case .sending:
            connection?.socket.write(part)
            keepForReplay(part)
        default:
            // Not connected yet: keep the part until the attempt can send it.
            bodyParts.append(part)
            bufferedBytes += part.readableBytes
            if bufferedBytes > route.settings.retries.bufferLimit { pauseReading() }
        }
    }

    private func keepForReplay(_ part: ByteBuffer) {
        guard replayable else { return }
        if bufferedBytes + part.readableBytes <= route.settings.retries.bufferLimit {
            bodyParts.append(part)
            bufferedBytes += part.readableBytes
        } else {
            replayable = false
            bodyParts.removeAll()
            bufferedBytes = 0
        }
    }

    // MARK: Attempts

    private func startAttempt() {
        attempts += 1
        generation += 1
        let now = plane.reactor.now
        let cluster = listener.cluster
        guard let endpoint = cluster.pick(tag: subset, hashKey: cluster.policy.loadBalancer.hashHeader.flatMap { head.first(name: $0) },
                                          tried: tried, now: now, random: &plane.random) else {
            let which = subset.map { "\(cluster.name) with tag \($0)" } ?? cluster.name
            answer(.serviceUnavailable, reason: "no_healthy_upstream", message: "no healthy instance of \(which)")
            return
        }
        self.endpoint = endpoint
        tried.append(endpoint)
        endpoint.activeRequests += 1
        endpoint.totalRequests += 1
        phase = .connecting
        if let perTry = route.settings.timeouts.perTry { perTryTimeout.arm(in: perTry) }
        if let connection = endpoint.pool.takeIdle() {
            send(on: connection)
            return
        }
        let generation = generation
        waiter = endpoint.pool.acquire(connectTimeout: route.settings.timeouts.connect) { [self] acquired in
            guard generation == self.generation, phase == .connecting else {
                if case .ready(let connection) = acquired { endpoint.pool.release(connection, reusable: true) }
                return
            }
            waiter = nil
            switch acquired {
            case .ready(let connection): send(on: connection)
            case .failed(let message): attemptFailed(.connect(message))
            case .overflow:
                plane.metrics.breakerOverflow(upstream: cluster.name, limit: "max_pending_requests")
                finishEndpoint()
                answer(.serviceUnavailable, reason: "overflow",
                       message: "upstream \(cluster.name): too many pending requests (circuit breaker max_pending_requests \(cluster.limits.policy.maxPendingRequests))")
            }
        }
    }

    private func send(on connection: UpstreamConnection) {
        self.connection = connection
        connection.receiver = self
        phase = .sending
        let upstream = connection.socket
        connection.expectResponse(toHEAD: head.isHEAD, dechunk: head.minorVersion == 0)
        upstream.write(upstreamHead!)
        for part in bodyParts { upstream.write(part) }
        if !replayable {
            bodyParts.removeAll()
            bufferedBytes = 0
        } else if bufferedBytes > route.settings.retries.bufferLimit {
            // Kept only because the connection was not there yet: too big to replay.
            replayable = false
            bodyParts.removeAll()
            bufferedBytes = 0
        }
        if !requestEnded { resumeReading() }
        flushUpstream(upstream)
    }

    /// Flushes what was written upstream, unless a downstream read is under way: its read-complete
    /// flushes once for all the reads of the turn.
    private func flushUpstream(_ upstream: StreamSocket) {
        if !readingDownstream { upstream.flush() }
    }

    private func attemptFailed(_ failure: Failure) {
        abandonAttempt(reusable: false)
        let cluster = listener.cluster
        if let endpoint { cluster.record(endpoint, failed: true, now: plane.reactor.now) }
        finishEndpoint()
        if mayRetry(failure.condition) {
            scheduleRetry()
            return
        }
        switch failure {
        case .connect(let message):
            answer(.badGateway, reason: "connect_failure", message: "upstream \(cluster.name): \(message)")
        case .reset(let message):
            answer(.badGateway, reason: "upstream_reset", message: "upstream \(cluster.name): \(message)")
        case .timeout(let message):
            answer(.gatewayTimeout, reason: "timeout", message: "upstream \(cluster.name): \(message)")
        }
    }

    /// Waits a jittered backoff, then makes the next attempt.
    private func scheduleRetry() {
        phase = .backoff
        plane.metrics.retry(upstream: listener.cluster.name)
        let delay = Backoff.delay(retry: attempts - 1, base: route.settings.retries.backoffBase,
                                  max: route.settings.retries.backoffMax, random: &plane.random)
        let generation = generation
        backoffTimer = plane.reactor.schedule(in: delay) { [self] in
            if generation == self.generation && phase == .backoff { startAttempt() }
        }
    }

    /// Whether one more attempt may be made; spends retry budget when it says yes.
    private func mayRetry(_ condition: RetryPolicy.Condition) -> Bool {
        let retries = route.settings.retries
        guard attempts <= retries.attempts, retries.conditions.contains(condition) else { return false }
        // A refused connection never reached the service: safe for any method.
        guard condition == .connectFailure || retries.allMethods || head.isIdempotent else { return false }
        guard replayable else { return false }
        let cluster = listener.cluster
        guard cluster.retryBudget.tryRetry(retries.budget, at: plane.reactor.now) else {
            plane.metrics.retryBudgetExhausted(upstream: cluster.name)
            return false
        }
        return true
    }

    private func perTryTimedOut() {
        if phase == .responding {
            abortResponse()
        } else if let endpoint, let perTry = route.settings.timeouts.perTry {
            attemptFailed(.timeout("no response from \(endpoint.info.address) within \(perTry)"))
        }
    }

    private func requestTimedOut() {
        guard phase != .responding && phase != .answered && phase != .idle, let timeout = route.settings.timeouts.request else { return }
        abandonAttempt(reusable: false)
        finishEndpoint()
        answer(.gatewayTimeout, reason: "timeout", message: "upstream \(listener.cluster.name): no response within \(timeout)")
    }

    /// Drops the current attempt's connection (or its place in the pool's queue).
    private func abandonAttempt(reusable: Bool) {
        perTryTimeout.disarm()
        backoffTimer?.cancel()
        backoffTimer = nil
        generation += 1
        if let waiter, let endpoint {
            endpoint.pool.cancel(waiter: waiter)
        }
        waiter = nil
        if let connection {
            connection.receiver = nil
            if upstreamPaused {
                upstreamPaused = false
                connection.socket.resumeReading()
            }
            endpoint?.pool.release(connection, reusable: reusable)
            self.connection = nil
        }
    }

    private func finishEndpoint() {
        guard let endpoint else { return }
        endpoint.activeRequests -= 1
        self.endpoint = nil
    }

    // MARK: Upstream

    func upstreamRead(_ part: UpstreamConnection.Part, from connection: UpstreamConnection) {
        guard connection === self.connection else { return }
        switch part {
        case .head(let response):
            guard phase == .sending else { return }
            let code = response.status
            let cluster = listener.cluster
            if let endpoint { cluster.record(endpoint, failed: code >= 500, now: plane.reactor.now) }
            if route.settings.retries.conditions.contains(.status(code)) && mayRetry(.status(code)) {
                abandonAttempt(reusable: false)
                finishEndpoint()
                scheduleRetry()
                return
            }
            phase = .responding
            status = code
            requestTimeout.disarm()
            keepAlive = HeaderRules.keepsClientOpen(keepAlive, clientMinorVersion: head.minorVersion, response: response)
            responseStart = HeaderRules.downstreamResponse(response, clientMinorVersion: head.minorVersion, keepAlive: keepAlive,
                                                           dechunk: head.minorVersion == 0, extra: rateLimitHeaders,
                                                           allocator: plane.reactor.allocator)
        case .body(var part):
            guard phase == .responding else { return }
            bytesSent += part.readableBytes
            if responseStart != nil && part.readableBytes <= 4096 {
                responseStart!.writeBuffer(&part)
            } else {
                writeResponseStart()
                downstream.write(part)
            }
        case .end:
            guard phase == .responding else { return }
            writeResponseStart()
            abandonAttempt(reusable: requestEnded)
            finishEndpoint()
            let close = !keepAlive || !requestEnded
            // Booked first: closing after the write may report the close at once.
            complete(localReason: nil, thenClose: close)
            finishResponse(thenClose: close)
        }
    }

    func upstreamReadComplete(from connection: UpstreamConnection) {
        if connection === self.connection && phase == .responding {
            writeResponseStart()
            downstream.flush()
        }
    }

    private func writeResponseStart() {
        if let responseStart {
            downstream.write(responseStart)
            self.responseStart = nil
        }
    }

    func upstreamClosed(_ connection: UpstreamConnection) {
        guard connection === self.connection else { return }
        switch phase {
        case .sending:
            self.connection = nil
            attemptFailed(.reset("connection to \(endpoint?.info.address ?? "?") closed before a response"))
        case .responding:
            abortResponse()
        default:
            break
        }
    }

    func upstreamWritabilityChanged(_ connection: UpstreamConnection) {
        guard connection === self.connection, downstream.isOpen else { return }
        if connection.socket.isWritable { resumeReading() } else { pauseReading() }
    }

    /// The response was cut after its head went out: nothing can be saved, close the client connection.
    private func abortResponse() {
        abandonAttempt(reusable: false)
        finishEndpoint()
        complete(localReason: "upstream_reset_after_response_start", thenClose: true)
        downstream.close()
    }

    // MARK: Answers

    /// Answers on behalf of the upstream (400, 429, 502, 503, 504), with a one-line reason.
    private func answer(_ status: HTTPResponseStatus, reason: String, message: String) {
        abandonAttempt(reusable: false)
        requestTimeout.disarm()
        self.status = Int(status.code)
        let close = !keepAlive || !requestEnded
        let response = HeaderRules.localResponse(status, reason: reason, message: message, clientMinorVersion: head.minorVersion,
                                                 keepAlive: !close, withBody: !head.isHEAD, extra: rateLimitHeaders,
                                                 allocator: plane.reactor.allocator)
        bytesSent = message.utf8.count + 1
        downstream.write(response)
        plane.metrics.localResponse(direction: listener.direction, upstream: listener.cluster.name, reason: reason)
        complete(localReason: reason, thenClose: close)
        finishResponse(thenClose: close)
    }

    /// Sends what was written; when the connection must close, closes it once that is out.
    private func finishResponse(thenClose close: Bool) {
        if close { downstream.closeAfterFlush() } else { downstream.flush() }
    }

    /// Books the finished request (metrics, access log, counters) and gets ready for the next one.
    private func complete(localReason: String?, thenClose close: Bool) {
        let duration = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        route.stats.requests[min(status / 100, 5)].increment()
        route.stats.duration.record(duration)
        if countedActive {
            listener.cluster.limits.activeRequests -= 1
            if isInbound { plane.inboundInFlight -= 1 }
            countedActive = false
        }
        if plane.accessLog.isEnabled {
            plane.accessLog.record(AccessLog.Entry(
                direction: listener.direction, upstream: listener.cluster.name, route: route.name,
                method: head.method, path: head.target, status: status, durationSeconds: duration,
                attempts: attempts, upstreamHost: tried.last?.info.address, bytesSent: bytesSent, client: client,
                trace: trace, localReason: localReason))
        }
        requestTimeout.disarm()
        phase = requestEnded ? .idle : .answered
        // An idle keep-alive connection keeps nothing of its last request.
        head = nil
        upstreamHead = nil
        trace = nil
        rateLimitHeaders = nil
        responseStart = nil
        bodyParts.removeAll(keepingCapacity: true)
        bufferedBytes = 0
        if close {
            reading = .closing
            inbox = nil
            return
        }
        reading = .head
        resumeReading()
        // The next pipelined request, once the current call chain has unwound.
        if !readingInbox, let inbox, inbox.readableBytes > 0 {
            plane.reactor.atEndOfTurn { [self] in readInbox() }
        }
    }
}
