// A floor for the sidecar benchmark: relays bytes between each client connection and one upstream
// connection of its own on the sidecar's event loop (EventIO), with no HTTP processing at all: what
// the loop itself costs for the reads and writes of a proxied request.
// Usage: reactor-relay LISTEN_PORT UPSTREAM_PORT... (loopback; clients spread over the upstreams)
import EventIO
import Foundation
import NIOCore

/// Writes what one side reads to the other side, flushing once per read burst.
final class Relay: StreamSocketDelegate {
    let peer: StreamSocket

    init(peer: StreamSocket) { self.peer = peer }

    func socketRead(_ socket: StreamSocket, _ bytes: ByteBuffer) { peer.write(bytes) }
    func socketReadComplete(_ socket: StreamSocket) { peer.flush() }
    func socketWritabilityChanged(_ socket: StreamSocket) {}
    func socketClosed(_ socket: StreamSocket) { peer.close() }
}

let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
guard arguments.count >= 2 else { fatalError("usage: reactor-relay LISTEN_PORT UPSTREAM_PORT...") }
let upstreams = Array(arguments.dropFirst())
let reactor = try Reactor()
var next = 0
let listener = try Listener(host: "127.0.0.1", port: arguments[0], reactor: reactor) { client in
    client.pauseReading()
    next += 1
    Connector.connect(host: "127.0.0.1", port: upstreams[next % upstreams.count], timeout: .seconds(5), reactor: reactor) { result in
        guard case .success(let upstream) = result else { return client.close() }
        client.delegate = Relay(peer: upstream)
        upstream.delegate = Relay(peer: client)
        client.resumeReading()
    }
}
reactor.start(name: "relay")
while true { sleep(3600) }
