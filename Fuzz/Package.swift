// swift-tools-version:6.2
// libFuzzer targets for every decoder fed by the network or the disk (docs/fuzzing.md). A package of its own, so
// that the root `swift build --build-tests` never builds it; Deploy/fuzz.sh builds it with the sanitizers.
import PackageDescription

/// Each target is one `LLVMFuzzerTestOneInput`: libFuzzer supplies `main`, so no file may hold top-level code.
let fuzzTarget: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "outpost-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Named, so that `package:` below does not depend on the name of the folder the project is cloned into.
        .package(name: "outpost", path: "..")
    ],
    targets: [
        .target(name: "CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver", .product(name: "OutpostCore", package: "outpost")]),
        .executableTarget(
            name: "FuzzWire",
            dependencies: [
                "FuzzSupport", .product(name: "OutpostCore", package: "outpost"),
            ], swiftSettings: fuzzTarget),
        .executableTarget(
            name: "FuzzPack",
            dependencies: [
                "FuzzSupport", .product(name: "OutpostCore", package: "outpost"), .product(name: "OutpostStore", package: "outpost"),
            ], swiftSettings: fuzzTarget),
        .executableTarget(
            name: "FuzzTree",
            dependencies: [
                "FuzzSupport", .product(name: "OutpostCore", package: "outpost"),
            ], swiftSettings: fuzzTarget),
        .executableTarget(
            name: "FuzzPoint",
            dependencies: [
                "FuzzSupport", .product(name: "OutpostCore", package: "outpost"), .product(name: "OutpostCrypto", package: "outpost"),
                .product(name: "OutpostHTTP", package: "outpost"),
            ], swiftSettings: fuzzTarget),
        .executableTarget(
            name: "FuzzZstd",
            dependencies: [
                "FuzzSupport", .product(name: "OutpostCore", package: "outpost"),
            ], swiftSettings: fuzzTarget),
        .executableTarget(
            name: "FuzzVaultPack",
            dependencies: [
                "FuzzSupport", .product(name: "OutpostCore", package: "outpost"), .product(name: "OutpostCrypto", package: "outpost"),
                .product(name: "OutpostStore", package: "outpost"), .product(name: "OutpostForwarder", package: "outpost"),
            ], swiftSettings: fuzzTarget),
    ]
)
