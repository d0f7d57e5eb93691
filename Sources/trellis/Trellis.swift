import ArgumentParser

@main
struct Trellis: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trellis",
        abstract: "Service discovery, configuration and observability around thin services.",
        version: "0.1.0",
        subcommands: [RegistryCommand.self, ServicesCommand.self, HealthCommand.self,
                      RegisterCommand.self, DeregisterCommand.self, KVCommand.self, LockCommand.self,
                      SidecarCommand.self, PolicyCommand.self]
    )
}

/// `--registry`, shared by every command that talks to a registry.
struct RegistryOption: ParsableArguments {
    @Option(name: .long, help: "Registry address HOST:PORT (default: $TRELLIS_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500).")
    var registry: String?
}
