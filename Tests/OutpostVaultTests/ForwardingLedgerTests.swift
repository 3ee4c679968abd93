import Foundation
import OutpostCore
import OutpostForwarder
import OutpostStore
import Testing

/// The forwarder's ledger in the store's index: which blobs the vault acknowledged, and where they are there.
@Suite struct ForwardingLedgerTests {
    /// A fresh store with the ledger's tables, removed when `body` returns.
    func withLedger(_ body: (ForwardingLedger) throws -> Void) throws {
        StoreIndex.registerMigrations(ForwardingLedger.migrations)
        let path = NSTemporaryDirectory() + "/outpost-ledger-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(ForwardingLedger(store: try Store.initialize(at: path)))
    }

    let a = BlobID.hash(Array("a".utf8)), b = BlobID.hash(Array("b".utf8)), c = BlobID.hash(Array("c".utf8))

    @Test func sentBlobsArePlacedAndForgottenOnlyWhenUnmarked() throws {
        try withLedger { ledger in
            let here = VaultLocation(pack: "k/ab/one", offset: 4, length: 100, kind: 1)
            try ledger.markSent([(a, here)])
            try ledger.markSentLegacy([b])
            #expect(try ledger.unsent([a, b, c]) == [c])
            #expect(try ledger.location(of: a) == ForwardingLedger.Placement(here))
            #expect(try ledger.location(of: b) == ForwardingLedger.Placement(nil), "a version 1 object has no pack")
            #expect(try ledger.location(of: c) == nil)
            let summary = try ledger.summary()
            #expect(summary.blobs == 2 && summary.packs == 1 && summary.legacyObjects == 1)
            try ledger.unmark([a])
            #expect(try ledger.unsent([a, b]) == [a])
        }
    }

    /// A rebuild records blobs it did not fetch itself at their first listed copy, without moving a blob the
    /// ledger already places; a forward (or a repair) moves it.
    @Test func keepExistingLeavesAPlacedBlobWhereItIs() throws {
        try withLedger { ledger in
            let first = VaultLocation(pack: "k/ab/one", offset: 4, length: 100, kind: 1)
            let second = VaultLocation(pack: "k/cd/two", offset: 4, length: 100, kind: 1)
            try ledger.markSent([(a, first)])
            try ledger.markSent([(a, second)], keepExisting: true)
            #expect(try ledger.location(of: a)?.location == first)
            try ledger.markSent([(a, second)])
            #expect(try ledger.location(of: a)?.location == second)
        }
    }
}
