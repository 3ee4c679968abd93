import Foundation
import Logging
import OutpostCore
import OutpostStore
import OutpostTLS

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's data directory: `store/` (the store), `tls/cert.pem` and `tls/key.pem` (made at init),
/// `relay.toml` (settings).
public struct RelayDataDirectory: Sendable {
    public let root: String
    public var storePath: String { root + "/store" }
    public var certificatePath: String { root + "/tls/cert.pem" }
    public var keyPath: String { root + "/tls/key.pem" }
    public var configPath: String { root + "/relay.toml" }

    public init(_ root: String) {
        self.root = DirectoryPath.normalized(root)
    }

    /// Creates the directory: store, self-signed certificate, commented configuration. Returns the fingerprint.
    public func initialize(hosts: [String]) throws -> String {
        let fm = FileManager.default
        if fm.fileExists(atPath: configPath) || fm.fileExists(atPath: storePath + "/config") {
            throw RelayError(.exists, "\(root) already holds a relay; use it as it is, or choose another --data directory")
        }
        try fm.createDirectory(atPath: root + "/tls", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        _ = try Store.initialize(at: storePath)
        let identity = try TLSIdentity.selfSigned(commonName: "Outpost relay", hosts: hosts)
        try write(identity.certificatePEM, to: certificatePath, mode: 0o644)
        try write(identity.privateKeyPEM, to: keyPath, mode: 0o600)
        try write(RelayConfiguration.sample + "\n", to: configPath, mode: 0o600)
        return try identity.fingerprint
    }

    private func write(_ text: String, to path: String, mode: Int) throws {
        // Created with its final mode from the first byte (a key is never readable by others, even briefly).
        do { try DurableFile.write(Array(text.utf8), to: path, mode: mode_t(mode)) } catch {
            throw RelayError(.config, "cannot write \(path) (\(error.reason)): check the permissions and free space of \(root)")
        }
    }

    public func requireRelay() throws {
        guard FileManager.default.fileExists(atPath: storePath + "/config") else {
            throw RelayError(.notARelay, "\(root) is not a relay data directory; create one with `outpost relay init --data \(root)`")
        }
    }

    public func configuration(file: String? = nil) throws -> RelayConfiguration {
        let path = file ?? configPath
        if file == nil && !FileManager.default.fileExists(atPath: path) { return RelayConfiguration() }
        return try RelayConfiguration.load(path: path)
    }

    /// The identity the relay serves: the operator's certificate when configured, else the one made at init.
    public func identity(_ config: RelayConfiguration) throws -> TLSIdentity {
        let certPath = config.tlsCertificate ?? certificatePath
        let keyPath = config.tlsPrivateKey ?? self.keyPath
        guard let cert = try? String(contentsOfFile: certPath, encoding: .utf8) else {
            throw RelayError(.tls, "cannot read the TLS certificate \(certPath)")
        }
        guard let key = try? String(contentsOfFile: keyPath, encoding: .utf8) else {
            throw RelayError(.tls, "cannot read the TLS private key \(keyPath) (it must be readable by the relay's user only)")
        }
        return TLSIdentity(certificatePEM: cert, privateKeyPEM: key)
    }
}
