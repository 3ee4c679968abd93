import Foundation
import OutpostCore
import OutpostRelay
import OutpostStore
import Testing

/// Enrollment tokens and machine names in the relay's catalog.
@Suite struct MachineCatalogTests {
    /// A fresh store with the catalog's tables, removed when `body` returns.
    func withCatalog(_ body: (MachineCatalog, Store) throws -> Void) throws {
        StoreIndex.registerMigrations(MachineCatalog.migrations)
        let path = NSTemporaryDirectory() + "/outpost-catalog-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try Store.initialize(at: path)
        try body(MachineCatalog(store: store), store)
    }

    /// A token past its expiry is refused (an injected clock: `add-machine --valid-hours` no longer takes 0).
    @Test func anExpiredTokenIsRefused() throws {
        try withCatalog { catalog, _ in
            let now = Date(timeIntervalSince1970: 1_800_000_000)
            try catalog.addMachine("late", token: "t-late", expiresAt: now.addingTimeInterval(3600), now: now)
            let outcome = try catalog.enroll(token: "t-late", credential: "c", now: now.addingTimeInterval(3601))
            guard case .failure(.expired) = outcome else { Issue.record("expected expired, got \(outcome)"); return }
            let fresh = try catalog.enroll(token: "t-late", credential: "c", now: now.addingTimeInterval(3599))
            guard case .success("late") = fresh else { Issue.record("expected success, got \(fresh)"); return }
        }
    }

    /// The catalog itself refuses names the CLI refuses, and a second machine with an enrolled name.
    @Test func namesAreCheckedAndUnique() throws {
        try withCatalog { catalog, _ in
            for bad in [".", "..", "-rf", "", "a/b", "x\u{1b}[2J"] {
                #expect(throws: StoreError.self) { try catalog.addMachine(bad, token: "t", expiresAt: Date().addingTimeInterval(60)) }
            }
            try catalog.addMachine("web1", token: "t1", expiresAt: Date().addingTimeInterval(60))
            _ = try catalog.enroll(token: "t1", credential: "c1")
            let e = #expect(throws: StoreError.self) { try catalog.addMachine("web1", token: "t2", expiresAt: Date().addingTimeInterval(60)) }
            #expect(e?.code == .taken && e?.exitCode.rawValue == 15)
        }
    }

    /// A point rebuilt from the vault gives its machine its blobs back (trees verified); an unknown name is
    /// passed over (`relay rebuild` before the machines are added again).
    @Test func aRebuiltPointsBlobsGoBackToItsMachine() throws {
        try withCatalog { catalog, _ in
            let blob = BlobID.hash(Array("blob".utf8)), tree = BlobID.hash(Array("tree".utf8))
            try catalog.addMachine("web1", token: "t1", expiresAt: Date().addingTimeInterval(60))
            try catalog.addOwned(byMachineNamed: "web1", [blob, tree], verifiedTrees: [tree])
            try catalog.addOwned(byMachineNamed: "nobody", [blob], verifiedTrees: [])
            let id = try #require(try catalog.machineID(named: "web1"))
            #expect(try catalog.owned(by: id, [blob, tree]) == [blob, tree])
            #expect(try catalog.owned(by: id, [blob, tree], verifiedOnly: true) == [tree])
            #expect(try catalog.machineID(named: "nobody") == nil)
        }
    }

    /// Ownership look-ups run as prepared statements over padded id lists: every list length gives the exact
    /// answer, and `addOwned` reports what was new.
    @Test func ownershipAnswersEveryListLength() throws {
        try withCatalog { catalog, _ in
            try catalog.addMachine("web1", token: "t1", expiresAt: Date().addingTimeInterval(60))
            let id = try #require(try catalog.machineID(named: "web1"))
            let ids = (0..<1_300).map { BlobID.hash(Array("blob \($0)".utf8)) }
            let owned = ids.enumerated().filter { $0.offset % 3 != 0 }.map(\.element)
            #expect(try catalog.addOwned(by: id, owned) == Set(owned))
            #expect(try catalog.addOwned(by: id, [owned[0], ids[0]]) == [ids[0]], "only the one not held before is new")
            let held = Set(owned + [ids[0]])
            for n in [0, 1, 2, 3, 5, 16, 17, 64, 65, 499, 500, 501, 1_000, 1_300] {
                let asked = Array(ids.reversed().prefix(n))
                #expect(try catalog.owned(by: id, asked) == Set(asked.filter { held.contains($0) }), "\(n) ids")
            }
        }
    }

    /// A credential checked once is remembered, but removing the machine (from another catalog over the same
    /// index, as `relay remove-machine` does from its own process) stops it at once.
    @Test func aRemovedMachinesRememberedCredentialStopsAtOnce() throws {
        try withCatalog { serving, store in
            try serving.addMachine("web1", token: "t1", expiresAt: Date().addingTimeInterval(60))
            _ = try serving.enroll(token: "t1", credential: "secret")
            let id = try #require(try serving.authenticate(machine: "web1", credential: "secret"))
            #expect(try serving.authenticate(machine: "web1", credential: "secret") == id, "from the cache")
            #expect(try serving.authenticate(machine: "web1", credential: "wrong") == nil)
            try MachineCatalog(store: store).removeMachine("web1")
            #expect(try serving.authenticate(machine: "web1", credential: "secret") == nil)
        }
    }

    /// Records of blobs no tier holds go once they are older than the grace; a young one (a push whose pack is
    /// not sealed yet) and one of a blob the store holds stay.
    @Test func recordsOfBlobsNoTierHoldsAreDroppedAfterTheGrace() throws {
        try withCatalog { catalog, store in
            try catalog.addMachine("web1", token: "t1", expiresAt: Date().addingTimeInterval(60))
            let id = try #require(try catalog.machineID(named: "web1"))
            let held = try store.saveBlob(kind: .data, plaintext: Array("kept".utf8))
            try store.flush()
            let gone = BlobID.hash(Array("gone".utf8)), young = BlobID.hash(Array("young".utf8))
            let now = Date()
            try catalog.addOwned(by: id, [held, gone], now: now.addingTimeInterval(-3 * 86400))
            try catalog.addOwned(by: id, [young], now: now)
            #expect(try catalog.forgetUnheld(now: now) == 1)
            #expect(try catalog.owned(by: id, [held, gone, young]) == [held, young])
        }
    }
}
