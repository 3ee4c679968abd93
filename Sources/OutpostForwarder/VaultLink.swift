import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import OutpostCore
import OutpostCrypto
import OutpostTLS

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's registration with a vault: `DATA/vault/link.json` (0600), written by `outpost relay register`.
public struct VaultLink: Codable, Sendable {
    public var url: String
    public var vaultID: String
    public var vaultName: String
    public var relayID: String
    public var credential: String
    public var fingerprint: String
    public var certificate: String
    public var registeredAt: Date

    public static func paths(_ data: String) -> (dir: String, link: String, keyFile: String, masterKey: String) {
        let dir = data + "/vault"
        return (dir, dir + "/link.json", dir + "/keyfile.json", dir + "/master.key")
    }

    public static func load(data: String) throws -> VaultLink {
        guard let bytes = FileManager.default.contents(atPath: paths(data).link) else {
            throw ForwarderError(
                .notRegistered,
                "this relay is not registered with a vault: run `outpost relay register --data \(data) --vault-credentials FILE --passphrase-file FILE` first"
            )
        }
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        do { return try d.decode(VaultLink.self, from: bytes) } catch {
            throw ForwarderError(.notRegistered, "\(paths(data).link) is damaged (\(error)); register again")
        }
    }

    func save(data: String) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        try writePrivate(Array(try e.encode(self)), to: Self.paths(data).link)
    }
}

/// The forwarder's name for its errors (one type for every layer: `OutpostError`).
public typealias ForwarderError = OutpostError

func writePrivate(_ bytes: [UInt8], to path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    do { try DurableFile.write(bytes, to: path, mode: 0o600) } catch {
        throw ForwarderError(
            error.isDiskFull ? .staging : .config,
            "\(error.description): \(error.isDiskFull ? "free space on the relay's disk" : "check the permissions of \(dir)")")
    }
}
