import EventIO
import Foundation
import NIOCore
import NIOHTTP1

/// Serves one downstream connection: reads its requests straight from the bytes received, one
/// at a time (a pipelined request waits in `inbox` until the response before it is complete),
/// and moves bytes between the client and the attempt's upstream connection.
///
/// The decisions are the stages': `Admission` (rate limit, breaker), `ListenerRuntime` (route),
/// `AttemptMachine` (attempts, retries, backoff, replay, timeouts, the sidecar's own answers) and
/// `Cluster` (instance choice, ejection). This class feeds the machine events and performs its
/// actions; metrics and the access log are booked when a request completes.
final class ProxyHandler: StreamSocketDelegate, UpstreamReceiver {
    /// What the next bytes from the client are: a request head, the current request's body, a
    /// request that waits for the current response, or nothing more (the connection closes).
    private enum Reading { case head, body, waiting, closing }

    private let plane: DataPlane
    private let listenerKey: ListenerKey
    private let listener: ListenerRuntime
    private let isInbound: Bool
    /// The inbound or a gateway's edge listener: what draining waits for and asks to close.
    private let servesClients: Bool
    private let downstream: StreamSocket
    private let client: String

    /// The request in flight, or the listener's idle value between requests.
    private var request: ProxyRequest
    /// Bumped whenever an attempt ends, so that late callbacks of an abandoned attempt are ignored.
    private var generation = 0
    /// Fires at the machine's `deadline`.
    private lazy var timer = DeadlineTimer(reactor: plane.reactor) { [unowned self] in timerFired() }
    /// The connection's own deadline between requests (slow head, idle).
    private var deadlines: ConnectionDeadlines
    /// Fires at `deadlines.deadline`.
    private lazy var connectionTimer = DeadlineTimer(reactor: plane.reactor) { [unowned self] in connectionDeadlinePassed() }

    /// Bytes received and not read yet.
    private var inbox: ByteBuffer?
    private var reading = Reading.head
    private var requestBody = BodyFramer(.none)
    /// Set while `readInbox` runs.
    private var readingInbox = false
    /// Set while the upstream connection stops reading because the client is slow to take the response.
    private var upstreamPaused = false
    /// Set between a downstream read and its read-complete.
    private var readingDownstream = false
    private var readingPaused = false
    /// Set at the first bytes from the client (a TLS handshake is complete by then).
    private var sawBytes = false
    /// Body bytes of the request in flight received so far.
    private var requestBodyBytes = 0

    /// Serves `downstream`, a connection accepted by the listener `listenerKey`.
    init(plane: DataPlane, listenerKey: ListenerKey, downstream: StreamSocket) {
        self.plane = plane
        self.listenerKey = listenerKey
        self.downstream = downstream
        listener = plane.listeners[listenerKey]!
        isInbound = listenerKey == .inbound
        servesClients = isInbound || listenerKey == .edge
        client = downstream.remoteIP ?? "-"
        request = listener.idleRequest
        deadlines = ConnectionDeadlines(plane.connectionTimeouts, openedAt: plane.reactor.now)
        plane.downstreamConnections[listenerKey, default: 0] += 1
        connectionTimer.arm(at: deadlines.deadline)
    }

    // MARK: Downstream

    func socketRead(_ socket: StreamSocket, _ bytes: ByteBuffer) {
        if !sawBytes {
            sawBytes = true
            if socket.isTLS { plane.mesh.handshakeCompleted(direction: listener.direction, resumed: socket.resumedTLSSession) }
        }
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
                    deadlines.headIncomplete(at: plane.reactor.now)
                    connectionTimer.arm(at: deadlines.deadline)
                    break parsing
                case .invalid(let status, let reason):
                    refuse(HTTPResponseStatus(statusCode: status), reason)
                case .complete(let head):
                    deadlines.headComplete()
                    connectionTimer.disarm()
                    requestBody = BodyFramer(head.body)
                    reading = requestBody.isDone ? .waiting : .body
                    begin(head, bodyEnded: requestBody.isDone)
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
        reading = .waiting
        guard request.isActive else { return }
        request.bodyEnded = true
        if let socket = request.connection?.socket { flushUpstream(socket) }
    }

