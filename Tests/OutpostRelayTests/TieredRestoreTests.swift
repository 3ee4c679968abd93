import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostStore
import Synchronization
import Testing

@testable import OutpostRelay

#if canImport(Glibc)
    import Glibc
#endif

/// A vault in memory: the blobs it serves (as `Forwarder.fetch` does: nil for one it lacks), and how often it
/// was asked.
final class FakeVault: Sendable {
    let blobs = Mutex<[BlobID: PreparedBlob]>([:])
    let asked = Atomic<Int>(0)

    func put(_ list: [PreparedBlob]) { blobs.withLock { for b in list { $0[b.id] = b } } }

    @Sendable func fetch(_ id: BlobID) async throws -> PreparedBlob? {
        asked.add(1, ordering: .relaxed)
        return blobs.withLock { $0[id] }
    }

    var askedCount: Int { asked.load(ordering: .relaxed) }
}

/// `TestRelay` with a tier 2 (a `FakeVault`), or none, and the retention tables (`pruned_points`).
final class VaultedRelay: Sendable {
    let root = NSTemporaryDirectory() + "/outpost-tiers-\(UUID().uuidString.prefix(8))"
    let relay: Relay
    let server: RelayServer
    let bearer: String
    let vault: FakeVault
    let m1: PushSimulator

    init(withVault: Bool = true) throws {
        StoreIndex.registerMigrations(MachineCatalog.migrations + RetentionSettings.migrations)
        let store = try Store.initialize(at: root + "/store")
        let vault = FakeVault()
        self.vault = vault
        var tier2: (@Sendable (BlobID) async throws -> PreparedBlob?)?
        if withVault { tier2 = { try await vault.fetch($0) } }
        relay = Relay(store: store, configuration: RelayConfiguration(), logger: Logger(label: "tiers-test"), tier2: tier2)
        server = RelayServer(relay: relay, identity: nil, host: "127.0.0.1", port: 0, logger: Logger(label: "tiers-test"))
        try relay.catalog.addMachine("m1", token: "token-m1", expiresAt: Date().addingTimeInterval(3600))
        let secret = RelayAPI.randomSecret()
        guard case .success = try relay.catalog.enroll(token: "token-m1", credential: secret) else {
            throw StoreError(.invalid, "the test machine was not enrolled")
        }
        bearer = "Bearer " + RelayAPI.credential(machine: "m1", secret: secret)
        m1 = try PushSimulator(relay: relay, name: "m1")
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await Application(router: server.buildRouter()).test(.router, body)
    }

