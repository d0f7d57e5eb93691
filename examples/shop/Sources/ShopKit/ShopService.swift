import Foundation
import GRDB
import Hummingbird
import Logging

/// The little every shop service needs around its domain: the port from `PORT`, JSON log lines on
/// stdout, its own SQLite file, a router with `/health` and one log line per request, and a clean
/// stop on SIGTERM. It knows nothing of registries, proxies or collectors.
public struct ShopService: Sendable {
    public let name: String
    public let port: Int
    public let logger: Logger
    /// The service's own database file: `--database PATH`, or `<name>.sqlite` in the working directory.
    public let databasePath: String

    public init(name: String, arguments: [String] = Array(CommandLine.arguments.dropFirst())) throws {
        guard let text = ProcessInfo.processInfo.environment["PORT"], let port = Int(text), (1...65535).contains(port) else {
            throw ShopError.configuration("PORT must name the port to listen on (1-65535)")
        }
        self.name = name
        self.port = port
        databasePath = Self.value(of: "--database", in: arguments) ?? "\(name).sqlite"
        LoggingSystem.bootstrap { label in JSONLines(label: label, service: name) }
        logger = Logger(label: name)
    }

    private static func value(of flag: String, in arguments: [String]) -> String? {
        guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
        return arguments[index + 1]
    }

    /// Opens (and creates) the service's database; `schema` runs at every start, so it must be idempotent
    /// (`CREATE TABLE IF NOT EXISTS`): replicas of a service share the file.
    public func openDatabase(schema: [String]) throws -> DatabasePool {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        let pool = try DatabasePool(path: databasePath, configuration: configuration)
        try pool.write { db in
            for statement in schema { try db.execute(sql: statement) }
        }
        return pool
    }

    /// A router that logs every request with its trace id, makes the incoming `traceparent` available
    /// to `Upstream` calls, and answers `/health`.
    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestLog(logger: logger))
        router.get("/health") { _, _ in ["status": "ok"] }
        return router
    }

    /// Serves until SIGTERM or SIGINT, then finishes the requests in flight.
    public func run(_ router: Router<BasicRequestContext>) async throws {
        let app = Application(router: router,
                              configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: name),
                              logger: logger)
        logger.info("listening", metadata: ["port": "\(port)", "database": "\(databasePath)"])
        try await app.runService()
    }
}

public enum ShopError: Error, CustomStringConvertible {
    case configuration(String)

    public var description: String {
        switch self {
        case .configuration(let message): message
        }
    }
}
