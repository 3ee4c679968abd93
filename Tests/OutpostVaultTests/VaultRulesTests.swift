import Foundation
import Logging
import OutpostCore
import OutpostForwarder
import OutpostObjects
import OutpostVault
import Testing

@Suite struct VaultRulesTests {
    func scratch() -> String {
        let p = NSTemporaryDirectory() + "/outpost-vault-rules-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    @Test func aVaultAcceptsAtMostItsRelayLimit() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let registry = try VaultRegistry(path: dir + "/registry.json")
        for i in 0..<3 { try registry.issue(secret: "secret-\(i)", expiresAt: Date().addingTimeInterval(3600)) }
        for i in 0..<2 {
            guard case .registered = try registry.register(secret: "secret-\(i)", relayName: "r\(i)", maxRelays: 2) else {
                Issue.record("relay \(i) should register"); return
            }
        }
        guard case .refused(let why) = try registry.register(secret: "secret-2", relayName: "r2", maxRelays: 2) else {
            Issue.record("a third relay must be refused"); return
        }
        #expect(why.contains("limit (2)"))
        // The registry survives a restart, and a removed relay frees its place.
        let reloaded = try VaultRegistry(path: dir + "/registry.json")
        #expect(reloaded.relays.count == 2)
        _ = try reloaded.remove("r0")
        guard case .registered = try reloaded.register(secret: "secret-2", relayName: "r2", maxRelays: 2) else {
            Issue.record("a place freed by a removal can be taken"); return
        }
    }

    @Test func softDeletedDataIsPurgedOnlyAfterItsPeriodAndNeverWhenImmutable() throws {
        let root = scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = VaultDataDirectory(root)
        var settings = VaultConfiguration(id: "v", name: "v", url: "https://127.0.0.1:1", replication: .lrs, secondary: nil)
        try dir.save(settings)
        try FileManager.default.createDirectory(atPath: root + "/tls", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir.certificatePath, contents: Data("x".utf8))
        FileManager.default.createFile(atPath: dir.keyPath, contents: Data("x".utf8))
        let store = try dir.objectStore(settings)
        let deletedAt = Date(timeIntervalSince1970: 1_700_000_000)
        _ = try store.putIfAbsent("trash/\(Int(deletedAt.timeIntervalSince1970))/containers/r1/c/ab/abcd", [1, 2, 3])
        let server = try VaultServer(directory: dir, host: "127.0.0.1", port: 0, logger: Logger(label: "t"))
        #expect(try server.purge(now: deletedAt.addingTimeInterval(13 * 86400)) == 0, "kept for 14 days")
        settings.immutable = true
        try dir.save(settings)
        let immutable = try VaultServer(directory: dir, host: "127.0.0.1", port: 0, logger: Logger(label: "t"))
        #expect(try immutable.purge(now: deletedAt.addingTimeInterval(20 * 86400)) == 0, "an immutable vault purges nothing")
        settings.immutable = false
        try dir.save(settings)
        #expect(try server.purge(now: deletedAt.addingTimeInterval(15 * 86400)) == 1)
        #expect(try store.list(prefix: "trash/").isEmpty)
    }

    @Test func forwardingRefusesToStartWithoutFivePercentFreeStaging() throws {
        #expect(throws: Never.self) { try Forwarder.checkStaging(free: 60, protected: 1000, at: "/data") }
        let e = #expect(throws: ForwarderError.self) { try Forwarder.checkStaging(free: 40 << 20, protected: 1000 << 20, at: "/data") }
        #expect(e?.code == .staging)
        #expect(e?.message.contains("/data") == true)
        #expect(e?.message.contains("50 MiB") == true, "says how much is needed")
    }
}
