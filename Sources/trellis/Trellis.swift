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
                      SidecarCommand.self, GatewayCommand.self, PolicyCommand.self, IntentionCommand.self, ACLCommand.self, CollectorCommand.self, LogsCommand.self, UpCommand.self]
    )
}

/// `--token` and `--token-file`: the ACL token presented to the registry.
struct TokenOption: ParsableArguments {
    @Option(name: .long, help: "ACL token for the registry (default: $CONSUL_HTTP_TOKEN).")
    var token: String?

    @Option(name: .long, help: "File holding the ACL token (default: $CONSUL_HTTP_TOKEN_FILE).")
    var tokenFile: String?

    /// The token from the flags, else Consul's environment variables; nil when none is given.
    func resolve() throws -> String? {
        do {
            return try ConsulClient.resolveToken(token, file: tokenFile)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

/// `--registry` and the token, shared by every command that talks to a registry.
struct RegistryOption: ParsableArguments {
    @Option(name: .long, help: "Registry address HOST:PORT (default: $TRELLIS_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500).")
    var registry: String?

    @OptionGroup var token: TokenOption

    /// A client of the registry these options name.
    func client() throws -> ConsulClient { ConsulClient(address: registry, token: try token.resolve()) }

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
