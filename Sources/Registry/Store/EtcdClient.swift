import NIOCore
import NIOHTTP1
import Synchronization
import TrellisCore
import TrellisHTTP

/// The calls the registry makes to etcd, through etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
/// `/v3/kv/put`, `/v3/watch`): keys and values travel in base64 and 64-bit numbers as strings.
///
/// Calls go to one endpoint of the cluster; when it fails, the next call goes to the next one.
final class EtcdClient: Sendable {
    struct KeyValue: Sendable {
        var key: [UInt8]
        var value: [UInt8]
        var modRevision: Int64
    }

    struct Event: Sendable {
        var kv: KeyValue
        var isDelete: Bool
    }

    enum Mutation: Sendable {
        case put(key: [UInt8], value: [UInt8])
        case delete(key: [UInt8])

        var key: [UInt8] {
            switch self {
            case .put(let key, _), .delete(let key): key
            }
        }
    }

    enum TxnOutcome: Sendable, Equatable {
        case committed(revision: Int64)
        /// The compared key has moved on: its current mod_revision.
        case conflict(modRevision: Int64)
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The watch started below the oldest revision etcd still keeps (it was compacted).
    struct Compacted: Error {}

    let endpoints: [(host: String, port: Int)]
    private let http: HTTPClient
    private let preferred = Mutex(0)
    private let timeout: TimeAmount = .seconds(5)

    init(endpoints: [(host: String, port: Int)], http: HTTPClient) {
        precondition(!endpoints.isEmpty, "etcd needs at least one endpoint")
        self.endpoints = endpoints
        self.http = http
    }

