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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // libzstd from Debian's libzstd-dev.
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        // Formats and chunking: ids, FastCDC, pack and tree codecs, zstd. Pure, no file I/O.
        .target(name: "OutpostCore", dependencies: [
            "CZstd",
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: strict),
        // The store: packs on disk and the SQLite index (GRDB), gc, check, rebuild-index.
        .target(name: "OutpostStore", dependencies: [
            "OutpostCore",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        // Linux calls Swift's Glibc module leaves out (xattrs, O_NOATIME, SEEK_DATA/SEEK_HOLE).
        .target(name: "COutpostSystem"),
        // The file-system side: scanning, the backup pipeline and the restorer, over any Repository.
        .target(name: "OutpostArchive", dependencies: [
            "OutpostCore", "COutpostSystem",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .executableTarget(name: "outpost", dependencies: [
            "OutpostCore", "OutpostStore", "OutpostArchive",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .testTarget(name: "OutpostCoreTests", dependencies: ["OutpostCore"], swiftSettings: strict),
        .testTarget(name: "OutpostStoreTests", dependencies: ["OutpostCore", "OutpostStore", "OutpostArchive", "COutpostSystem"],
                    swiftSettings: strict),
        // Drives the real `outpost` binary (built alongside the tests) as operators and scripts do.
        .testTarget(name: "OutpostEndToEndTests", dependencies: ["OutpostCore", "COutpostSystem"], swiftSettings: strict),
    ]
)