    /// Records points as forwarded in the forwarder's `forwarding` table (made here: this test target does not
    /// register the forwarder's migrations).
    func markForwarded(_ ids: [BlobID]) throws {
        try relay.store.index.write("marking points forwarded") { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS forwarding (point_id BLOB PRIMARY KEY, state TEXT NOT NULL, reason TEXT,
                        bytes INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL)
                    """)
            for id in ids {
                try db.execute(sql: "INSERT INTO forwarding (point_id, state, updated_at) VALUES (?, 'forwarded', 0)", arguments: [id.data])
            }
        }
    }
}

/// Incompressible bytes, the same for the same seed.
func sample(_ seed: UInt64, _ count: Int = 6_000) -> [UInt8] {
    var state = seed &* 0x9e37_79b9_7f4a_7c15 &+ 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

@Suite struct TieredRestoreTests {
    /// relay (not forwarded), both (forwarded), vault (pruned after forwarding) — and a relay without a vault
    /// lists its catalog alone, all relay.
    @Test func pointsSayWhereTheyAre() async throws {
        let t = try VaultedRelay()
        let p1 = try t.m1.push(new: ["a": [sample(1)]]).id
        let p2 = try t.m1.push(new: ["b": [sample(2)]]).id
        let p3 = try t.m1.push(new: ["c": [sample(3)]]).id
        try t.markForwarded([p1, p3])
        let pruner = RelayPruner(store: t.relay.store, file: RetentionPolicy(relayLast: 1))
        let plan = try pruner.apply(try pruner.plan(forwarding: [p1: "forwarded", p2: "pending", p3: "forwarded"]))
        #expect(plan.leaving.map(\.point.id) == [p1.hex], "only the forwarded old point leaves")

        let listed = try t.relay.tieredPoints(name: "m1")
        #expect(listed.map(\.info.id) == [p1, p2, p3])
        #expect(listed.map(\.tier) == [.vault, .relay, .both])
        try await t.test { client in
            let r = try await client.execute(uri: "/v1/points", method: .get, headers: [.authorization: t.bearer])
            #expect(r.status == .ok)
            let entries = try RelayAPI.decoder().decode([RelayAPI.PointEntry].self, from: Data(r.body.readableBytesView))
            #expect(entries.map(\.id) == [p1.hex, p2.hex, p3.hex])
            #expect(entries.map(\.tier) == [.vault, .relay, .both])
        }
        let alone = try PointTiers(store: t.relay.store, vault: false).list(machine: "m1")
        #expect(alone.map(\.info.id) == [p2, p3] && alone.allSatisfy { $0.tier == .relay })
        #expect(try PointTiers(store: t.relay.store, vault: true).list(machine: "nobody").isEmpty)
    }

    /// One point by its id, and a page of a machine's points newest first, say what the whole list says, and
    /// read only the records they show: another point's damaged record does not stop them (the console's pages
    /// of a point and of a machine ask these, so that 10,000 points on the relay cost them nothing).
    @Test func onePointOrOnePageSaysWhereItIsAndReadsNoOtherPoint() async throws {
        let t = try VaultedRelay()
        var ids: [BlobID] = []
        for i in 1...5 { ids.append(try t.m1.push(new: ["f\(i)": [sample(UInt64(20 + i))]]).id) }
        try t.markForwarded([ids[0], ids[1], ids[3]])
        let pruner = RelayPruner(store: t.relay.store, file: RetentionPolicy(relayLast: 2))
        let states = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, [0, 1, 3].contains($0) ? "forwarded" : "pending") })
        _ = try pruner.apply(try pruner.plan(forwarding: states))
        let tiers = PointTiers(store: t.relay.store, vault: true)
        let all = try tiers.list(machine: "m1")
        #expect(all.map(\.info.id) == ids)
        #expect(all.map(\.tier) == [.vault, .vault, .relay, .both, .relay])

        for p in all {
            let one = try #require(try tiers.point(p.info.id))
            #expect(one.info == p.info && one.tier == p.tier)
        }
        #expect(try tiers.point(BlobID.hash([1, 2, 3])) == nil)
        #expect(try PointTiers(store: t.relay.store, vault: false).point(ids[0]) == nil, "without a vault a pruned point is gone")

        let pages = try [0, 2, 4].map { try tiers.newest(machine: "m1", limit: 2, offset: $0) }
        #expect(pages.map(\.total) == [5, 5, 5])
        #expect(pages.flatMap(\.points).map(\.info.id) == ids.reversed())
        #expect(pages.flatMap(\.points).map(\.tier) == all.reversed().map(\.tier))
        let alone = try PointTiers(store: t.relay.store, vault: false).newest(machine: "m1", limit: 10, offset: 0)
        #expect(alone.total == 3 && alone.points.map(\.info.id) == [ids[4], ids[3], ids[2]] && alone.points.allSatisfy { $0.tier == .relay })
        #expect(try tiers.newest(machine: "nobody", limit: 10, offset: 0).total == 0)

        // The newest point's record damaged: the whole list fails, the others' pages and look-ups do not.
        try t.relay.store.index.write("damaging a record") { db in
            try db.execute(sql: "UPDATE recovery_points SET record = x'7b' WHERE id = ?", arguments: [ids[4].data])
        }
        #expect(throws: (any Error).self) { try tiers.list(machine: "m1") }
        #expect(try tiers.point(ids[3])?.tier == .both)
        #expect(try tiers.newest(machine: "m1", limit: 2, offset: 2).points.map(\.info.id) == [ids[2], ids[1]])
    }

    /// A relay serving without a vault lists every point as relay, even with a ledger and pruned points.
    @Test func aRelayWithoutAVaultSaysRelay() async throws {
        let t = try VaultedRelay(withVault: false)
        let p1 = try t.m1.push(new: ["a": [sample(4)]]).id
        try t.markForwarded([p1])
        #expect(try t.relay.tieredPoints(name: "m1").map(\.tier) == [.relay])
    }

}

/// One blob request, with the tier header (or not): the status, what the answer says of the vault, the frames.
func blobRequest(
    _ client: any TestClientProtocol, _ t: VaultedRelay, _ ids: [BlobID], tier: String?
) async throws -> (status: HTTPResponse.Status, vaultBytes: String?, frames: [PreparedBlob], message: String?) {
    var headers: HTTPFields = [.authorization: t.bearer]
    if let tier { headers[HTTPField.Name(RelayAPI.tierHeader)!] = tier }
    let r = try await client.execute(uri: "/v1/blobs", method: .post, headers: headers, body: ByteBuffer(bytes: WireFormat.encodeIDs(ids)))
    let frames = r.status == .ok ? try r.body.withUnsafeReadableBytes { try WireFormat.decodeFrames($0) } : []
    return (r.status, r.headers[HTTPField.Name(RelayAPI.vaultBytesHeader)!], frames, r.failure?.message)
}

extension TieredRestoreTests {
    @Test func theTierHeaderChoosesWhereBlobsComeFrom() async throws {
        let t = try VaultedRelay()
        let kept = PushSimulator.blob(sample(10))
        _ = try t.m1.push(new: ["kept": [sample(10)]])
        // A blob the machine holds that the relay lost; the vault has it, and (forwarded) everything else.
        let lost = PushSimulator.blob(sample(11))
        _ = try t.relay.catalog.addOwned(by: t.m1.machine, [lost.id])
        t.vault.put([kept, lost])
        try await t.test { client in
            let plain = try await blobRequest(client, t, [kept.id], tier: nil)
            #expect(plain.status == .ok && plain.vaultBytes == "0" && plain.frames.map(\.id) == [kept.id])
            #expect(t.vault.askedCount == 0, "auto serves what the relay holds intact from the relay")

            let auto = try await blobRequest(client, t, [kept.id, lost.id], tier: "auto")
            #expect(auto.status == .ok && auto.frames.map(\.id) == [kept.id, lost.id])
            #expect(auto.vaultBytes == String(lost.stored.count), "only the lost blob came from the vault")

            let asked = t.vault.askedCount
            let relayOnly = try await blobRequest(client, t, [lost.id], tier: "relay")
            #expect(relayOnly.status == .notFound && relayOnly.message?.contains("--tier auto") == true, "\(relayOnly.message ?? "")")
            #expect(t.vault.askedCount == asked, "tier relay never asks the vault")
            let relayHeld = try await blobRequest(client, t, [kept.id], tier: "RELAY")
            #expect(relayHeld.status == .ok && relayHeld.vaultBytes == "0")

            let vault = try await blobRequest(client, t, [kept.id], tier: "vault")
            #expect(vault.status == .ok && vault.vaultBytes == String(kept.stored.count) && vault.frames.map(\.id) == [kept.id])
            #expect(t.vault.askedCount == asked + 1, "tier vault asks the vault for a blob the relay holds")

            let unknown = PushSimulator.blob(sample(12))
            _ = try t.relay.catalog.addOwned(by: t.m1.machine, [unknown.id])
            let absent = try await blobRequest(client, t, [unknown.id], tier: "vault")
            #expect(absent.status == .notFound && absent.message?.contains("is not in the vault") == true)

            let bad = try await blobRequest(client, t, [kept.id], tier: "sideways")
            #expect(bad.status == .badRequest && bad.message?.contains("auto, relay or vault") == true)
        }
    }

    @Test func aRelayWithoutAVaultHasNoVaultTier() async throws {
        let t = try VaultedRelay(withVault: false)
        let kept = PushSimulator.blob(sample(13))
        _ = try t.m1.push(new: ["kept": [sample(13)]])
        try await t.test { client in
            let vault = try await blobRequest(client, t, [kept.id], tier: "vault")
            #expect(vault.status == .notFound && vault.message?.contains("no vault") == true)
            let auto = try await blobRequest(client, t, [kept.id], tier: nil)
            #expect(auto.status == .ok && auto.vaultBytes == "0")
        }
    }

    /// Older clients ignore `tier`; this one reads an unknown tier (a later relay's) as absent.
    @Test func aPointEntrysTierIsOptional() throws {
        let point = RecoveryPoint(
            machine: "m1", hostname: "h", paths: ["/"], startedAt: Date(timeIntervalSince1970: 0), finishedAt: Date(timeIntervalSince1970: 1),
            rootTree: PushSimulator.blob([1]).id, parent: nil, summary: BackupSummary())
        let plain = String(decoding: try RelayAPI.encoder().encode(RelayAPI.PointEntry(id: "ab", point: point)), as: UTF8.self)
        #expect(!plain.contains("tier"))
        let tiered = try RelayAPI.encoder().encode(RelayAPI.PointEntry(id: "ab", point: point, tier: .both))
        #expect(try RelayAPI.decoder().decode(RelayAPI.PointEntry.self, from: tiered).tier == .both)
        let later = plain.replacingOccurrences(of: "\"id\":\"ab\"", with: "\"id\":\"ab\",\"tier\":\"glacier\"")
        #expect(later.contains("glacier"))
        #expect(try RelayAPI.decoder().decode(RelayAPI.PointEntry.self, from: Data(later.utf8)).tier == nil)
    }
}

/// The relay host's repository (`outpost relay restore`): where each blob is read, per tier, with the bytes
/// counted per tier, and every blob checked against its id.
@Suite struct RelayHostRepositoryTests {
    final class Fixture: Sendable {
        let root = NSTemporaryDirectory() + "/outpost-hostrepo-\(UUID().uuidString.prefix(8))"
        let store: Store
        let vault = FakeVault()
        let inStore: BlobID
        let onlyInVault: BlobID

        init() throws {
            store = try Store.initialize(at: root + "/store")
            inStore = try store.saveBlob(kind: .data, plaintext: sample(20))
            try store.flush()
            let other = PushSimulator.blob(sample(21))
            onlyInVault = other.id
            vault.put([PushSimulator.blob(sample(20)), other])
        }

        deinit { try? FileManager.default.removeItem(atPath: root) }

        func repository(_ tier: RelayAPI.FetchTier, vault: Bool = true) throws -> RelayHostRepository {
            let v = self.vault
            var fetch: (@Sendable (BlobID) async throws -> PreparedBlob?)?
            if vault { fetch = { try await v.fetch($0) } }
            return try RelayHostRepository(store: store, tier: tier, vault: fetch)
        }

        var storedInStore: Int64 { Int64((try? store.index.location(of: inStore))?.storedLength ?? -1) }
        var storedInVault: Int64 { Int64(vault.blobs.withLock { $0[onlyInVault]!.stored.count }) }
    }

    @Test func autoReadsTheRelayFirstAndTheVaultForTheRest() async throws {
        let f = try Fixture()
        let r = try f.repository(.auto)
        let got = try await r.loadMany([f.inStore, f.onlyInVault, f.inStore])
        #expect(got == [sample(20), sample(21), sample(20)])
        #expect(r.relayBytes.load(ordering: .relaxed) == 2 * f.storedInStore)
        #expect(r.vaultBytes.load(ordering: .relaxed) == f.storedInVault)
        #expect(f.vault.askedCount == 1)
    }

    @Test func relayNeverAsksTheVault() async throws {
        let f = try Fixture()
        let r = try f.repository(.relay)
        #expect(try await r.load(f.inStore, kind: .data) == sample(20))
        let e = await #expect(throws: OutpostError.self) { try await r.load(f.onlyInVault, kind: .data) }
        #expect(e?.code == .notFound && e?.message.contains("--tier relay does not ask the vault") == true, "\(e?.message ?? "")")
        #expect(f.vault.askedCount == 0 && r.vaultBytes.load(ordering: .relaxed) == 0)
    }

    @Test func vaultReadsEveryBlobFromTheVault() async throws {
        let f = try Fixture()
        let r = try f.repository(.vault)
        #expect(try await r.loadMany([f.inStore, f.onlyInVault]) == [sample(20), sample(21)])
        #expect(r.relayBytes.load(ordering: .relaxed) == 0 && f.vault.askedCount == 2)
        #expect(throws: OutpostError.self) { try f.repository(.vault, vault: false) }
        // auto on a relay with no vault: what the store lacks is named, with the fix.
        let e = await #expect(throws: OutpostError.self) { try await f.repository(.auto, vault: false).load(f.onlyInVault, kind: .data) }
        #expect(e?.message.contains("registered with no vault") == true)
    }

    /// A blob damaged in the relay's pack comes from the vault with auto, and fails with relay.
    @Test func aDamagedBlobOnTheRelayComesFromTheVault() async throws {
        let f = try Fixture()
        let loc = try #require(try f.store.index.location(of: f.inStore))
        let fd = open(f.store.layout.packPath(loc.packName), O_RDWR)
        #expect(fd >= 0)
        var byte: UInt8 = 0
        let at = off_t(loc.offset + loc.storedLength / 2)
        #expect(pread(fd, &byte, 1, at) == 1)
        byte ^= 0xff
        #expect(pwrite(fd, &byte, 1, at) == 1)
        close(fd)
        let auto = try f.repository(.auto)
        #expect(try await auto.load(f.inStore, kind: .data) == sample(20))
        #expect(auto.relayBytes.load(ordering: .relaxed) == 0 && auto.vaultBytes.load(ordering: .relaxed) > 0)
        await #expect(throws: OutpostError.self) { try await f.repository(.relay).load(f.inStore, kind: .data) }
    }

    /// What the vault answers is checked against the id too.
    @Test func aVaultBlobThatDoesNotMatchItsIdFails() async throws {
        let f = try Fixture()
        let wrong = PushSimulator.blob(sample(22))
        f.vault.put([PreparedBlob(id: f.onlyInVault, kind: .data, compression: .none, stored: wrong.stored, rawLength: wrong.rawLength)])
        await #expect(throws: (any Error).self) { try await f.repository(.auto).load(f.onlyInVault, kind: .data) }
    }
}
