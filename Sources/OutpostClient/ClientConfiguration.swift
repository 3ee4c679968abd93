import Foundation
import OutpostCore
import TOMLKit

#if canImport(Glibc)
    import Glibc
#endif

/// A protected machine's link to its relay: written by `outpost enroll` (mode 0600), read by every remote command.
public struct ClientConfiguration: Codable, Sendable, Equatable {
    /// `https://HOST:PORT` (or `http://` for a relay run with --insecure-http).
    public var relay: String
    public var machine: String
    /// `outpost1:<machine>:<secret>`; it lets this machine add recovery points and read its own.
    public var credential: String
    /// SHA-256 of the relay certificate's DER, pinned at enrollment.
    public var fingerprint: String?
    /// The pinned certificate itself (PEM): the only one this client trusts for the relay.
    public var certificate: String?

    public init(relay: String, machine: String, credential: String, fingerprint: String?, certificate: String?) {
        self.relay = relay; self.machine = machine; self.credential = credential
        self.fingerprint = fingerprint; self.certificate = certificate
    }

    /// `$XDG_CONFIG_HOME/outpost/client.toml`, else `~/.config/outpost/client.toml`.
    public static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_CONFIG_HOME"], !xdg.isEmpty { return xdg + "/outpost/client.toml" }
        let home = env["HOME"] ?? NSHomeDirectory()
        return home + "/.config/outpost/client.toml"
    }

    public static func load(path: String) throws -> ClientConfiguration {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ClientError(
                .notEnrolled,
                "no client configuration at \(path): enroll this machine first with `outpost enroll --relay https://HOST:PORT --token TOKEN`, or pass --config FILE (or --store DIR for a local store)"
            )
        }
        do { return try TOMLDecoder().decode(ClientConfiguration.self, from: text) } catch {
            throw ClientError(.notEnrolled, "the client configuration \(path) is damaged (\(error)); enroll again")
        }
    }

    /// Creates the folder that will hold the configuration; called before enrolling so that a token is never
    /// spent on a configuration that cannot be written.
    @discardableResult
    public static func prepareDirectory(for path: String) throws -> String {
        var dir = (path as NSString).deletingLastPathComponent
        if dir.isEmpty { dir = "." }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ClientError(
                .config, "cannot create \(dir) for the client configuration: \(error.localizedDescription); choose another --config path")
        }
        guard access(dir, W_OK) == 0 else {
            throw ClientError(.config, "\(dir) is not writable; choose another --config path")
        }
        return dir
    }

    /// Writes the file atomically with mode 0600 (it holds the credential).
    public func save(path: String) throws {
        func q(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var text = """
            # Outpost push client configuration, written by `outpost enroll`. Keep it private (mode 0600):
            # the credential lets this machine add recovery points to the relay and read its own.
            relay = \(q(relay))
            machine = \(q(machine))
            credential = \(q(credential))

            """
        if let fingerprint { text += "# SHA-256 of the relay's certificate, pinned at enrollment.\nfingerprint = \(q(fingerprint))\n" }
        if let certificate { text += "certificate = \"\"\"\n\(certificate.trimmingCharacters(in: .whitespacesAndNewlines))\n\"\"\"\n" }
        let dir = try Self.prepareDirectory(for: path)
        do { try DurableFile.write(Array(text.utf8), to: path, mode: 0o600) } catch {
            throw ClientError(.config, "cannot write the client configuration (\(error.description)); check the permissions and free space of \(dir)")
        }
    }
}

/// The push client's name for its errors (one type for every layer: `OutpostError`).
public typealias ClientError = OutpostError
