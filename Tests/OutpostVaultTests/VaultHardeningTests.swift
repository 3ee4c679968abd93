import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostForwarder
import OutpostStore
import Testing

@testable import OutpostVault

/// Issue 8: integers from requests and files, and relay names.
@Suite struct VaultHardeningTests {
    func scratch() -> String {
        let p = NSTemporaryDirectory() + "/outpost-vault-hard-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    @Test func rangeHeadersNeverOverflow() {
        // The request that killed `vault serve`: LAST + 1 overflowed.
        #expect(VaultObjectRoutes.parseRange("bytes=9223372036854775800-9223372036854775807") == nil)
        #expect(VaultObjectRoutes.parseRange("bytes=9223372036854775800-9223372036854775806") == 9223372036854775800..<9223372036854775807)
        #expect(VaultObjectRoutes.parseRange("bytes=0-9") == 0..<10)
        #expect(VaultObjectRoutes.parseRange("bytes=99999999999999999999-99999999999999999999") == nil)
        #expect(VaultObjectRoutes.parseRange("bytes=+1-2") == nil)
        #expect(VaultObjectRoutes.parseRange("bytes= 1-2") == nil)
        #expect(VaultObjectRoutes.parseRange("bytes=5-4") == nil)
        #expect(VaultObjectRoutes.parseRange("bytes=-5") == nil)
        #expect(VaultObjectRoutes.parseRange("bytes=0-\(VaultServer.maxObjectBytes)") == nil, "longer than any object")
    }

