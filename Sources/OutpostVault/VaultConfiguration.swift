import Foundation
import OutpostCore
import OutpostObjects
import OutpostS3

#if canImport(Glibc)
    import Glibc
#endif

/// Storage replication, as in Azure: GRS keeps a second, independent copy set; LRS one.
public enum Replication: String, Codable, Sendable { case grs, lrs }

/// Where the vault keeps its objects: files under the data directory (the default) or an S3 bucket.
public enum VaultStorage: String, Codable, Sendable { case filesystem, s3 }

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
    /// Absent (vault.json written before S3 storage) means filesystem.
    public var storage: VaultStorage?
    /// The bucket with `storage` s3, and the second one GRS writes to (a second endpoint in production).
    public var s3: S3Location?
    public var secondaryS3: S3Location?

    public init(id: String, name: String, url: String, replication: Replication, secondary: String?) {
        self.id = id; self.name = name; self.url = url; self.replication = replication; self.secondary = secondary
    }
}

/// The vault's name for its errors (one type for every layer: `OutpostError`).
public typealias VaultError = OutpostError

/// The vault's data directory: vault.json, registry.json (relays and issued credentials; filesystem storage),
/// tls/, objects/.
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

    /// The object store per the settings: one copy set, or primary + secondary for GRS. Opening an S3 store
    /// sends nothing (`prepareStorage` checks the service); its credentials are read now.
    public func objectStore(_ s: VaultConfiguration) throws -> any ObjectStore {
        let stores = try s3Stores(s)
        if let primary = stores.first {
            guard s.replication == .grs else { return primary }
            return ReplicatedObjectStore(primary: primary, secondary: stores[1])
        }
        let primary = try FileObjectStore(root: objectsPath)
        guard s.replication == .grs else { return primary }
        let secondary = try FileObjectStore(root: s.secondary ?? (root + "/secondary"))
        return ReplicatedObjectStore(primary: primary, secondary: secondary)
    }

    /// Makes the storage ready (`vault init`): the directories, or, on S3, each bucket, created when missing. On S3
    /// this is the check that the endpoint answers and takes the credentials, before anything else is written.
    public func prepareStorage(_ s: VaultConfiguration) throws {
        let stores = try s3Stores(s)
        if stores.isEmpty { _ = try objectStore(s) }
        for store in stores { try store.ensureBucket() }
    }

    /// The S3 stores of an S3 vault, primary first (and the secondary with GRS); none for a filesystem vault.
    private func s3Stores(_ s: VaultConfiguration) throws -> [S3ObjectStore] {
        guard s.storage == .s3 else { return [] }
        guard let primary = s.s3 else {
            throw VaultError(.notAVault, "\(settingsPath) says storage s3 but has no s3 bucket; it is damaged: restore it or create the vault again")
        }
        guard s.replication == .grs else { return [try S3ObjectStore(location: primary)] }
        guard let secondary = s.secondaryS3 else {
            throw VaultError(
                .config,
                "\(settingsPath): GRS on S3 needs a second bucket (secondaryS3); create the vault with --secondary-s3-endpoint and --secondary-s3-bucket"
            )
        }
        return [try S3ObjectStore(location: primary), try S3ObjectStore(location: secondary)]
    }

    /// The registry per the settings: registry.json on filesystem storage; on S3, the log in the bucket that
    /// every node over it shares (`RegistryLog`, docs/vault.md §2.5), with this directory's registry.json (from
    /// before the log) imported when the log is empty. `objects`: the store `objectStore(_:)` opened, else one is
    /// opened here.
    public func registry(_ s: VaultConfiguration, objects: (any ObjectStore)? = nil) throws -> VaultRegistry {
        guard s.storage == .s3 else { return try VaultRegistry(path: registryPath) }
        return VaultRegistry(objects: try objects ?? objectStore(s), legacyFile: registryPath)
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
