import ArgumentParser
import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP

/// Consul-style single-dash flag names (`-recurse`) next to the double-dash ones.
private func consulFlag(_ name: String) -> NameSpecification { [.customLong(name, withSingleDash: true), .customLong(name)] }

struct KVCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv", abstract: "Read and write the registry's KV store (Consul-compatible).",
        subcommands: [KVGet.self, KVPut.self, KVDelete.self, KVExport.self, KVImport.self, KVWatch.self])
}

struct KVGet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Print a value, or all values under a prefix.")
    @OptionGroup var options: RegistryOption
    @Argument(help: "Key or prefix.") var key: String = ""
    @Flag(name: consulFlag("recurse"), help: "Print every key under the prefix as key:value.") var recurse = false
    @Flag(name: consulFlag("keys"), help: "Print only the keys under the prefix.") var keys = false
    @Option(name: consulFlag("separator"), help: "With -keys, roll keys up at this separator.") var separator = "/"

    func run() async throws {
        let client = try options.client()
        let path = "/v1/kv/\(URLPath.escape(key, keepingSlashes: true))"
        if keys {
            let (status, _, body) = try await CLI.call { try await client.send("GET", path + "?keys&separator=\(URLPath.escape(separator, keepingSlashes: true))") }
            guard status != 404 else { return }
            try CLI.check(status, body)
            for key in try JSON.parse(body).arrayValue ?? [] { print(key.stringValue ?? "") }
            return
        }
        let (status, _, body) = try await CLI.call { try await client.send("GET", path + (recurse ? "?recurse" : "")) }
        if status == 404 {
            if recurse { return }
            CLI.fail("No key exists at: \(key)")
        }
        try CLI.check(status, body)
        for entry in try JSON.parse(body).arrayValue ?? [] {
            let value = Base64.decode(entry["Value"]?.stringValue ?? "") ?? []
            let text = String(decoding: value, as: UTF8.self)
            print(recurse ? "\(entry["Key"]?.stringValue ?? ""):\(text)" : text)
        }
    }
}

struct KVPut: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Write a value (\"-\" reads it from stdin).")
    @OptionGroup var options: RegistryOption
    @Argument(help: "Key.") var key: String
    @Argument(help: "Value; \"-\" reads stdin; empty when omitted.") var value: String?
    @Flag(name: consulFlag("cas"), help: "Write only if the key's modify index is -modify-index (0: only if absent).") var cas = false
    @Option(name: consulFlag("modify-index"), help: "Index for -cas.") var modifyIndex: UInt64 = 0
    @Option(name: consulFlag("flags"), help: "Opaque unsigned integer stored with the value.") var flags: UInt64 = 0

    func run() async throws {
        let bytes: [UInt8] = value == "-" ? [UInt8](FileHandle.standardInput.readDataToEndOfFile()) : Array((value ?? "").utf8)
        var query = ["flags=\(flags)"]
        if cas { query.append("cas=\(modifyIndex)") }
        let client = try options.client()
        let (status, _, body) = try await CLI.call {
            try await client.send("PUT", "/v1/kv/\(URLPath.escape(key, keepingSlashes: true))?" + query.joined(separator: "&"), body: bytes)
        }
        try CLI.check(status, body)
        guard String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "true" else {
            CLI.fail("Error! Did not write to \(key): CAS failed")
        }
        print("Success! Data written to: \(key)")
    }
}

struct KVDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a key, or everything under a prefix.")
    @OptionGroup var options: RegistryOption
    @Argument(help: "Key or prefix.") var key: String = ""
    @Flag(name: consulFlag("recurse"), help: "Delete every key under the prefix.") var recurse = false
    @Flag(name: consulFlag("cas"), help: "Delete only if the key's modify index is -modify-index.") var cas = false
    @Option(name: consulFlag("modify-index"), help: "Index for -cas.") var modifyIndex: UInt64 = 0

    func run() async throws {
        guard recurse || !key.isEmpty else { throw ValidationError("a key is required (or -recurse)") }
        var query: [String] = []
        if recurse { query.append("recurse") }
        if cas { query.append("cas=\(modifyIndex)") }
        let client = try options.client()
        let (status, _, body) = try await CLI.call {
            try await client.send("DELETE", "/v1/kv/\(URLPath.escape(key, keepingSlashes: true))" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
        }
        try CLI.check(status, body)
        guard String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "true" else {
            CLI.fail("Error! Did not delete key \(key): CAS failed")
        }
        print(recurse ? "Success! Deleted keys with prefix: \(key)" : "Success! Deleted key: \(key)")
    }
}

