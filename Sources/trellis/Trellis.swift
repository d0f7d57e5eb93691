// trellis: the executable: one subcommand per daemon (registry, sidecar, collector), `up`, and
// the CLI for services, KV, locks and policies.

import ArgumentParser
import ConsulClient
import TrellisCore
import TrellisHTTP

@main
struct Trellis: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trellis",
        abstract: "Service discovery, configuration and observability around thin services.",
        version: "0.1.0",
        subcommands: [RegistryCommand.self, ServicesCommand.self, HealthCommand.self,
                      RegisterCommand.self, DeregisterCommand.self, KVCommand.self, LockCommand.self,
                      SidecarCommand.self, PolicyCommand.self, IntentionCommand.self, CollectorCommand.self, LogsCommand.self, UpCommand.self]
    )
}

/// `--registry`, shared by every command that talks to a registry.
struct RegistryOption: ParsableArguments {
    @Option(name: .long, help: "Registry address HOST:PORT (default: $TRELLIS_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500).")
    var registry: String?

    /// Host and port of the registry a daemon talks to (a wildcard bind address means this machine).
    static func hostPort(_ explicit: String?) throws -> (host: String, port: Int) {
        let url = ConsulClient.resolveAddress(explicit)
        let address = url.range(of: "://").map { String(url[$0.upperBound...]) } ?? url
        guard let (host, port) = HostPort.parse(address) else {
            throw ValidationError("registry address must be HOST:PORT, got \"\(address)\"")
        }
        return (["0.0.0.0", "::"].contains(host) ? "127.0.0.1" : host, port)
    }
}
