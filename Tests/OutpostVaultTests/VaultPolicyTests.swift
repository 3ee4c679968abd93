import Foundation
import OutpostCore
import OutpostObjects
import OutpostVault
import Testing

/// The vault's rules on S3 are the registry log's, shared by every node (docs/vault.md §2.5): a node applies what
/// another recorded, whatever its own vault.json says, and a lock cannot be undone through a node that missed it.
@Suite struct VaultPolicyTests {
    let settings = VaultConfiguration(id: "v", name: "vault", url: "https://127.0.0.1:1", replication: .lrs, secondary: nil)

    func twoNodes() -> (VaultRegistry, VaultRegistry) {
        let bucket = MemoryObjectStore()
        return (VaultRegistry(objects: bucket, maxAge: .zero), VaultRegistry(objects: bucket, maxAge: .zero))
    }

    @Test func aNodeAppliesWhatAnotherRecorded() throws {
        let (a, b) = twoNodes()
        #expect(b.policy(default: settings) == VaultPolicy(settings), "nothing recorded: vault.json's")
        _ = try a.setPolicy(.init(immutable: true, softDeleteDays: 30), default: settings)
        let seen = b.policy(default: settings)
        #expect(seen.immutable && seen.softDeleteDays == 30 && !seen.locked)
    }

    @Test func aLockRecordedThroughOneNodeHoldsOnTheOther() throws {
        let (a, b) = twoNodes()
        _ = try a.setPolicy(.init(lock: true), default: settings)
        let e = #expect(throws: OutpostError.self) { try b.setPolicy(.init(immutable: false), default: settings) }
        #expect(e?.code == .refused)
        #expect(b.policy(default: settings).immutable)
    }

    @Test func theRecordedRelayLimitHoldsOnEveryNode() throws {
        let (a, b) = twoNodes()
        _ = try a.setPolicy(.init(maxRelays: 1), default: settings)
        for n in 0..<2 { try a.issue(secret: "s\(n)", expiresAt: Date().addingTimeInterval(3600)) }
        guard case .registered = try b.register(secret: "s0", relayName: "one", maxRelays: 50) else {
            Issue.record("the first relay registers"); return
        }
        guard case .refused(let why) = try b.register(secret: "s1", relayName: "two", maxRelays: 50) else {
            Issue.record("B's own limit of 50 must not override the recorded 1"); return
        }
        #expect(why.contains("its limit (1)"))
    }

    @Test func aFilesystemVaultKeepsItsPolicyInVaultJSON() throws {
        let dir = NSTemporaryDirectory() + "/outpost-policy-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let registry = try VaultRegistry(path: dir + "/registry.json")
        #expect(!registry.sharesPolicy)
        #expect(throws: OutpostError.self) { try registry.setPolicy(.init(immutable: true), default: settings) }
        var locked = settings
        locked.immutable = true
        locked.locked = true
        #expect(registry.policy(default: locked) == VaultPolicy(locked))
    }

    /// A node whose vault.json was locked before the log held a policy stays locked, whatever another node
    /// records first from its own, unlocked, copy.
    @Test func aLocalLockIsNeverWeakenedByTheLog() throws {
        let (a, b) = twoNodes()
        var locked = settings
        locked.immutable = true
        locked.locked = true
        _ = try b.setPolicy(.init(maxRelays: 80), default: settings)
        let p = a.policy(default: locked)
        #expect(p.immutable && p.locked && p.maxRelays == 80)
        let e = #expect(throws: OutpostError.self) { try a.setPolicy(.init(immutable: false), default: locked) }
        #expect(e?.code == .refused)
    }
}