struct KVExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Print keys under a prefix as JSON (Consul's kv export format).")
    @OptionGroup var options: RegistryOption
    @Argument(help: "Prefix (all keys when omitted).") var prefix: String = ""

    func run() async throws {
        let client = try options.client()
        let (status, _, body) = try await CLI.call { try await client.send("GET", "/v1/kv/\(URLPath.escape(prefix, keepingSlashes: true))?recurse") }
        var items: [JSON] = []
        if status != 404 {
            try CLI.check(status, body)
            items = (try JSON.parse(body).arrayValue ?? []).map { entry in
                .object(JSONObject([("key", entry["Key"] ?? .string("")), ("flags", entry["Flags"] ?? .int(0)),
                                    ("value", .string(entry["Value"]?.stringValue ?? ""))]))
            }
        }
        print(String(decoding: JSON.array(items).serialized(pretty: true), as: UTF8.self), terminator: "")
    }
}

struct KVImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "Write keys from a kv export JSON file (\"-\": stdin).")
    @OptionGroup var options: RegistryOption
    @Argument(help: "File from `trellis kv export` or `consul kv export`.") var file: String

    func run() async throws {
        let data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: file)
        guard let data else { throw ValidationError("cannot read \(file)") }
        let items: [JSON]
        do {
            guard let list = try JSON.parse(Array(data)).arrayValue else { throw ValidationError("expected a JSON array") }
            items = list
        } catch let error as JSONParseError {
            throw ValidationError("\(file): \(error)")
        }
        let client = try options.client()
        for item in items {
            guard let key = item["key"]?.stringValue, let value = Base64.decode(item["value"]?.stringValue ?? "") else {
                throw ValidationError("\(file): every item needs \"key\" and a base64 \"value\"")
            }
            let flags = item["flags"]?.intValue ?? 0
            let (status, _, body) = try await CLI.call {
                try await client.send("PUT", "/v1/kv/\(URLPath.escape(key, keepingSlashes: true))?flags=\(flags)", body: value)
            }
            try CLI.check(status, body)
            print("Imported: \(key)")
        }
    }
}

struct KVWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "Print changes under a prefix as they happen.")
    @OptionGroup var options: RegistryOption
    @Argument(help: "Prefix to watch.") var prefix: String = ""

    func run() async throws {
        let client = try options.client()
        var index: UInt64 = 0
        var known: [String: UInt64] = [:]
        var first = true
        while true {
            let (status, headers, body) = try await CLI.call {
                try await client.send("GET", "/v1/kv/\(URLPath.escape(prefix, keepingSlashes: true))?recurse&index=\(index)&wait=5m", timeout: 660)
            }
            let newIndex = headers["x-consul-index"].flatMap(UInt64.init) ?? 0
            // Consul's rule: an index that goes backwards means start over.
            index = newIndex < index ? 0 : newIndex
            guard status == 200 || status == 404 else { try CLI.check(status, body); continue }
            var current: [String: UInt64] = [:]
            for entry in status == 200 ? (try JSON.parse(body).arrayValue ?? []) : [] {
                guard let key = entry["Key"]?.stringValue else { continue }
                let modified = UInt64(entry["ModifyIndex"]?.intValue ?? 0)
                current[key] = modified
                if known[key] != modified && !first {
                    let value = String(decoding: Base64.decode(entry["Value"]?.stringValue ?? "") ?? [], as: UTF8.self)
                    CLI.emit("PUT \(key) = \(value)")
                }
            }
            if !first { for key in known.keys.sorted() where current[key] == nil { CLI.emit("DELETE \(key)") } }
            if first { CLI.emit("watching \(prefix.isEmpty ? "all keys" : prefix) at index \(index) (\(current.count) keys)") }
            known = current
            first = false
        }
    }
}