    /// Every key under `prefix` and the revision the answer reflects.
    func range(prefix: [UInt8]) async throws -> (kvs: [KeyValue], revision: Int64) {
        let request = object([("key", bytes(prefix)), ("range_end", bytes(Self.rangeEnd(of: prefix)))])
        var lastError: any Error = Failure(description: "no etcd endpoint")
        // A read may go to every endpoint in turn.
        for _ in endpoints {
            do {
                let response = try await call("/v3/kv/range", request)
                let kvs = try (response["kvs"]?.arrayValue ?? []).map(Self.keyValue)
                return (kvs, Self.int(response["header"]?["revision"]))
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Applies `mutations` atomically if `key`'s mod_revision is `revision` (0: the key does not exist).
    func txn(ifModRevision key: [UInt8], is revision: Int64, then mutations: [Mutation]) async throws -> TxnOutcome {
        let compare = object([("target", .string("MOD")), ("key", bytes(key)), ("result", .string("EQUAL")),
                              ("mod_revision", .string(String(revision)))])
        let success: [JSON] = mutations.map { mutation in
            switch mutation {
            case .put(let key, let value):
                object([("request_put", object([("key", bytes(key)), ("value", bytes(value))]))])
            case .delete(let key):
                object([("request_delete_range", object([("key", bytes(key))]))])
            }
        }
        let failure = object([("request_range", object([("key", bytes(key))]))])
        let response = try await call("/v3/kv/txn", object([("compare", .array([compare])), ("success", .array(success)),
                                                            ("failure", .array([failure]))]))
        if response["succeeded"]?.boolValue == true {
            return .committed(revision: Self.int(response["header"]?["revision"]))
        }
        let current = response["responses"]?[0]?["response_range"]?["kvs"]?[0]
        return .conflict(modRevision: try current.map(Self.keyValue)?.modRevision ?? 0)
    }

    func put(key: [UInt8], value: [UInt8]) async throws {
        _ = try await call("/v3/kv/put", object([("key", bytes(key)), ("value", bytes(value))]))
    }

    /// Streams the changes under `prefix` from `revision` on, one call of `onEvents` per watch response,
    /// until the stream ends or fails. Throws `Compacted` when `revision` is no longer kept.
    func watch(prefix: [UInt8], from revision: Int64, onEvents: @escaping @Sendable ([Event]) throws -> Void) async throws {
        let request = object([("create_request", object([
            ("key", bytes(prefix)), ("range_end", bytes(Self.rangeEnd(of: prefix))),
            ("start_revision", .string(String(revision))),
        ]))])
        let lines = LineSplitter()
        let endpoint = current()
        let head: HTTPResponseHead
        do {
            head = try await http.stream(.POST, host: endpoint.host, port: endpoint.port, path: "/v3/watch",
                                         headers: ["Content-Type": "application/json"],
                                         body: ByteBuffer(bytes: request.serialized()), connectTimeout: timeout) { chunk in
                for line in lines.feed(chunk) {
                    let message = try JSON.parse(line)
                    if let error = message["error"] { throw Failure(description: "etcd watch: \(Self.message(error))") }
                    guard let result = message["result"] else { continue }
                    if Self.int(result["compact_revision"]) > 0 { throw Compacted() }
                    if result["canceled"]?.boolValue == true {
                        throw Failure(description: "etcd cancelled the watch: \(result["cancel_reason"]?.stringValue ?? "no reason")")
                    }
                    let events = try (result["events"]?.arrayValue ?? []).map { event in
                        Event(kv: try Self.keyValue(event["kv"] ?? .null), isDelete: event["type"]?.stringValue == "DELETE")
                    }
                    if !events.isEmpty { try onEvents(events) }
                }
            }
        } catch let error as Compacted {
            throw error
        } catch {
            preferred.withLock { $0 += 1 }
            throw error
        }
        guard head.status == .ok else { throw Failure(description: "etcd watch: HTTP \(head.status.code)") }
    }

    // MARK: Plumbing

    private func current() -> (host: String, port: Int) {
        endpoints[preferred.withLock { $0 } % endpoints.count]
    }

    /// The cluster's members (`/v3/cluster/member/list`) as `Name`, `ID`, `PeerURLs`, `ClientURLs`, `IsLearner`.
    func members() async throws -> [JSON] {
        let reply = try await call("/v3/cluster/member/list", .object(JSONObject()))
        return (reply["members"]?.arrayValue ?? []).map { member in
            .object(JSONObject([
                ("Name", .string(member["name"]?.stringValue ?? "")), ("ID", .string(member["ID"]?.stringValue ?? "")),
                ("PeerURLs", member["peerURLs"] ?? .array([])), ("ClientURLs", member["clientURLs"] ?? .array([])),
                ("IsLearner", .bool(member["isLearner"]?.boolValue ?? false)),
            ]))
        }
    }

    /// One unary call; on failure the next call goes to the next endpoint.
    private func call(_ path: String, _ request: JSON) async throws -> JSON {
        let endpoint = current()
        do {
            let response = try await http.send(.POST, host: endpoint.host, port: endpoint.port, path: path,
                                               headers: ["Content-Type": "application/json"],
                                               body: ByteBuffer(bytes: request.serialized()), timeout: timeout)
            let body = try JSON.parse(response.bodyBytes)
            guard response.status == .ok else {
                throw Failure(description: "etcd \(endpoint.host):\(endpoint.port)\(path): \(Self.message(body))")
            }
            return body
        } catch {
            preferred.withLock { $0 += 1 }
            throw error
        }
    }

    private static func message(_ error: JSON) -> String {
        error["message"]?.stringValue ?? error["error"]?.stringValue ?? String(decoding: error.serialized(), as: UTF8.self)
    }

    private static func keyValue(_ json: JSON) throws -> KeyValue {
        guard let key = json["key"]?.stringValue.flatMap(Base64.decode) else {
            throw Failure(description: "etcd answered a key-value without a key")
        }
        let value = json["value"]?.stringValue.flatMap(Base64.decode) ?? []
        return KeyValue(key: key, value: value, modRevision: int(json["mod_revision"]))
    }

    /// A 64-bit number of the gateway: a string, or absent when zero.
    private static func int(_ json: JSON?) -> Int64 {
        json?.stringValue.flatMap { Int64($0) } ?? json?.intValue ?? 0
    }

    /// The end of the key range holding every key that starts with `prefix`.
    static func rangeEnd(of prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    private func object(_ pairs: [(String, JSON)]) -> JSON { .object(JSONObject(pairs.map { ($0.0, $0.1) })) }
    private func bytes(_ value: [UInt8]) -> JSON { .string(Base64.encode(value)) }
}

/// Cuts a byte stream into newline-terminated lines (the watch gateway sends one JSON message per line).
private final class LineSplitter: Sendable {
    private let pending = Mutex<[UInt8]>([])

    func feed(_ chunk: ByteBuffer) -> [[UInt8]] {
        pending.withLock { pending in
            pending.append(contentsOf: chunk.readableBytesView)
            var lines: [[UInt8]] = []
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if !line.isEmpty { lines.append(line) }
            }
            return lines
        }
    }
}
