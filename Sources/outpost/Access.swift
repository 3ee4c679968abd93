import ArgumentParser
import Foundation
import Logging
import OutpostClient
import OutpostCore
import OutpostHTTP
import OutpostStore

/// Where a command reads and writes recovery points: a local store (`--store`), or the relay this machine
/// enrolled with (the client configuration).
struct TargetOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("A local store directory, instead of the relay this machine enrolled with.", valueName: "dir"))
    var store: String?
    @Option(
        name: .long,
        help: ArgumentHelp("The client configuration written by `outpost enroll` (default: ~/.config/outpost/client.toml).", valueName: "file"))
    var config: String?
}

enum Access {
    case local(Store)
    case remote(RemoteRepository)

    /// `tier`: where a relay reads blobs from (`restore --tier`); a local store has one tier.
    static func open(_ options: TargetOptions, purpose: String, tier: RelayAPI.FetchTier = .auto) async throws -> Access {
        if let store = options.store {
            return .local(try Store.open(at: store, purpose: purpose))
        }
        let config = try ClientConfiguration.load(path: options.config ?? ClientConfiguration.defaultPath)
        let client = try RelayClient(configuration: config, notify: { printErr($0) })
        do { return .remote(try await RemoteRepository(client: client, tier: tier)) } catch { await client.close(); throw error }
    }

    var repository: any BlobRepository {
        switch self {
        case .local(let s): LocalRepository(store: s)
        case .remote(let r): r
        }
    }

    /// The machine a remote session acts as (nil for a local store).
    var remoteMachine: String? {
        if case .remote(let r) = self { return r.machine }
        return nil
    }

    func points(machine: String?) async throws -> [RecoveryPointInfo] {
        switch self {
        case .local(let s): try s.index.points(machine: machine)
        case .remote(let r): try await r.points()
        }
    }

    /// Every point listed, with where it is (nil for a local store, and from a relay before tiered restore).
    func listedPoints(machine: String?) async throws -> [(info: RecoveryPointInfo, tier: RelayAPI.PointTier?)] {
        switch self {
        case .local(let s): try s.index.points(machine: machine).map { (info: $0, tier: RelayAPI.PointTier?.none) }
        case .remote(let r): try await r.listedPoints()
        }
    }

    func resolve(_ ref: String, machine: String?) async throws -> RecoveryPointInfo {
        let where_: String
        switch self {
        case .local(let s): where_ = s.layout.root
        case .remote(let r): where_ = "the relay (machine \(r.machine))"
        }
        let m = machine
        if case .local(let s) = self, m == nil, ref == "latest" {
            let names = try s.index.machines()
            if names.count > 1 {
                throw ValidationError("`latest` needs --machine: the store holds recovery points of \(names.joined(separator: ", "))")
            }
        }
        guard case .remote = self else { return try Store.resolve(ref, in: try await points(machine: m), machine: m, where: where_) }
        // Resolved among every point listed, those only in the vault included: the relay reads what it still holds
        // of them and fetches the rest from the vault (`--tier relay` then fails what it lacks).
        let listed = try await listedPoints(machine: nil)
        return try Store.resolve(ref, in: listed.map { $0.info }, machine: nil, where: where_)
    }

    func close() async {
        if case .remote(let r) = self { await r.client.close() }
    }
}

/// Runs `body` with an open access and closes it whatever happens.
func withAccess<T>(
    _ options: TargetOptions, purpose: String, tier: RelayAPI.FetchTier = .auto, _ body: (Access) async throws -> T
) async throws -> T {
    let access = try await Access.open(options, purpose: purpose, tier: tier)
    do {
        let result = try await body(access)
        await access.close()
        return result
    } catch {
        await access.close()
        throw error
    }
}
