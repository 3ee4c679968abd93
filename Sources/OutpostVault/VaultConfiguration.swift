import Foundation
import OutpostCore
import OutpostObjects

#if canImport(Glibc)
    import Glibc
#endif

/// Storage replication, as in Azure: GRS keeps a second, independent copy set; LRS one.
public enum Replication: String, Codable, Sendable { case grs, lrs }

/// The vault's settings and identity: `DATA/vault.json`.
public struct VaultConfiguration: Codable, Sendable, Equatable {
    public var format = "outpost-vault"
    public var version = 1
    public var id: String
    public var name: String
    public var url: String
    public var replication: Replication
    /// Where GRS keeps its second copy set.
    public var secondary: String?
    public var immutable = false
    /// Once locked, immutability cannot be turned off.
    public var locked = false
    /// Days a removed relay's container and deleted objects are kept before purging (at least 14).
    public var softDeleteDays = 14
    public var maxRelays = 50

    public init(id: String, name: String, url: String, replication: Replication, secondary: String?) {
        self.id = id; self.name = name; self.url = url; self.replication = replication; self.secondary = secondary
    }
}

/// The vault's name for its errors (one type for every layer: `OutpostError`).
public typealias VaultError = OutpostError

/// The vault's data directory: vault.json, registry.json (relays and issued credentials), tls/, objects/.
public struct VaultDataDirectory: Sendable {
    public let root: String
    public var settingsPath: String { root + "/vault.json" }
    public var registryPath: String { root + "/registry.json" }
    public var certificatePath: String { root + "/tls/cert.pem" }
    public var keyPath: String { root + "/tls/key.pem" }
    public var objectsPath: String { root + "/objects" }

    public init(_ root: String) {
        self.root = DirectoryPath.normalized(root)
    }

    public func settings() throws -> VaultConfiguration {
        guard let data = FileManager.default.contents(atPath: settingsPath) else {
            throw VaultError(
                .notAVault,
                "\(root) is not a vault data directory; create one with `outpost vault init --data \(root) --name NAME --url https://HOST:PORT`")
        }
        do { return try JSONDecoder().decode(VaultConfiguration.self, from: data) } catch {
            throw VaultError(.notAVault, "\(settingsPath) is damaged: \(error)")
        }
    }

    public func save(_ settings: VaultConfiguration) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(Array(try e.encode(settings)), to: settingsPath)
    }

    /// The object store per the settings: one copy set, or primary + secondary for GRS.
    public func objectStore(_ s: VaultConfiguration) throws -> any ObjectStore {
        let primary = try FileObjectStore(root: objectsPath)
        guard s.replication == .grs else { return primary }
        let secondary = try FileObjectStore(root: s.secondary ?? (root + "/secondary"))
        return ReplicatedObjectStore(primary: primary, secondary: secondary)
    }

    /// True when any relay's container holds an object (replication can no longer change).
    public func holdsBackupItems(_ s: VaultConfiguration) throws -> Bool {
        !(try objectStore(s).list(prefix: "containers/").isEmpty)
    }
}

func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
    do { try DurableFile.write(bytes, to: path, mode: mode) } catch {
        throw VaultError(
            .invalid,
            "\(error.description)\(error.isDiskFull ? ": free space on the vault's disk" : "; check the permissions of the vault's data directory")")
    }
}
