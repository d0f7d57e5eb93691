import Synchronization
import NIOCore
import NIOHTTP1

/// A fully read HTTP request: what every API handler receives.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The percent-decoded path, without the query string.
    public var path: String
    public var query: QueryParameters
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(method: HTTPMethod, uri: String, headers: HTTPHeaders, body: ByteBuffer) {
        self.method = method
        self.headers = headers
        self.body = body
        if let mark = uri.firstIndex(of: "?") {
            path = PercentDecoding.decode(uri[..<mark], plusIsSpace: false)
            query = QueryParameters(String(uri[uri.index(after: mark)...]))
        } else {
            path = PercentDecoding.decode(Substring(uri), plusIsSpace: false)
            query = QueryParameters("")
        }
    }

    public var bodyBytes: [UInt8] { Array(body.readableBytesView) }
}

/// An HTTP response ready to be written.
public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// A body that is written as it is produced (chunked) instead of `body`, until it finishes or
    /// the client goes away.
    public var stream: HTTPBodyStream?

    public init(status: HTTPResponseStatus = .ok, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A plain-text response, the form Consul uses for errors.
    public static func text(_ status: HTTPResponseStatus, _ message: String) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        return HTTPResponse(status: status, headers: headers, body: ByteBuffer(string: message))
    }

    public static func json(_ bytes: [UInt8], status: HTTPResponseStatus = .ok) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        return HTTPResponse(status: status, headers: headers, body: ByteBuffer(bytes: bytes))
    }
}

/// Query string parameters as Go's `url.ParseQuery` reads them: repeated keys kept, `+` is a space.
public struct QueryParameters: Sendable {
    public private(set) var items: [(name: String, value: String)] = []

    public init(_ raw: String) {
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            if let eq = part.firstIndex(of: "=") {
                items.append((PercentDecoding.decode(part[..<eq], plusIsSpace: true),
                              PercentDecoding.decode(part[part.index(after: eq)...], plusIsSpace: true)))
            } else {
                items.append((PercentDecoding.decode(part, plusIsSpace: true), ""))
            }
        }
    }

    public func has(_ name: String) -> Bool { items.contains { $0.name == name } }
    public subscript(_ name: String) -> String? { items.first { $0.name == name }?.value }
    public func all(_ name: String) -> [String] { items.filter { $0.name == name }.map(\.value) }

    /// A flag that is set by its mere presence (`?passing`, `?stale=`) or by a true value (`=1`, `=True`).
    /// Returns nil when the value is present but not a boolean.
    public func flag(_ name: String) -> Bool? {
        guard let value = self[name] else { return false }
        if value.isEmpty { return true }
        return GoBool.parse(value)
    }
}

/// Go's `strconv.ParseBool`: the spellings Consul accepts for booleans.
public enum GoBool {
    public static func parse(_ text: String) -> Bool? {
        switch text {
        case "1", "t", "T", "true", "TRUE", "True": true
        case "0", "f", "F", "false", "FALSE", "False": false
        default: nil
        }
    }
}

enum PercentDecoding {
    static func decode(_ text: Substring, plusIsSpace: Bool) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) else {
            return String(text)
        }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
               let hi = hexValue(iterator[iterator.startIndex]),
               let lo = hexValue(iterator[iterator.startIndex + 1]) {
                out.append(hi << 4 | lo)
                iterator = iterator.dropFirst(2)
            } else if plusIsSpace && byte == UInt8(ascii: "+") {
                out.append(0x20)
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }
}

/// The body of a streamed response: chunks handed over from any thread, written in order.
public final class HTTPBodyStream: Sendable {
    private struct State {
        var pending: [ByteBuffer] = []
        var finished = false
        var consumer: (@Sendable (ByteBuffer?) -> Void)?
    }
    private let state = Mutex(State())
    private let ended = CancellationSignal()

    public init() {}

    /// Queues a chunk; dropped once the stream has finished.
    public func write(_ chunk: ByteBuffer) {
        let consumer = state.withLock { state -> (@Sendable (ByteBuffer?) -> Void)? in
            guard !state.finished else { return nil }
            if state.consumer == nil { state.pending.append(chunk) }
            return state.consumer
        }
        consumer?(chunk)
    }

    /// Ends the body (also when the client went away).
    public func finish() {
        let (first, consumer) = state.withLock { state -> (Bool, (@Sendable (ByteBuffer?) -> Void)?) in
            defer { state.finished = true }
            return (!state.finished, state.consumer)
        }
        guard first else { return }
        consumer?(nil)
        ended.cancel()
    }

    /// Runs `handler` once the stream has ended, at once if it already has.
    public func onFinish(_ handler: @escaping @Sendable () -> Void) { ended.onCancel(handler) }

    /// Hands every chunk (then nil at the end) to `consumer`, the ones queued so far first.
    func consume(_ consumer: @escaping @Sendable (ByteBuffer?) -> Void) {
        let (queued, finished) = state.withLock { state -> ([ByteBuffer], Bool) in
            defer { state.pending = [] }
            state.consumer = consumer
            return (state.pending, state.finished)
        }
        queued.forEach { consumer($0) }
        if finished { consumer(nil) }
    }
}
