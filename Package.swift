// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "outpost",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "outpost", targets: ["outpost"]),
        // For Fuzz/ (its own package, docs/fuzzing.md): the decoders its libFuzzer targets drive.
        .library(name: "OutpostCore", targets: ["OutpostCore"]),
        .library(name: "OutpostCrypto", targets: ["OutpostCrypto"]),
        .library(name: "OutpostStore", targets: ["OutpostStore"]),
        .library(name: "OutpostForwarder", targets: ["OutpostForwarder"]),
        .library(name: "OutpostHTTP", targets: ["OutpostHTTP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        // libzstd from Debian's libzstd-dev.
        .systemLibrary(
            name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        // Formats and chunking: ids, FastCDC, pack and tree codecs, zstd. Its one piece of file I/O is
        // DurableFile, the atomic, durable writer of small files (configs, keys, registries) every layer shares.
        .target(
            name: "OutpostCore",
            dependencies: [
                "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
            ], swiftSettings: strict),
        // The store: packs on disk and the SQLite index (GRDB), gc, check, rebuild-index.
        .target(
            name: "OutpostStore",
            dependencies: [
                "OutpostCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // Linux calls Swift's Glibc module leaves out (xattrs, O_NOATIME, SEEK_DATA/SEEK_HOLE).
        .target(name: "COutpostSystem"),
        // The file-system side: scanning, the backup pipeline and the restorer, over any Repository.
        .target(
            name: "OutpostArchive",
            dependencies: [
                "OutpostCore", "COutpostSystem",
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // Keys for the vault: passphrase policy, scrypt-wrapped master key, HKDF sub-keys, AES-GCM sealing, HMAC names.
        .target(
            name: "OutpostCrypto",
            dependencies: [
                "OutpostCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ], swiftSettings: strict),
        // The vault's object storage: the ObjectStore protocol, a durable file-system implementation (the
        // embedded default), an in-memory one for tests, and the geo-redundant (GRS) replicating decorator.
        .target(name: "OutpostObjects", dependencies: ["OutpostCore"], swiftSettings: strict),
        // The vault's ObjectStore on S3 (Ceph RGW, MinIO, AWS): SigV4, multipart, retries, over AsyncHTTPClient.
        .target(
            name: "OutpostS3",
            dependencies: [
                "OutpostCore", "OutpostObjects",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ], swiftSettings: strict),
        // TLS material: self-signed certificates made at init, fingerprints, pinning. Shared by relay and client.
        .target(
            name: "OutpostTLS",
            dependencies: [
                "OutpostCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ], swiftSettings: strict),
        // The HTTP layer both servers and both clients share: the wire's JSON types, errors as statuses, bearer
        // authentication, body and connection limits, the server builder; the pinned, retrying client; throttling.
        .target(
            name: "OutpostHTTP",
            dependencies: [
                "OutpostCore", "OutpostTLS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ], swiftSettings: strict),
        // The relay server (Hummingbird 2 over TLS): ingest with per-chunk verification, catalog, restore.
        .target(
            name: "OutpostRelay",
            dependencies: [
                "OutpostCore", "OutpostStore", "OutpostTLS", "OutpostCrypto", "OutpostHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Metrics", package: "swift-metrics"),
            ], swiftSettings: strict),
        // The off-site vault server: containers per relay, credentials files, soft delete, immutability, GRS.
        .target(
            name: "OutpostVault",
            dependencies: [
                "OutpostCore", "OutpostObjects", "OutpostS3", "OutpostTLS", "OutpostHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ], swiftSettings: strict),
        // The relay's MARS-style agent: registration with a vault, keys, encrypted resumable forwarding, throttling.
        .target(
            name: "OutpostForwarder",
            dependencies: [
                "OutpostCore", "OutpostStore", "OutpostCrypto", "OutpostTLS", "OutpostHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ], swiftSettings: strict),
        // The push client kit: the relay seen as a BlobRepository over HTTPS (AsyncHTTPClient, pinned certificate).
        .target(
            name: "OutpostClient",
            dependencies: [
                "OutpostCore", "OutpostTLS", "OutpostHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ], swiftSettings: strict),
        // The agent on each protected machine (issue 12): follows its relay's plan, runs the schedule and the hooks,
        // reports jobs.
        .target(
            name: "OutpostAgent",
            dependencies: [
                "OutpostCore", "OutpostArchive", "OutpostClient", "OutpostHTTP",
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // The web consoles (issue 13; swift-mustache): the relay's (administrators, sessions, pages, the file browser)
        // and the vault's fleet view, which shares its login and layout (so this depends on OutpostVault, not the reverse).
        .target(
            name: "OutpostConsole",
            dependencies: [
                "OutpostCore", "OutpostStore", "OutpostArchive", "OutpostHTTP", "OutpostRelay", "OutpostTLS", "OutpostVault", "OutpostObjects",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        .executableTarget(
            name: "outpost",
            dependencies: [
                "OutpostCore", "OutpostStore", "OutpostArchive", "OutpostTLS", "OutpostRelay", "OutpostClient",
                "OutpostVault", "OutpostObjects", "OutpostCrypto", "OutpostForwarder", "COutpostSystem", "OutpostAgent", "OutpostConsole",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // Fixtures the store and archive tests share: scratch folders, a store, backup and restore helpers, tree diffs.
        .target(
            name: "OutpostTestSupport", dependencies: ["OutpostCore", "OutpostStore", "OutpostArchive", "COutpostSystem"],
            path: "Tests/OutpostTestSupport", swiftSettings: strict),
        .testTarget(name: "OutpostCoreTests", dependencies: ["OutpostCore"], swiftSettings: strict),
        .testTarget(
            name: "OutpostRelayTests",
            dependencies: [
                "OutpostRelay", "OutpostHTTP", "OutpostCore", "OutpostStore",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // The agent's parts that need no relay: hooks (exit, output tail, time-out of the whole process group).
        .testTarget(name: "OutpostAgentTests", dependencies: ["OutpostAgent", "OutpostCore"], swiftSettings: strict),
        .testTarget(
            name: "OutpostHTTPTests",
            dependencies: [
                "OutpostHTTP", "OutpostCore", "OutpostTLS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        .testTarget(
            name: "OutpostClientTests",
            dependencies: [
                "OutpostClient", "OutpostCore", "OutpostTLS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        .testTarget(
            name: "OutpostVaultTests",
            dependencies: [
                "OutpostCore", "OutpostCrypto", "OutpostStore", "OutpostVault", "OutpostObjects", "OutpostForwarder",
                "OutpostHTTP", .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // The consoles' parts without a server: the vault's administrators over a shared object store.
        .testTarget(
            name: "OutpostConsoleTests", dependencies: ["OutpostConsole", "OutpostObjects", "OutpostVault", "OutpostCore"], swiftSettings: strict),
        .testTarget(name: "OutpostCryptoTests", dependencies: ["OutpostCore", "OutpostCrypto", "OutpostObjects"], swiftSettings: strict),
        // A single-node Ceph cluster around a test suite (Deploy/ceph.sh), for the S3 and end-to-end tests.
        .target(name: "OutpostCephTestSupport", dependencies: ["OutpostS3"], path: "Tests/OutpostCephTestSupport", swiftSettings: strict),
        // SigV4 vectors, and the ObjectStore conformance suite on memory, files and a real Ceph RGW (Deploy/ceph.sh).
        .testTarget(
            name: "OutpostS3Tests",
            dependencies: [
                "OutpostCore", "OutpostObjects", "OutpostS3", "OutpostCephTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ], swiftSettings: strict),
        .testTarget(
            name: "OutpostStoreTests", dependencies: ["OutpostCore", "OutpostStore", "OutpostArchive", "COutpostSystem", "OutpostTestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "OutpostArchiveTests", dependencies: ["OutpostCore", "OutpostStore", "OutpostArchive", "COutpostSystem", "OutpostTestSupport"],
            swiftSettings: strict),
        // Drives the real `outpost` binary (built alongside the tests) as operators and scripts do.
        .testTarget(
            name: "OutpostEndToEndTests",
            dependencies: [
                "OutpostCore", "COutpostSystem", "OutpostClient", "OutpostTLS", "OutpostForwarder", "OutpostStore",
                "OutpostRelay", "OutpostS3", "OutpostCephTestSupport", "OutpostConsole", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ], swiftSettings: strict),
    ]
)
