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
    public var json: JSON {
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
            case .client: "client"
            }
            fields.append(("rate_limit", .object(JSONObject([
                ("requests", .int(Int64(limit.requests))), ("per", .string(duration(limit.period))),
                ("burst", .int(Int64(limit.burst))), ("key", .string(key)), ("global", .bool(limit.global)),
            ]))))
        } else {
            fields.append(("rate_limit", .null))
        }
        return fields
    }
}

private func duration(_ amount: TimeAmount) -> String { GoDuration.format(nanoseconds: amount.nanoseconds) }

/// A gateway's policy as JSON (admin `/config`), secrets left out: HMAC secrets and API keys
/// show only that they are set.
extension GatewayPolicy {
    public var json: JSON {
        var providers = JSONObject()
        for name in jwtProviders.keys.sorted() {
            let provider = jwtProviders[name]!
            providers.append(name, .object(JSONObject([
                ("issuer", provider.issuer.map { .string($0) } ?? .null),
                ("audiences", .strings(provider.audiences)),
                ("keys", .array(provider.keys.map { key in
                    switch key {
                    case .hmac(let algorithm, _): .object(JSONObject([("alg", .string(algorithm)), ("secret", .string("(set)"))]))
                    case .publicKey(let algorithm, let pem): .object(JSONObject([("alg", .string(algorithm)), ("public_key", .string(pem))]))
                    }
                })),
                ("jwks_url", provider.jwksURL.map { .string($0) } ?? .null),
                ("jwks_refresh", .string(duration(provider.jwksRefresh))),
                ("clock_skew", .string(duration(provider.clockSkew))),
            ])))
        }
        var keySets = JSONObject()
        for name in apiKeys.keys.sorted() {
            let set = apiKeys[name]!
            keySets.append(name, .object(JSONObject([
                ("header", set.header.map { .string($0) } ?? .null), ("query", set.query.map { .string($0) } ?? .null),
                ("keys", .strings(set.keys.keys.sorted())),
            ])))
        }
        return .object(JSONObject([
            ("gateway", gateway.map { .string($0) } ?? .null),
            ("identity_headers", .object(JSONObject([("user", .string(identityHeaders.user)), ("roles", .string(identityHeaders.roles)),
                                                     ("roles_claim", .string(identityHeaders.rolesClaim))]))),
            ("jwt", .object(providers)),
            ("api_keys", .object(keySets)),
            ("backends", backends.json),
            ("rules", .array(rules.map { rule in
                var fields = JSONObject([
                    ("name", .string(rule.name)),
                    ("matches", .array(rule.matches.map(\.json))),
                    ("rewrite_prefix", rule.replacePrefix.map { .string($0) } ?? .null),
                    ("rewrite_full_path", rule.replaceFullPath.map { .string($0) } ?? .null),
                    ("backendRefs", .array(rule.backends.map { .object(JSONObject([("name", .string($0.service)), ("weight", .int(Int64($0.weight)))])) })),
                    ("auth", rule.auth.json),
                    ("max_request_body", rule.maxRequestBody.map { .int(Int64($0)) } ?? .null),
                ])
                for (key, value) in rule.settings.jsonFields { fields.append(key, value) }
                fields.append("cors", rule.cors.map { cors in
                    .object(JSONObject([
                        ("allow_origins", .strings(cors.allowOrigins)), ("allow_methods", .strings(cors.allowMethods)),
                        ("allow_headers", .strings(cors.allowHeaders)), ("expose_headers", .strings(cors.exposeHeaders)),
                        ("allow_credentials", .bool(cors.allowCredentials)), ("max_age", .int(Int64(cors.maxAge))),
                    ]))
                } ?? .null)
                return .object(fields)
            })),
        ]))
    }
}

extension GatewayMatch {
    public var json: JSON {
        let path: (String, String) = switch self.path {
        case .exact(let value): ("Exact", value)
        case .prefix(let value): ("PathPrefix", value)
        case .regularExpression(let value): ("RegularExpression", value)
        }
        func values(_ list: [Value]) -> JSON {
            .array(list.map { .object(JSONObject([("name", .string($0.name)), ("value", .string($0.value)),
                                                  ("type", .string($0.isRegularExpression ? "RegularExpression" : "Exact"))])) })
        }
        return .object(JSONObject([
            ("path", .object(JSONObject([("type", .string(path.0)), ("value", .string(path.1))]))),
            ("method", method.map { .string($0) } ?? .null),
            ("headers", values(headers)),
            ("queryParams", values(queryParams)),
        ]))
    }
}

extension RouteAuth {
    public var json: JSON {
        switch self {
        case .none: .null
        case .jwt(let provider, let roles, let scopes):
            .object(JSONObject([("jwt", .string(provider)), ("roles", .strings(roles)), ("scopes", .strings(scopes))]))
        case .apiKey(let set): .object(JSONObject([("api_key", .string(set))]))
        }
    }
}
