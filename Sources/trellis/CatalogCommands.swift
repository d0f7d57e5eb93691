import ArgumentParser
import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP

struct ServicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "services", abstract: "List services with instance health.")

    @OptionGroup var options: RegistryOption

    func run() async throws {
        let client = try options.client()
        let (services, _) = try await CLI.call { try await client.json("GET", "/v1/catalog/services") }
        var rows = [["SERVICE", "INSTANCES", "PASSING", "WARNING", "CRITICAL", "TAGS"]]
        for (name, tags) in services.objectValue?.pairs ?? [] {
            let entries = try await CLI.call {
                try await client.decode([ServiceHealth].self, "GET", "/v1/health/service/\(URLPath.escape(name))")
            }
            var counts: [HealthStatus: Int] = [:]
            for entry in entries { counts[entry.status, default: 0] += 1 }
            rows.append([name, String(entries.count), String(counts[.passing] ?? 0),
                         String(counts[.warning] ?? 0), String((counts[.critical] ?? 0) + (counts[.maintenance] ?? 0)),
                         (tags.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ",")])
        }
        CLI.printTable(rows)
    }
}

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "Show the health of every instance of a service.")

    @OptionGroup var options: RegistryOption
    @Argument(help: "Service name.") var service: String
    @Flag(name: .long, help: "Only instances whose checks all pass.") var passing = false

    func run() async throws {
        let client = try options.client()
        let path = "/v1/health/service/\(URLPath.escape(service))" + (passing ? "?passing" : "")
        let items = try await CLI.call { try await client.decode([ServiceHealth].self, "GET", path) }
        if items.isEmpty {
            print("no \(passing ? "passing " : "")instances of \"\(service)\"")
            throw ExitCode(1)
        }
        var rows = [["INSTANCE", "NODE", "ADDRESS", "STATUS", "CHECK", "CHECK STATUS", "OUTPUT"]]
        for entry in items {
            let first = [entry.service.id, entry.node.name, "\(entry.address):\(entry.service.port)", entry.status.rawValue]
            if entry.checks.isEmpty { rows.append(first + ["", "", ""]) }
            for (i, check) in entry.checks.enumerated() {
                let output = check.output.split(separator: "\n").first.map(String.init) ?? ""
                rows.append((i == 0 ? first : ["", "", "", ""]) + [check.checkID, check.status, String(output.prefix(60))])
            }
        }
        CLI.printTable(rows)
    }
}

struct RegisterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register",
        abstract: "Register services from a JSON or YAML file (Consul service definition format).")

    @OptionGroup var options: RegistryOption
    @Argument(help: "File with a service definition: {\"Service\": {...}}, {\"Services\": [...]} or the bare definition.")
    var file: String

    func run() async throws {
        let definitions = try ServiceFile.load(path: file)
        let client = try options.client()
        for definition in definitions {
            _ = try await CLI.call { try await client.json("PUT", "/v1/agent/service/register", body: definition.serialized()) }
            let name = definition.objectValue?.field("Name")?.stringValue ?? "?"
            print("registered service \"\(name)\"")
        }
    }
}

struct DeregisterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "deregister", abstract: "Deregister a service instance by ID.")

    @OptionGroup var options: RegistryOption
    @Argument(help: "Service ID.") var id: String

    func run() async throws {
        let client = try options.client()
        _ = try await CLI.call { try await client.json("PUT", "/v1/agent/service/deregister/\(URLPath.escape(id))") }
        print("deregistered service \"\(id)\"")
    }
}

/// Reads service definitions from JSON or YAML files.
enum ServiceFile {
    static func load(path: String) throws -> [JSON] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read \(path)")
        }
        let document: JSON
        let text = String(decoding: data, as: UTF8.self)
        if path.hasSuffix(".json") {
            do { document = try JSON.parse(Array(data)) } catch {
                throw ValidationError("\(path): \(error)")
            }
        } else {
            do { document = try ConfigReader(yaml: text).json } catch { throw ValidationError(error.inFile(path).description) }
        }
        guard let object = document.objectValue else { throw ValidationError("\(path): expected an object") }
        if let list = object.field("Services")?.arrayValue { return list }
        if let one = object.field("Service"), one.objectValue != nil { return [one] }
        return [document]
    }
}

/// Shared output and error handling of the CLI.
enum CLI {
    /// Runs a registry call, turning transport and API errors into a one-line message and exit code 1.
    static func call<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch ConsulClient.Failure.answered(let status, let message) {
            throw report(status: status, message)
        } catch ConsulClient.Failure.unreachable(let reason) {
            FileHandle.standardError.write(Data("error: cannot reach the registry: \(reason)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Exits with the registry's message when `status` is not 2xx.
    static func check(_ status: Int, _ body: [UInt8]) throws {
        guard (200..<300).contains(status) else {
            throw report(status: status, String(decoding: body, as: UTF8.self))
        }
    }

    private static func report(status: Int, _ message: String) -> ExitCode {
        let message = message.trimmingCharacters(in: .whitespacesAndNewlines)
        FileHandle.standardError.write(Data("error: \(message) (HTTP \(status))\n".utf8))
        return ExitCode(1)
    }

    /// Prints `message` on stderr and exits with status 1.
    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        Foundation.exit(1)
    }

    /// Writes a line to stdout at once (no buffering), for streaming output.
    static func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func printTable(_ rows: [[String]]) {
        TextTable.lines(rows).forEach { print($0) }
    }
}
