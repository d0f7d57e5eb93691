// swift-tools-version: 6.2
import PackageDescription

let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]
/// For the sidecar's data path: release builds skip the run-time exclusivity checks, about 2 % of
/// the sidecar's CPU under load in perf. Debug builds (and so the tests) keep them.
let dataPath: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
/// SwiftNIO's HTTP/1.1 stack, which every daemon library uses.
let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
]

/// What every daemon library uses besides SwiftNIO: metrics, logging, lifecycle.
let daemon: [Target.Dependency] = [
    .product(name: "Prometheus", package: "swift-prometheus"),
    .product(name: "Logging", package: "swift-log"),
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
] + nio

// Trellis builds for Linux only: the data plane runs on epoll and glibc, the daemons use libsystemd.
let package = Package(
    name: "trellis",
    products: [
        .executable(name: "trellis", targets: ["trellis"]),
        .executable(name: "shop-users", targets: ["shop-users"]),
        .executable(name: "shop-catalog", targets: ["shop-catalog"]),
        .executable(name: "shop-orders", targets: ["shop-orders"]),
        .executable(name: "shop-notifications", targets: ["shop-notifications"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        // The example shop's services (examples/shop): a web framework and JWTs, nothing of Trellis.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"5.0.0"),
        // The registry's certificate authority: certificates, keys and their PEM forms.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CCompression", providers: [.apt(["zlib1g-dev", "libsnappy-dev"])]),
        .systemLibrary(name: "CEventIO"),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(
            name: "TrellisCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        .target(
            name: "Telemetry",
            dependencies: [
                "TrellisCore",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TrellisHTTP",
            dependencies: [
                "TrellisCore", "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ] + nio,
            swiftSettings: strict
        ),
        .target(
            name: "Policy",
            dependencies: [
                "TrellisCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ConsulClient",
            dependencies: [
                "TrellisCore", "TrellisHTTP",
                .product(name: "Logging", package: "swift-log"),
            ] + nio,
            swiftSettings: strict
        ),
        .target(
            name: "EventIO",
            dependencies: ["CEventIO", "COpenSSL", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: dataPath
        ),
        .target(
            name: "Sidecar",
            dependencies: [
                "TrellisCore", "Telemetry", "TrellisHTTP", "ConsulClient", "Policy", "EventIO", "CEventIO",
                // The gateway's token checks: jwt-kit's keys and signature algorithms, swift-crypto's digests.
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ] + daemon,
            swiftSettings: dataPath
        ),
        .target(
            name: "Registry",
            dependencies: [
                "TrellisCore", "Telemetry", "CSystemd", "TrellisHTTP", "ConsulClient",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ] + daemon,
            swiftSettings: strict
        ),
        .target(
            name: "Collector",
            dependencies: [
                "TrellisCore", "Telemetry", "TrellisHTTP", "ConsulClient", "CCompression", "CSystemd",
            ] + daemon,
            swiftSettings: strict
        ),
        .target(
            name: "Fleet",
            dependencies: [
                "TrellisCore", "TrellisHTTP", "ConsulClient", "Policy", "Telemetry",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "trellis",
            dependencies: [
                "TrellisCore", "Registry", "Sidecar", "Collector", "Telemetry", "TrellisHTTP", "ConsulClient", "Policy", "Fleet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "reactor-relay", dependencies: ["EventIO"], path: "benchmarks/ReactorRelay", swiftSettings: strict),
        .executableTarget(name: "exposition-bench", dependencies: ["Telemetry"], path: "benchmarks/ExpositionBench",
                          swiftSettings: strict),
        .target(
            name: "ShopKit",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/shop/Sources/ShopKit", swiftSettings: strict
        ),
        .executableTarget(name: "shop-users", dependencies: [
            "ShopKit",
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], path: "examples/shop/Sources/users", swiftSettings: strict),
        .executableTarget(name: "shop-catalog", dependencies: ["ShopKit"], path: "examples/shop/Sources/catalog", swiftSettings: strict),
        .executableTarget(name: "shop-orders", dependencies: ["ShopKit", .product(name: "Logging", package: "swift-log")], path: "examples/shop/Sources/orders", swiftSettings: strict),
        .executableTarget(name: "shop-notifications", dependencies: ["ShopKit"], path: "examples/shop/Sources/notifications",
                          swiftSettings: strict),
        .testTarget(name: "TrellisCoreTests", dependencies: ["TrellisCore"]),
        .testTarget(name: "EventIOTests", dependencies: ["EventIO", "CEventIO", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "PolicyTests", dependencies: ["Policy", "TrellisCore", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "TelemetryTests", dependencies: [
            "Telemetry",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .testTarget(name: "TrellisHTTPTests", dependencies: [
            "TrellisHTTP",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "SidecarTests", dependencies: [
            "Sidecar", "EventIO", "TrellisCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .testTarget(name: "RegistryTests", dependencies: [
            "Registry", "TrellisCore", "TrellisHTTP",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "CollectorTests", dependencies: ["Collector", "ConsulClient", "Telemetry", "TrellisCore"]),
        .testTarget(name: "FleetTests", dependencies: ["Fleet"]),
        .testTarget(name: "IntegrationTests", dependencies: ["TrellisCore", "TrellisHTTP", "ConsulClient"]),
    ]
)
