// A baseline for the sidecar benchmark: relays bytes between each client connection and one
// upstream connection of its own, with no HTTP processing at all: what SwiftNIO itself costs for
// the reads and writes of a proxied request.
// Usage: nio-relay LISTEN_PORT UPSTREAM_PORT... (loopback; clients spread over the upstreams)
import NIOCore
import NIOPosix

/// Writes what one side reads to the other side, flushing once per read burst.
final class Relay: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let peer: any Channel

    init(peer: any Channel) { self.peer = peer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { peer.write(unwrapInboundIn(data), promise: nil) }
    func channelReadComplete(context: ChannelHandlerContext) { peer.flush() }
    func channelInactive(context: ChannelHandlerContext) { peer.close(promise: nil) }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
guard arguments.count >= 2 else { fatalError("usage: nio-relay LISTEN_PORT UPSTREAM_PORT...") }
let upstreams = Array(arguments.dropFirst())
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let server = try ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { client in
        // The client's port spreads clients over the upstreams.
        let port = upstreams[(client.remoteAddress?.port ?? 0) % upstreams.count]
        return ClientBootstrap(group: client.eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port)
            .flatMapThrowing { upstream in
                try client.pipeline.syncOperations.addHandler(Relay(peer: upstream))
                try upstream.pipeline.syncOperations.addHandler(Relay(peer: client))
            }
    }
    .bind(host: "127.0.0.1", port: arguments[0]).wait()
try server.closeFuture.wait()
