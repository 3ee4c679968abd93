import Foundation
import OutpostCore
import OutpostObjects
import OutpostVault
import Synchronization
import Testing

/// The registry of an S3 vault as a log in the object store (docs/vault.md §2.5): two nodes over one store see
/// one registry, a one-time transition succeeds once however many race for it, and nothing is overwritten.
/// Run on a file store (the same put-if-absent contract as S3's conditional PUT; the binary's tests run it on
/// Ceph RGW).
@Suite struct RegistryLogTests {
    /// A file store in a scratch directory, removed by `cleanup`.
    func store() throws -> (FileObjectStore, root: String) {
        let root = NSTemporaryDirectory() + "/outpost-registry-log-\(UUID().uuidString.prefix(8))"
        return (try FileObjectStore(root: root), root)
    }

    func logKeys(_ store: any ObjectStore) throws -> [String] { try store.list(prefix: "meta/registry/").map(\.key) }

    @Test func twoNodesOverOneStoreServeOneRegistry() throws {
        let (objects, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let a = VaultRegistry(objects: objects, maxAge: .zero), b = VaultRegistry(objects: objects, maxAge: .zero)
        try a.issue(secret: "s", expiresAt: Date().addingTimeInterval(3600))
        // Issued through A, spent through B; the relay then authenticates through A at once.
        guard case .registered(let relay, let credential) = try b.register(secret: "s", relayName: "east", maxRelays: 5) else {
            Issue.record("B must see the file A issued"); return
        }
        #expect(try a.authenticate(relayID: relay.id, secret: credential)?.name == "east")
        guard case .refused(let why) = try a.register(secret: "s", relayName: "west", maxRelays: 5) else {
            Issue.record("the file is spent for A too"); return
        }
        #expect(why.contains("already used"))
        // Name uniqueness and the relay limit hold across nodes.
        try b.issue(secret: "t", expiresAt: Date().addingTimeInterval(3600))
        guard case .nameTaken = try a.register(secret: "t", relayName: "east", maxRelays: 5) else { Issue.record("east is taken"); return }
        guard case .refused(let limit) = try a.register(secret: "t", relayName: "west", maxRelays: 1) else { Issue.record("limit"); return }
        #expect(limit.contains("limit (1)"))
        // A removal through B ends the credential on A (whose copy is never trusted here: maxAge 0).
        #expect(try a.authenticate(relayID: relay.id, secret: credential) != nil)
        _ = try b.remove("east")
        #expect(try a.authenticate(relayID: relay.id, secret: credential) == nil)
        #expect(a.relays.map(\.removedAt).allSatisfy { $0 != nil })
        // Every change is one event, numbered without a gap; nothing else is written.
        #expect(try logKeys(objects) == (1...4).map { "meta/registry/000000000\($0).json" })
    }

    @Test func aNodeTrustsItsCopyOnlyForMaxAge() throws {
        let (objects, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cached = VaultRegistry(objects: objects, maxAge: .seconds(3600)), other = VaultRegistry(objects: objects, maxAge: .zero)
        try other.issue(secret: "s", expiresAt: Date().addingTimeInterval(3600))
        guard case .registered(let relay, let credential) = try other.register(secret: "s", relayName: "east", maxRelays: 5) else {
            Issue.record("east"); return
        }
        // Unknown to the cached node: it reads the log at once.
        #expect(try cached.authenticate(relayID: relay.id, secret: credential) != nil)
        _ = try other.remove("east")
        // Known and fresh: the copy answers (the documented window); any change through this node reads the log.
        #expect(try cached.authenticate(relayID: relay.id, secret: credential) != nil)
        #expect(throws: VaultError.self) { try cached.remove("east") }
        #expect(try cached.authenticate(relayID: relay.id, secret: credential) == nil, "the change read the removal")
    }

    @Test func nodesRacingForOneCredentialsFileRegisterOneRelay() throws {
        let (objects, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let nodes = [VaultRegistry(objects: objects), VaultRegistry(objects: objects)]
        try nodes[0].issue(secret: "once", expiresAt: Date().addingTimeInterval(3600))
        _ = try nodes[1].allRelays()  // both nodes have read the issued file before the race
        let outcomes = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            let text: String
            switch Result(catching: { try nodes[i % 2].register(secret: "once", relayName: "relay-\(i)", maxRelays: 50) }) {
            case .success(.registered): text = "registered"
            case .success(.refused(let why)): text = why.contains("already used") ? "used" : why
            case .success(let other): text = "\(other)"
            case .failure(let error): text = "\(error)"
            }
            outcomes.withLock { $0.append(text) }
        }
        let all = outcomes.withLock { $0 }
        #expect(all.filter { $0 == "registered" }.count == 1, "\(all)")
        #expect(all.filter { $0 == "used" }.count == 15, "\(all)")
        #expect(try VaultRegistry(objects: objects).allRelays().count == 1)
        #expect(try logKeys(objects).count == 2, "one issue, one registration")
    }

    @Test func concurrentChangesThroughTwoNodesAreAllKept() throws {
        let (objects, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let nodes = [VaultRegistry(objects: objects), VaultRegistry(objects: objects)]
        DispatchQueue.concurrentPerform(iterations: 40) { i in
            try! nodes[i % 2].issue(secret: "s\(i)", expiresAt: Date().addingTimeInterval(3600))
        }
        DispatchQueue.concurrentPerform(iterations: 40) { i in
            guard case .registered = try! nodes[(i + 1) % 2].register(secret: "s\(i)", relayName: "r\(i)", maxRelays: 50) else {
                Issue.record("s\(i) must register"); return
            }
        }
        let keys = try logKeys(objects)
        #expect(keys == (1...80).map { String(format: "meta/registry/%010d.json", $0) })
        let fresh = VaultRegistry(objects: objects)
        #expect(Set(try fresh.allRelays().map(\.name)) == Set((0..<40).map { "r\($0)" }))
    }

    @Test func grsWritesTheLogToBothCopySetsAndMendsAMissingCopy() throws {
        let primary = MemoryObjectStore(), secondary = MemoryObjectStore()
        let objects = ReplicatedObjectStore(primary: primary, secondary: secondary)
        let a = VaultRegistry(objects: objects)
        try a.issue(secret: "s", expiresAt: Date().addingTimeInterval(3600))
        try a.issue(secret: "t", expiresAt: Date().addingTimeInterval(3600))
        #expect(try logKeys(secondary) == logKeys(primary) && logKeys(primary).count == 2)
        // A secondary that missed an event gets it from the next node that reads it.
        try secondary.delete("meta/registry/0000000002.json")
        _ = try VaultRegistry(objects: objects).allRelays()
        #expect(try secondary.get("meta/registry/0000000002.json") == primary.get("meta/registry/0000000002.json"))
    }

    @Test func aRegistryFromBeforeTheLogIsImportedOnce() throws {
        let (objects, root) = try store()
        let dir = root + "-data"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let old = try VaultRegistry(path: dir + "/registry.json")
        try old.issue(secret: "s", expiresAt: Date().addingTimeInterval(3600))
        guard case .registered(let relay, let credential) = try old.register(secret: "s", relayName: "east", maxRelays: 5) else {
            Issue.record("east"); return
        }
        try old.issue(secret: "later", expiresAt: Date().addingTimeInterval(3600))
        let a = VaultRegistry(objects: objects, legacyFile: dir + "/registry.json")
        #expect(try a.authenticate(relayID: relay.id, secret: credential)?.name == "east")
        #expect(!FileManager.default.fileExists(atPath: dir + "/registry.json"))
        #expect(FileManager.default.fileExists(atPath: dir + "/registry.json.imported"))
        let b = VaultRegistry(objects: objects, legacyFile: dir + "/registry.json")
        guard case .registered = try b.register(secret: "later", relayName: "west", maxRelays: 5) else { Issue.record("later"); return }
        #expect(try logKeys(objects).count == 2, "the import and the registration")
    }

    @Test func aDamagedOrNewerEventIsRefusedWithItsKey() throws {
        let damaged = MemoryObjectStore()
        _ = try damaged.putIfAbsent("meta/registry/0000000001.json", Array("{not json".utf8))
        let e = #expect(throws: VaultError.self) { try VaultRegistry(objects: damaged).allRelays() }
        #expect(e?.code == .notAVault && e?.message.contains("meta/registry/0000000001.json is damaged") == true, "\(e?.message ?? "")")
        #expect(throws: VaultError.self) { try VaultRegistry(objects: damaged).issue(secret: "s", expiresAt: Date()) }
        let newer = MemoryObjectStore()
        _ = try newer.putIfAbsent(
            "meta/registry/0000000001.json", Array(#"{"format":"outpost-vault-registry-event","version":2,"kind":"merge"}"#.utf8))
        let n = #expect(throws: VaultError.self) { try VaultRegistry(objects: newer).allRelays() }
        #expect(n?.code == .unsupportedVersion && n?.message.contains("upgrade outpost") == true)
    }
}
