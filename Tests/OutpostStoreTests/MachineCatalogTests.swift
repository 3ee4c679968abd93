import Foundation
import OutpostCore
import OutpostStore
import Testing

/// Enrollment tokens and machine names in the relay's catalog.
@Suite struct MachineCatalogTests {
    /// A token past its expiry is refused (an injected clock: `add-machine --valid-hours` no longer takes 0).
    @Test func anExpiredTokenIsRefused() throws {
        let s = Scratch()
        let catalog = MachineCatalog(store: try makeStore(s))
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        try catalog.addMachine("late", token: "t-late", expiresAt: now.addingTimeInterval(3600), now: now)
        let outcome = try catalog.enroll(token: "t-late", credential: "c", now: now.addingTimeInterval(3601))
        guard case .failure(.expired) = outcome else { Issue.record("expected expired, got \(outcome)"); return }
        let fresh = try catalog.enroll(token: "t-late", credential: "c", now: now.addingTimeInterval(3599))
        guard case .success("late") = fresh else { Issue.record("expected success, got \(fresh)"); return }
    }

    /// The catalog itself refuses names the CLI refuses, and a second machine with an enrolled name.
    @Test func namesAreCheckedAndUnique() throws {
        let s = Scratch()
        let catalog = MachineCatalog(store: try makeStore(s))
        for bad in [".", "..", "-rf", "", "a/b", "x\u{1b}[2J"] {
            #expect(throws: StoreError.self) { try catalog.addMachine(bad, token: "t", expiresAt: Date().addingTimeInterval(60)) }
        }
        try catalog.addMachine("web1", token: "t1", expiresAt: Date().addingTimeInterval(60))
        _ = try catalog.enroll(token: "t1", credential: "c1")
        let e = #expect(throws: StoreError.self) { try catalog.addMachine("web1", token: "t2", expiresAt: Date().addingTimeInterval(60)) }
        #expect(e?.code == .taken && e?.exitCode.rawValue == 15)
    }
}
