/// Names that Trellis processes agree on through the registry, defined once: a sidecar writes
/// them into its registration and the collector looks for them.
public enum WellKnownNames {
    /// The service the collector registers as; sidecars ship their logs to its instances.
    public static let collectorService = "trellis-collector"
    /// Service Meta key with the port of a sidecar's admin listener (its `/metrics`).
    public static let sidecarAdminPortMeta = "trellis_sidecar_admin_port"
    /// Service Meta key with a sidecar's inbound mutual TLS mode (`off`, `permissive`, `strict`):
    /// callers use mutual TLS to instances whose mode takes it.
    public static let sidecarMTLSMeta = "trellis_mtls"
    /// Service Meta key with the services a sidecar calls, comma-separated (the UI's topology).
    public static let sidecarUpstreamsMeta = "trellis_upstreams"
}
