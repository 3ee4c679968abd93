import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import OutpostCore
import OutpostHTTP
import OutpostTLS
import OutpostVault

/// A vault's data directory in a scratch folder, with one registered relay "r" and one unused credentials-file
/// secret ("spare").
struct VaultFixture {
    let root: String
    let directory: VaultDataDirectory
    let certificatePEM: String
    /// The relay's credential, as sent after `Bearer `.
    let credential: String

    init(_ purpose: String, settings: (inout VaultConfiguration) -> Void = { _ in }) throws {
        root = NSTemporaryDirectory() + "/outpost-vault-\(purpose)-\(UUID().uuidString.prefix(8))"
        directory = VaultDataDirectory(root)
        try FileManager.default.createDirectory(atPath: root + "/tls", withIntermediateDirectories: true)
        var s = VaultConfiguration(id: "v", name: "v", url: "https://127.0.0.1:1", replication: .lrs, secondary: nil)
        settings(&s)
        try directory.save(s)
        let identity = try TLSIdentity.selfSigned(commonName: "test vault", hosts: ["localhost"])
        try identity.certificatePEM.write(toFile: directory.certificatePath, atomically: true, encoding: .utf8)
        try identity.privateKeyPEM.write(toFile: directory.keyPath, atomically: true, encoding: .utf8)
        certificatePEM = identity.certificatePEM
        let registry = try VaultRegistry(path: directory.registryPath)
        try registry.issue(secret: "secret", expiresAt: Date().addingTimeInterval(3600))
        try registry.issue(secret: "spare", expiresAt: Date().addingTimeInterval(3600))
        guard case .registered(let relay, let secret) = try registry.register(secret: "secret", relayName: "r", maxRelays: 5) else {
            throw VaultError(.invalid, "the test relay was not registered")
        }
        credential = VaultAPI.credential(relayID: relay.id, secret: secret)
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    /// The vault's router in-process (HummingbirdTesting's `.router`: no socket, no TLS).
    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        defer { remove() }
        let server = try VaultServer(directory: directory, host: "127.0.0.1", port: 0, logger: Logger(label: "vault-test"))
        try await Application(router: server.buildRouter()).test(.router, body)
    }
}

extension TestResponse {
    /// The JSON error body every failure has.
    var failure: HTTPErrorBody? { try? JSONDecoder().decode(HTTPErrorBody.self, from: Data(body.readableBytesView)) }
}
