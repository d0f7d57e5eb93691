import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The registry's DNS interface (`--dns-addr`): UDP and TCP on one address, answered from memory.
public final class DNSServer: Sendable {
    /// The UDP payload size this server advertises in EDNS0 answers.
    static let ednsBufferSize = 4096
    /// Classic DNS's UDP limit for a client that sends no EDNS0.
    static let classicUDPSize = 512
    static let datagramsPerRead = 16

    private let udp: any Channel
    private let tcp: any Channel

    /// The UDP port actually bound (useful with port 0; TCP listens on the same one).
    public var port: Int { udp.localAddress?.port ?? 0 }

    private init(udp: any Channel, tcp: any Channel) {
        self.udp = udp
        self.tcp = tcp
    }

    /// Binds UDP first (port 0 picks a free one) and then TCP on the same port. With port 0 the
    /// port UDP got may be taken for TCP: another is tried then, up to 8 times.
    public static func start(host: String, port: Int, catalog: Catalog, datacenter: String, settings: DNSSettings,
                             acl: ACLResolver, group: any EventLoopGroup, logger: Logger) async throws -> DNSServer {
        let responder = DNSResponder(catalog: catalog, resolver: DNSResolver(datacenter: datacenter, settings: settings), acl: acl)
        var attempts = 1
        while true {
            do {
                return try await bind(host: host, port: port, responder: responder, group: group)
            } catch let error as IOError where error.errnoCode == EADDRINUSE && port == 0 && attempts < 8 {
                attempts += 1
                logger.debug("DNS port taken for TCP; trying another", metadata: ["error": "\(error)"])
            }
        }
    }

    private static func bind(host: String, port: Int, responder: DNSResponder, group: any EventLoopGroup) async throws -> DNSServer {
        let udp = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // Several datagrams per read (recvmmsg) and the answers sent together at the end of it;
            // the receive buffer is split among them, so it holds the largest query that many times.
            .channelOption(.datagramVectorReadMessageCount, value: Self.datagramsPerRead)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.datagramsPerRead * DNSQuery.maxSize))
            .channelOption(.maxMessagesPerRead, value: 4)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UDPHandler(responder)) }
            }
            .bind(host: host, port: port).get()
        do {
            let tcp = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(TCPFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(TCPHandler(responder))
                    }
                }
                .bind(host: host, port: udp.localAddress?.port ?? port).get()
            return DNSServer(udp: udp, tcp: tcp)
        } catch {
            try? await udp.close()
            throw error
        }
    }

    public func close() async {
        try? await udp.close()
        try? await tcp.close()
    }
}

/// Parses a query, resolves it against the catalog and encodes the answer for UDP or TCP.
struct DNSResponder: Sendable {
    let catalog: Catalog
    let resolver: DNSResolver
    /// Answers are limited to what the agent's `dns` token (else its `default`, else anonymous) may read.
    let acl: ACLResolver
    let answers = DNSAnswerCache()

    /// The response bytes, or nil for input that is not a query (dropped, as resolvers drop it).
    func respond(to bytes: [UInt8], overUDP: Bool) -> [UInt8]? {
        let query: DNSQuery
        do { query = try DNSQuery(bytes) } catch { return nil }
        let questionName = query.name.joined(separator: ".") + "."
        var answer: DNSAnswer
        if query.qclass != 1 && query.qclass != 255 {
            answer = DNSAnswer(rcode: .notImplemented)
        } else {
            var key = String(query.type) + " " + query.name.joined(separator: ".").lowercased()
            // Answers differ by the agent token they were read with.
            if acl.settings.enabled { key += "\u{0}" + (acl.agentToken("dns") ?? acl.agentToken("default") ?? "") }
            answer = catalog.read { state in
                if let cached = answers.lookup(key, index: state.index) { return cached }
                guard let authorizer = acl.authorizer(secret: acl.agentToken("dns"), in: state) else {
                    return DNSAnswer(rcode: .refused)
                }
                let fresh = resolver.answer(query.name, type: query.type, state: state, authorizer: authorizer)
                answers.store(key, index: state.index, answer: fresh)
                return fresh
            }
        }
        if answer.answers.count > 1 { answer.answers.shuffle() }
        if overUDP {
            return trimmed(answer, query: query, questionName: questionName,
                           size: query.ednsBufferSize ?? DNSServer.classicUDPSize, answers: resolver.settings.udpAnswerLimit)
        }
        return trimmed(answer, query: query, questionName: questionName, size: Int(UInt16.max), answers: 0)
    }

    /// Consul's `trimUDPResponse`: at most `answers` answers (0: any number), then as many as fit
    /// `size` bytes; TC is set when something was cut and `enable_truncate` is on. Over TCP the
    /// size is the 64 KiB a message length can say.
    private func trimmed(_ answer: DNSAnswer, query: DNSQuery, questionName: String, size limit: Int, answers maxAnswers: Int) -> [UInt8] {
        var answer = answer
        let all = answer.answers.count
        if maxAnswers > 0 && answer.answers.count > maxAnswers { answer.answers = Array(answer.answers.prefix(maxAnswers)) }
        var bytes = answer.encode(for: query, questionName: questionName)
        while bytes.count > limit && !answer.answers.isEmpty {
            let dropped = answer.answers.removeLast()
            if case .srv(_, _, _, let target) = dropped.data { answer.additional.removeAll { $0.name == target } }
            bytes = answer.encode(for: query, questionName: questionName)
        }
        if bytes.count > limit { answer.additional.removeAll() }
        if answer.answers.count < all && resolver.settings.enableTruncate { answer.truncated = true }
        return answer.truncated || bytes.count > limit ? answer.encode(for: query, questionName: questionName) : bytes
    }
}

/// Resolved answers by question, valid while the catalog's index is unchanged (any write moves it).
/// Bounded: questions are the client's to choose.
final class DNSAnswerCache: Sendable {
    private static let capacity = 4096
    private let entries = Mutex<(index: UInt64, answers: [String: DNSAnswer])>((0, [:]))

    func lookup(_ key: String, index: UInt64) -> DNSAnswer? {
        entries.withLock { $0.index == index ? $0.answers[key] : nil }
    }

    func store(_ key: String, index: UInt64, answer: DNSAnswer) {
        entries.withLock { entries in
            if entries.index != index || entries.answers.count >= Self.capacity { entries = (index, [:]) }
            entries.answers[key] = answer
        }
    }
}

private final class UDPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>
    private let responder: DNSResponder

    init(_ responder: DNSResponder) { self.responder = responder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let response = responder.respond(to: Array(envelope.data.readableBytesView), overUDP: true) else { return }
        let reply = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: response))
        context.write(wrapOutboundOut(reply), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) { context.flush() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}

/// DNS over TCP: each message is preceded by its length in two bytes (RFC 1035 4.2.2).
private struct TCPFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) else { return .needMoreData }
        guard Int(length) <= DNSQuery.maxSize else {
            context.close(promise: nil)
            return .needMoreData
        }
        guard buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

private final class TCPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let responder: DNSResponder

    init(_ responder: DNSResponder) { self.responder = responder }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let response = responder.respond(to: Array(unwrapInboundIn(data).readableBytesView), overUDP: false) else {
            context.close(promise: nil)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: response.count + 2)
        buffer.writeInteger(UInt16(response.count))
        buffer.writeBytes(response)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