    /// The client's bytes are not HTTP/1.1 that can be forwarded safely: answered with `status`
    /// unless a response is under way; the connection closes either way, since the stream cannot
    /// be resynchronised.
    private func refuse(_ status: HTTPResponseStatus, _ reason: String) {
        reading = .closing
        inbox = nil
        let message = "\(status.reasonPhrase): \(reason)"
        guard request.isActive else {
            downstream.write(HeaderRules.localResponse(status, reason: "bad_request", message: message, clientMinorVersion: 1,
                                                       keepAlive: false, withBody: true, extra: nil, allocator: plane.reactor.allocator))
            finishResponse(thenClose: true)
            return
        }
        request.keepAlive = false
        if request.machine.hasResponse && !request.machine.isHoldingResponse {
            abortResponse()
        } else {
            endAttempt(reusable: false)
            respond(LocalAnswer(status: status, reason: "bad_request", message: message))
        }
    }

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
        if let upstream = request.connection?.socket { plane.flushAfterReads(upstream) }
    }

    func socketClosed(_ socket: StreamSocket) {
        if let failure = socket.tlsFailure { plane.mesh.recordFailure(direction: listener.direction, failure) }
        if request.isActive {
            endAttempt(reusable: false)
            request.status = 0
            complete(localReason: "client_closed", thenClose: true)
        }
        plane.downstreamConnections[listenerKey, default: 1] -= 1
        timer.stop()
        connectionTimer.stop()
    }

    func socketWritabilityChanged(_ socket: StreamSocket) {
        // Back-pressure: read from the upstream only as fast as the client takes the response.
        guard request.isActive, request.machine.hasResponse, let upstream = request.connection?.socket else { return }
        upstreamPaused = !downstream.isWritable
        if upstreamPaused { upstream.pauseReading() } else { upstream.resumeReading() }
    }

    private func begin(_ head: MessageHead, bodyEnded: Bool) {
        let now = plane.reactor.now
        let route = listener.route(for: head)
        let cluster = route.pickCluster(random: &plane.random)
        request = ProxyRequest(head: head, route: route, cluster: cluster,
                               keepAlive: head.keepAlive && !(plane.draining && servesClients), bodyEnded: bodyEnded)
        requestBodyBytes = 0
        // Started (or continued) first, so that even a refused request is logged with its trace.
        let trace = TraceContext(headers: head, random: &plane.random)
        request.trace = trace
        if isInbound, let (answer, source) = plane.mesh.refusal(of: downstream) {
            plane.metrics.authorizationDenied(source: source)
            respond(answer)
            return
        }
        var identity: EdgeIdentity?
        if listener.isEdge {
            switch edgeStages(head, route: route) {
            case .failure(let answer): return respond(answer)
            case .success(let verified): identity = verified
            }
        }
        switch Admission.admit(head, route: route, cluster: cluster, client: client, clientID: identity?.id, now: now,
                               metrics: plane.metrics, allocator: plane.reactor.allocator) {
        case .refused(let answer, let headers):
            addResponseHeaders(headers)
            respond(answer)
            return
        case .admitted(let headers):
            addResponseHeaders(headers)
            request.admitted = true
        }
        if servesClients { plane.inFlight += 1 }
        let forwarding = listener.isEdge ? HeaderRules.EdgeForwarding(target: route.edge?.upstreamTarget(head.target),
                                                                      identityHeaders: plane.edgeAuth.identityHeaders, identity: identity,
                                                                      scheme: downstream.isTLS ? "https" : "http") : nil
        request.upstreamHead = HeaderRules.upstreamRequest(head, client: client, trace: trace, edge: forwarding, allocator: plane.reactor.allocator)
        if !bodyEnded && head.minorVersion == 1 && head.expectsContinue {
            downstream.write(ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n"))
            downstream.flush()
        }
        request.subset = route.pickSubset(random: &plane.random)
        perform(request.machine.start(now: now, budget: &cluster.retryBudget))
    }

    /// A gateway's own stages, before admission: the rule (404 without one), CORS (preflights
    /// answered here), the body limit (413 from `Content-Length`) and the caller's credentials.
    private func edgeStages(_ head: MessageHead, route: RouteRuntime) -> Result<EdgeIdentity?, LocalAnswer> {
        guard let edge = route.edge else {
            let description = "no route for \(head.method) \(head.target.prefix(200))"
            return .failure(LocalAnswer(status: .notFound, reason: "no_route", message: description,
                                        json: EdgeAuthenticator.errorBody("no_route", description)))
        }
        if let cors = edge.rule.cors {
            if CORS.isPreflight(head) { return .failure(CORS.preflight(cors, head)) }
            addResponseHeaders(HeaderRules.lines(CORS.responseLines(cors, origin: head.first(name: "origin")), allocator: plane.reactor.allocator))
        }
        if let limit = edge.rule.maxRequestBody, case .length(let length) = head.body, length > limit {
            return .failure(Self.bodyTooLarge(limit))
        }
        let identity = plane.edgeAuth.authenticate(edge.rule.auth, head, now: Date().timeIntervalSince1970)
        if case .success(let verified) = identity { request.clientID = verified?.id }
        return identity
    }

    private static func bodyTooLarge(_ limit: Int) -> LocalAnswer {
        let description = "request body larger than \(limit) bytes"
        return LocalAnswer(status: .payloadTooLarge, reason: "body_too_large", message: description,
                           json: EdgeAuthenticator.errorBody("body_too_large", description))
    }

    /// Adds header lines to the response the client will get.
    private func addResponseHeaders(_ lines: ByteBuffer?) {
        guard var lines, lines.readableBytes > 0 else { return }
        if request.responseHeaders == nil { request.responseHeaders = lines } else { request.responseHeaders!.writeBuffer(&lines) }
    }

    private func receiveBody(_ part: ByteBuffer) {
        guard request.isActive else { return }
        requestBodyBytes += part.readableBytes
        if let limit = request.route.edge?.rule.maxRequestBody, requestBodyBytes > limit {
            // A chunked body is measured as it streams; the connection cannot be kept after it.
            return refuse(.payloadTooLarge, "request body larger than \(limit) bytes")
        }
        switch request.machine.bodyPart(part) {
        case .write: request.connection?.socket.write(part)
        case .wait, .drop: break
        case .waitAndPause: pauseReading()
        }
    }

    /// A head that is not complete in time gets `408`; an idle connection is closed. A request in
    /// flight has the machine's deadlines instead.
    private func connectionDeadlinePassed() {
        guard !request.isActive, downstream.isOpen, let expiry = deadlines.expiry(at: plane.reactor.now) else { return }
        guard expiry == .headTooSlow else { return downstream.close() }
        reading = .closing
        inbox = nil
        let timeout = deadlines.timeouts.requestHeaders
        downstream.write(HeaderRules.localResponse(.requestTimeout, reason: "request_headers_timeout",
                                                   message: "Request Timeout: request head not complete within \(timeout)",
                                                   clientMinorVersion: 1, keepAlive: false, withBody: true, extra: nil,
                                                   allocator: plane.reactor.allocator))
        finishResponse(thenClose: true)
    }

    // MARK: The machine's actions

    private func perform(_ action: AttemptMachine<Endpoint>.Action) {
        switch action {
        case .none, .hold, .commit:
            break
        case .connect:
            startAttempt()
        case .retry:
            endAttempt(reusable: false)
            plane.metrics.retry(upstream: request.cluster.name)
        case .respondLocally(let answer):
            endAttempt(reusable: false)
            respond(answer)
        case .abortResponse:
            abortResponse()
        }
        // The request in flight now: the action may have completed this one.
        timer.arm(at: self.request.machine.deadline)
    }

    private func timerFired() {
        guard request.isActive else { return }
        let now = plane.reactor.now
        let cluster = request.cluster
        if let endpoint = request.endpoint, request.machine.tryDeadlinePassed(at: now) {
            cluster.record(endpoint, failed: true, now: now)
        }
        perform(request.machine.timerFired(now: now, budget: &cluster.retryBudget, random: &plane.random))
    }

    // MARK: Attempts

    private func startAttempt() {
        generation += 1
        let now = plane.reactor.now
        let cluster = request.cluster
        let hashKey = cluster.policy.loadBalancer.hashHeader.flatMap { request.head.first(name: $0) }
        guard let endpoint = cluster.pick(tag: request.subset, hashKey: hashKey, tried: request.machine.tried, now: now,
                                          random: &plane.random) else {
            let which = request.subset.map { "\(cluster.name) with tag \($0)" } ?? cluster.name
            perform(request.machine.noInstance(which))
            return
        }
        request.machine.attempt(on: endpoint, now: now)
        request.endpoint = endpoint
        endpoint.activeRequests += 1
        endpoint.totalRequests += 1
        if let connection = endpoint.pool.takeIdle() {
            send(on: connection)
            return
        }
        let generation = generation
        let waiter = endpoint.pool.acquire(connectTimeout: request.machine.rules.timeouts.connect) { [self] acquired in
            guard generation == self.generation else {
                if case .ready(let connection) = acquired { endpoint.pool.release(connection, reusable: true) }
                return
            }
            request.waiter = nil
            switch acquired {
            case .ready(let connection):
                send(on: connection)
            case .failed(let message):
                attemptFailed(.connect(message))
            case .overflow:
                plane.metrics.breakerOverflow(upstream: cluster.name, limit: "max_pending_requests")
                perform(request.machine.pendingOverflow(limit: cluster.limits.policy.maxPendingRequests))
            }
        }
        if generation == self.generation { request.waiter = waiter }
    }

    private func send(on connection: UpstreamConnection) {
        request.connection = connection
        connection.receiver = self
        connection.expectResponse(toHEAD: request.head.isHEAD, dechunk: request.head.minorVersion == 0)
        let upstream = connection.socket
        if let head = request.upstreamHead { upstream.write(head) }
        for part in request.machine.connected() { upstream.write(part) }
        if !request.bodyEnded { resumeReading() }
        flushUpstream(upstream)
    }

    /// Flushes what was written upstream, unless a downstream read is under way: its read-complete
    /// flushes once for all the reads of the turn.
    private func flushUpstream(_ upstream: StreamSocket) {
        if !readingDownstream { upstream.flush() }
    }

    private func attemptFailed(_ failure: AttemptMachine<Endpoint>.Failure) {
        let now = plane.reactor.now
        let cluster = request.cluster
        if let endpoint = request.endpoint { cluster.record(endpoint, failed: true, now: now) }
        perform(request.machine.failed(failure, now: now, budget: &cluster.retryBudget, random: &plane.random))
    }

    /// Ends the current attempt: gives its connection back to the pool (closed unless `reusable`)
    /// or leaves the pool's queue, and drops what it received.
    private func endAttempt(reusable: Bool) {
        generation += 1
        if let waiter = request.waiter { request.endpoint?.pool.cancel(waiter: waiter) }
        request.waiter = nil
        if let connection = request.connection {
            connection.receiver = nil
            if upstreamPaused {
                upstreamPaused = false
                connection.socket.resumeReading()
            }
            request.connection = nil
            request.endpoint?.pool.release(connection, reusable: reusable)
        }
        if let endpoint = request.endpoint {
            endpoint.activeRequests -= 1
            request.endpoint = nil
        }
        request.responseStart = nil
    }

    // MARK: Upstream

    func upstreamRead(_ part: UpstreamConnection.Part, from connection: UpstreamConnection) {
        guard request.isActive, connection === request.connection else { return }
        switch part {
        case .head(let response):
            let now = plane.reactor.now
            let cluster = request.cluster
            if let endpoint = request.endpoint { cluster.record(endpoint, failed: response.status >= 500, now: now) }
            let action = request.machine.responseHead(status: response.status, body: response.body, now: now,
                                                      budget: &cluster.retryBudget, random: &plane.random)
            switch action {
            case .hold, .commit: startResponse(response)
            default: break
            }
            perform(action)
        case .body(var part):
            guard request.machine.hasResponse else { return }
            request.bytesSent += part.readableBytes
            if request.responseStart != nil && (part.readableBytes <= 4096 || request.machine.isHoldingResponse) {
                request.responseStart!.writeBuffer(&part)
            } else {
                writeResponseStart()
                downstream.write(part)
            }
        case .end:
            guard request.machine.hasResponse else { return }
            request.machine.responseEnded()
            writeResponseStart()
            let close = !request.responseKeepsOpen || !request.bodyEnded
            endAttempt(reusable: request.bodyEnded)
            // Booked first: closing after the write may report the close at once.
            complete(localReason: nil, thenClose: close)
            finishResponse(thenClose: close)
        }
    }

    /// The head of the response the client will get (now, or once the machine stops holding it).
    private func startResponse(_ response: MessageHead) {
        let minorVersion = request.head.minorVersion
        let keepsOpen = HeaderRules.keepsClientOpen(request.keepAlive, clientMinorVersion: minorVersion, response: response)
        request.status = response.status
        request.bytesSent = 0
        request.responseKeepsOpen = keepsOpen
        request.responseStart = HeaderRules.downstreamResponse(response, clientMinorVersion: minorVersion, keepAlive: keepsOpen,
                                                               dechunk: minorVersion == 0, extra: request.responseHeaders,
                                                               allocator: plane.reactor.allocator)
    }

    func upstreamReadComplete(from connection: UpstreamConnection) {
        guard request.isActive, connection === request.connection, request.machine.hasResponse,
              !request.machine.isHoldingResponse else { return }
        writeResponseStart()
        downstream.flush()
    }

    private func writeResponseStart() {
        if let responseStart = request.responseStart {
            downstream.write(responseStart)
            request.responseStart = nil
        }
    }

    func upstreamClosed(_ connection: UpstreamConnection) {
        guard request.isActive, connection === request.connection else { return }
        request.connection = nil
        attemptFailed(.reset)
    }

    func upstreamWritabilityChanged(_ connection: UpstreamConnection) {
        guard connection === request.connection, downstream.isOpen else { return }
        if connection.socket.isWritable { resumeReading() } else { pauseReading() }
    }

    /// The response was cut after part of it reached the client: close the client's connection.
    private func abortResponse() {
        endAttempt(reusable: false)
        complete(localReason: "upstream_reset_after_response_start", thenClose: true)
        downstream.close()
    }

    // MARK: Answers

    /// Answers on behalf of the upstream (400, 429, 502, 503, 504), with a one-line reason.
    private func respond(_ answer: LocalAnswer) {
        request.status = Int(answer.status.code)
        let close = !request.keepAlive || !request.bodyEnded
        addResponseHeaders(HeaderRules.lines(answer.headerLines.map { ($0.name, $0.value) }, allocator: plane.reactor.allocator))
        let response = HeaderRules.localResponse(answer.status, reason: answer.reason, message: answer.message, json: answer.json,
                                                 clientMinorVersion: request.head.minorVersion, keepAlive: !close,
                                                 withBody: !request.head.isHEAD, extra: request.responseHeaders,
                                                 allocator: plane.reactor.allocator)
        request.bytesSent = (answer.json ?? answer.message).utf8.count + 1
        downstream.write(response)
        plane.metrics.localResponse(direction: listener.direction, upstream: request.cluster.name, reason: answer.reason)
        complete(localReason: answer.reason, thenClose: close)
        finishResponse(thenClose: close)
    }

    /// Sends what was written; when the connection must close, closes it once that is out.
    private func finishResponse(thenClose close: Bool) {
        if close { downstream.closeAfterFlush() } else { downstream.flush() }
    }

    /// Books the finished request (metrics, access log, counters) and gets ready for the next one.
    private func complete(localReason: String?, thenClose close: Bool) {
        let status = request.status
        let route = request.route
        let duration = Double((NIODeadline.now() - request.started).nanoseconds) / 1e9
        route.stats.requests[min(status / 100, 5)].increment()
        route.stats.duration.record(duration)
        let cluster = request.cluster
        if request.admitted {
            cluster.limits.activeRequests -= 1
            if servesClients { plane.inFlight -= 1 }
        }
        if request.machine.budgetExhausted { plane.metrics.retryBudgetExhausted(upstream: cluster.name) }
        if plane.accessLog.isEnabled {
            plane.accessLog.record(AccessLog.Entry(
                direction: listener.direction, upstream: cluster.name, route: route.name,
                method: request.head.method, path: request.head.target, status: status, durationSeconds: duration,
                attempts: request.machine.attempts, upstreamHost: request.machine.tried.last?.info.address,
                bytesSent: request.bytesSent, client: client, clientID: request.clientID, trace: request.trace, localReason: localReason,
                peerIdentity: isInbound ? downstream.peerIdentity : nil))
        }
        // An idle keep-alive connection keeps nothing of its last request.
        request = listener.idleRequest
        timer.disarm()
        if close {
            reading = .closing
            inbox = nil
            return
        }
        reading = .head
        deadlines.requestFinished(at: plane.reactor.now)
        connectionTimer.arm(at: deadlines.deadline)
        resumeReading()
        // The next pipelined request, once the current call chain has unwound.
        if !readingInbox, let inbox, inbox.readableBytes > 0 {
            plane.reactor.atEndOfTurn { [self] in readInbox() }
        }
    }
}
