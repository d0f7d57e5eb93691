import Logging
import Synchronization
import TrellisCore

/// Keeps the instance registered: registers at start (retrying until the registry answers),
/// checks every few seconds that the registry still knows it and registers again if not.
public final class Registration: Sendable {
    let registry: ConsulClient
    let logger: Logger
    let body: [UInt8]
    public let instanceID: String
    /// Set by `deregister`: from then on the instance must stay out of the registry.
    private let leaving = Atomic(false)

    public init(registry: ConsulClient, logger: Logger, body: [UInt8], instanceID: String) {
        self.registry = registry
        self.logger = logger
        self.body = body
        self.instanceID = instanceID
    }

    public func keepRegistered() async {
        var registered = false
        while !Task.isCancelled && !leaving.load(ordering: .relaxed) {
            do {
                if registered {
                    let answer = try await registry.call(.GET, "/v1/agent/service/\(URLPath.escape(instanceID))")
                    if answer.status == .notFound {
                        logger.warning("registry forgot the instance, registering again", metadata: ["instance": "\(instanceID)"])
                        registered = false
                    }
                }
                if !registered {
                    try await registry.expectOK(.PUT, "/v1/agent/service/register", body: body)
                    registered = true
                    logger.info("registered", metadata: ["instance": "\(instanceID)"])
                    // A registration racing with shutdown must not outlive it.
                    if leaving.load(ordering: .relaxed) { await deregister() }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("registry unreachable", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: registered ? .seconds(3) : .milliseconds(500))
        }
    }

    public func deregister() async {
        leaving.store(true, ordering: .relaxed)
        do {
            try await registry.expectOK(.PUT, "/v1/agent/service/deregister/\(URLPath.escape(instanceID))")
        } catch {
            logger.warning("could not deregister", metadata: ["error": "\(error)"])
        }
    }
}