    @Test func aPackIndexThatPointsBeyondIntIsDamageNotATrap() throws {
        let (_, master) = try KeyFile.create(passphrase: "correct horse battery staple!", parameters: .fastForTests)
        let sealer = ObjectSealer(master: master)
        let key = "k/ab/abcdef"
        for (offset, length) in [(UInt64.max, UInt32(10)), (UInt64(Int.max), UInt32.max), (UInt64(Int.max - 3), UInt32(8))] {
            var index = BinaryWriter(capacity: 64)
            index.u16(1)
            index.u32(1)
            index.id(BlobID.hash([1]))
            index.u8(1)
            index.u64(offset)
            index.u32(length)
            let sealed = try sealer.seal(index.bytes, name: key + "#index", kind: VaultPack.indexKind)
            let e = #expect(throws: ForwarderError.self) { try VaultPack.readIndex(sealed: sealed, key: key, packSize: 1 << 20, sealer: sealer) }
            #expect(e?.code == .tampered)
        }
        // A size from the vault's listing that no pack can have.
        for size in [Int.min, -1, 0, 11] {
            #expect(throws: ForwarderError.self) {
                try VaultPack.indexRange(trailer: [255, 255, 255, 255] + VaultPack.magic, packSize: size, key: key)
            }
        }
        #expect(VaultPack.entryRange(VaultLocation(pack: key, offset: Int.max, length: 2, kind: 1)) == nil)
        #expect(VaultPack.entryRange(VaultLocation(pack: key, offset: -1, length: 2, kind: 1)) == nil)
        #expect(VaultPack.entryRange(VaultLocation(pack: key, offset: 4, length: 2, kind: 1), packSize: 5) == nil)
        #expect(VaultPack.entryRange(VaultLocation(pack: key, offset: 4, length: 2, kind: 1), packSize: 6) == 4..<6)
    }

    @Test(arguments: ["", "-rf", ".hidden", "a b", "tab\there", "esc\u{1b}[31mred", "new\nline", "naïve", String(repeating: "x", count: 65)])
    func badRelayNamesAreRefusedAndTheFileStaysUnused(_ name: String) throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let registry = try VaultRegistry(path: dir + "/registry.json")
        try registry.issue(secret: "s", expiresAt: Date().addingTimeInterval(3600))
        #expect(RelayName.problem(name) != nil)
        guard case .invalidName(let why) = try registry.register(secret: "s", relayName: name, maxRelays: 5) else {
            Issue.record("\(name.debugDescription) must be refused"); return
        }
        #expect(why.contains("letters, digits"), "states the rule: \(why)")
        #expect(!why.contains("\u{1b}") && !why.contains("\n") && !why.contains("\t"), "the name is escaped in the message")
        guard case .registered = try registry.register(secret: "s", relayName: "good-name_1.example", maxRelays: 5) else {
            Issue.record("the credentials file is still usable"); return
        }
    }

    @Test func relayNamesAreUniqueAndRemovalAndRecoveryAreUnambiguous() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let registry = try VaultRegistry(path: dir + "/registry.json")
        for i in 0..<4 { try registry.issue(secret: "s\(i)", expiresAt: Date().addingTimeInterval(3600)) }
        guard case .registered(let first, _) = try registry.register(secret: "s0", relayName: "east", maxRelays: 5) else {
            Issue.record("east"); return
        }
        guard case .nameTaken(let why) = try registry.register(secret: "s1", relayName: "east", maxRelays: 5) else {
            Issue.record("a second east must be refused"); return
        }
        #expect(why.contains(first.id), "names the relay that has the name")
        guard case .nameTaken = try registry.register(secret: "s1", relayName: first.id, maxRelays: 5) else {
            Issue.record("another relay's id is not a name"); return
        }
        // Once east is removed, its name is free; remove and --recover by name then mean the active one...
        _ = try registry.remove("east")
        guard case .registered(let second, _) = try registry.register(secret: "s1", relayName: "east", maxRelays: 5) else {
            Issue.record("reuse"); return
        }
        // ...but --recover can also name a removed relay, so the name is ambiguous there: the ids are listed.
        let ambiguous = #expect(throws: VaultError.self) {
            try registry.issue(secret: "s2", expiresAt: Date().addingTimeInterval(3600), recoverRelay: "east")
        }
        #expect(ambiguous?.message.contains(first.id) == true && ambiguous?.message.contains(second.id) == true)
        try registry.issue(secret: "s2", expiresAt: Date().addingTimeInterval(3600), recoverRelay: second.id)
        #expect(try registry.remove("east").id == second.id)
    }

    @Test func anOldRegistryWithDuplicateAndHostileNamesIsResolvedOnlyById() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let relays = """
            {"issued": [], "relays": [
              {"id": "aaaa", "name": "dup", "credentialHash": "x", "registeredAt": "2025-01-01T00:00:00Z"},
              {"id": "bbbb", "name": "dup", "credentialHash": "y", "registeredAt": "2025-01-02T00:00:00Z"},
              {"id": "cccc", "name": "evil\\u001b]0;owned\\u0007", "credentialHash": "z", "registeredAt": "2025-01-03T00:00:00Z"}]}
            """
        try relays.write(toFile: dir + "/registry.json", atomically: true, encoding: .utf8)
        let registry = try VaultRegistry(path: dir + "/registry.json")
        let e = #expect(throws: VaultError.self) { try registry.remove("dup") }
        #expect(e?.message.contains("aaaa") == true && e?.message.contains("bbbb") == true, "\(e?.message ?? "")")
        #expect(registry.relays.allSatisfy { $0.removedAt == nil }, "nothing removed by a guess")
        #expect(try registry.remove("bbbb").name == "dup")
        let printed = RelayName.printable(registry.relays[2].name)
        #expect(printed == "evil\\e]0;owned\\x07")
    }

    @Test func aRecoveryFileShowsItsTargetWithoutBeingSpent() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let registry = try VaultRegistry(path: dir + "/registry.json")
        try registry.issue(secret: "new", expiresAt: Date().addingTimeInterval(3600))
        guard case .registered(let relay, _) = try registry.register(secret: "new", relayName: "west", maxRelays: 5) else {
            Issue.record("west"); return
        }
        try registry.issue(secret: "rec", expiresAt: Date().addingTimeInterval(3600), recoverRelay: "west")
        #expect(try registry.recoveryTarget(secret: "rec").get().id == relay.id)
        #expect(try registry.recoveryTarget(secret: "rec").get().id == relay.id, "not spent by looking")
        #expect((try? registry.recoveryTarget(secret: "new").get()) == nil, "a used file")
        #expect((try? registry.recoveryTarget(secret: "nope").get()) == nil, "an unknown file")
        try registry.issue(secret: "fresh", expiresAt: Date().addingTimeInterval(3600))
        #expect((try? registry.recoveryTarget(secret: "fresh").get()) == nil, "a file for a new relay")
    }
}
