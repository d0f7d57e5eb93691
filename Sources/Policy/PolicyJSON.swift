import NIOCore
import TrellisCore

/// The effective policy as JSON (for the admin `/config` page), in the YAML's own field names.
extension SidecarPolicy {
    public var json: JSON {
        var upstreamObject = JSONObject()
        for name in upstreams.keys.sorted() { upstreamObject.append(name, upstreams[name]!.json) }
        return .object(JSONObject([
            ("service", service.map { .string($0) } ?? .null),
            ("inbound", inbound.json),
            ("defaults", defaults.json),
            ("upstreams", .object(upstreamObject)),
        ]))
    }
}

extension ListenerPolicy {
    var json: JSON {
        var object = JSONObject([
            ("load_balancer", .object(JSONObject([
                ("policy", .string(loadBalancer.kind.rawValue)),
                ("hash_header", loadBalancer.hashHeader.map { .string($0) } ?? .null),
            ]))),
            ("circuit_breaker", .object(JSONObject([
                ("max_connections", .int(Int64(circuitBreaker.maxConnections))),
                ("max_pending_requests", .int(Int64(circuitBreaker.maxPendingRequests))),
                ("max_requests", .int(Int64(circuitBreaker.maxRequests))),
            ]))),
            ("outlier_detection", .object(JSONObject([
                ("enabled", .bool(outlierDetection.enabled)),
                ("consecutive_errors", .int(Int64(outlierDetection.consecutiveErrors))),
                ("base_ejection_time", .string(duration(outlierDetection.baseEjectionTime))),
                ("max_ejection_time", .string(duration(outlierDetection.maxEjectionTime))),
                ("max_ejection_percent", .int(Int64(outlierDetection.maxEjectionPercent))),
            ]))),
        ])
        for (key, value) in route.jsonFields { object.append(key, value) }
        object.append("routes", .array(routes.map { route in
            var r = JSONObject([
                ("name", .string(route.name)),
                ("match", .object(JSONObject([
                    ("path_prefix", .string(route.match.pathPrefix)),
                    ("methods", .strings(route.match.methods)),
                    ("headers", .object(JSONObject(route.match.headers.map { ($0.name, .string($0.value)) }))),
                ]))),
            ])
            for (key, value) in route.settings.jsonFields { r.append(key, value) }
            r.append("split", .array(route.split.map { target in
                .object(JSONObject([("weight", .int(Int64(target.weight))), ("tag", target.tag.map { .string($0) } ?? .null)]))
            }))
            return .object(r)
        }))
        return .object(object)
    }
}

extension RouteSettings {
    var jsonFields: [(key: String, value: JSON)] {
        let conditions: [String] = retries.conditions.map { condition in
            switch condition {
            case .connectFailure: "connect_failure"
            case .reset: "reset"
            case .timeout: "timeout"
            case .status(let code): String(code)
            }
        }.sorted()
        var fields: [(key: String, value: JSON)] = [
            ("timeouts", .object(JSONObject([
                ("connect", .string(duration(timeouts.connect))),
                ("per_try", timeouts.perTry.map { .string(duration($0)) } ?? .null),
                ("request", timeouts.request.map { .string(duration($0)) } ?? .null),
            ]))),
            ("retries", .object(JSONObject([
                ("attempts", .int(Int64(retries.attempts))),
                ("retry_on", .strings(conditions)),
                ("methods", .string(retries.allMethods ? "all" : "idempotent")),
                ("backoff", .object(JSONObject([("base", .string(duration(retries.backoffBase))), ("max", .string(duration(retries.backoffMax)))]))),
                ("budget", .object(JSONObject([
                    ("percent", .double(retries.budget.percent)),
                    ("min_retries_per_second", .double(retries.budget.minRetriesPerSecond)),
                    ("window", .string(duration(retries.budget.window))),
                ]))),
                ("buffer_limit", .int(Int64(retries.bufferLimit))),
            ]))),
        ]
        if let limit = rateLimit {
            let key: String = switch limit.key {
            case .none: "none"
            case .source: "source"
            case .header(let name): "header:\(name)"
            }
            fields.append(("rate_limit", .object(JSONObject([
                ("requests", .int(Int64(limit.requests))), ("per", .string(duration(limit.period))),
                ("burst", .int(Int64(limit.burst))), ("key", .string(key)),
            ]))))
        } else {
            fields.append(("rate_limit", .null))
        }
        return fields
    }
}

private func duration(_ amount: TimeAmount) -> String { GoDuration.format(nanoseconds: amount.nanoseconds) }
