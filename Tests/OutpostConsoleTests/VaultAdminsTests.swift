import Foundation
import OutpostCore
import OutpostObjects
import Synchronization
import Testing

@testable import OutpostConsole

/// The vault console's administrators (issue 13): kept in the vault's object store so that every node over one
/// bucket has the same ones; sessions in each node's memory. Two `VaultAdmins` over one store are two nodes.
@Suite struct VaultAdminsTests {
    final class Clock: Sendable {
        let now = Mutex(Date(timeIntervalSince1970: 1_750_000_000))
        func advance(_ s: TimeInterval) { now.withLock { $0 = $0.addingTimeInterval(s) } }
        var read: @Sendable () -> Date { { self.now.withLock { $0 } } }
    }

    static let password = "correct horse battery"

    @Test func administratorsAreAddedOnceWithAPasswordOf12OrMore() throws {
        let a = VaultAdmins(objects: MemoryObjectStore())
        try a.add("alice", password: Self.password)
        try a.add("bob", password: nil)
        #expect(try #require(throws: OutpostError.self) { try a.add("alice", password: Self.password) }.code == .taken)
        let short = try #require(throws: OutpostError.self) { try a.add("carol", password: "tiny") }
        #expect(short.code == .invalid && short.message.contains("at least 12"), "\(short.message)")
        #expect(try #require(throws: OutpostError.self) { try a.add("../x", password: Self.password) }.code == .invalid)
        #expect(try a.list().map(\.name) == ["alice", "bob"])
        #expect(try a.list().map(\.hasPassword) == [true, false])
        #expect(try #require(throws: OutpostError.self) { try a.remove("carol") }.code == .notFound)
    }

    @Test func aPasswordOpensASessionOnAnyNodeAndOnlyTheRightOne() throws {
        let store = MemoryObjectStore()
        let nodeA = VaultAdmins(objects: store), nodeB = VaultAdmins(objects: store)
        try nodeA.add("alice", password: Self.password)
        try nodeA.add("bob", password: nil)
        #expect(try nodeB.login("alice", password: "wrong password!") == nil)
        #expect(try nodeB.login("nobody", password: Self.password) == nil)
        #expect(try nodeB.login("bob", password: "") == nil, "a link-only administrator has no password to guess")
        let s = try #require(try nodeB.login("alice", password: Self.password))
        #expect(try nodeB.session(token: s.token)?.csrf == s.csrf)
        #expect(try nodeA.session(token: s.token) == nil, "sessions are kept by the node that opened them")
        try nodeB.logout(token: s.token)
        #expect(try nodeB.session(token: s.token) == nil)
    }

    @Test func aLoginLinkWorksOnceWhicheverNodeItIsOpenedOnAndExpires() throws {
        let store = MemoryObjectStore()
        let clock = Clock()
        let nodeA = VaultAdmins(objects: store, clock: clock.read), nodeB = VaultAdmins(objects: store, clock: clock.read)
        try nodeA.add("bob", password: nil)
        let token = try nodeA.loginLink(for: "bob")
        #expect(try nodeB.redeem(link: token)?.admin == "bob")
        #expect(try nodeA.redeem(link: token) == nil)
        #expect(try nodeB.redeem(link: token) == nil)
        let late = try nodeA.loginLink(for: "bob")
        clock.advance(VaultAdmins.linkLifetime + 1)
        #expect(try nodeB.redeem(link: late) == nil)
        // Making a link deletes the expired ones.
        _ = try nodeA.loginLink(for: "bob")
        #expect(try store.list(prefix: VaultAdmins.linkPrefix).count == 1)
        #expect(throws: OutpostError.self) { try nodeA.loginLink(for: "nobody") }
    }

    @Test func removingAnAdministratorEndsItsSessionsOnEveryNodeAndAddingItAgainDoesNotReviveThem() throws {
        let store = MemoryObjectStore()
        let clock = Clock()
        let nodeA = VaultAdmins(objects: store, clock: clock.read), nodeB = VaultAdmins(objects: store, clock: clock.read)
        try nodeA.add("alice", password: Self.password)
        let s = try #require(try nodeB.login("alice", password: Self.password))
        try nodeA.remove("alice")
        try nodeA.add("alice", password: Self.password)
        clock.advance(VaultAdmins.recheck + 1)
        #expect(try nodeB.session(token: s.token) == nil)
    }

    @Test func aSessionEndsWhenIdleOrOld() throws {
        let clock = Clock()
        let a = VaultAdmins(objects: MemoryObjectStore(), clock: clock.read)
        try a.add("alice", password: Self.password)
        let idle = try #require(try a.login("alice", password: Self.password))
        clock.advance(VaultAdmins.idleTimeout + 1)
        #expect(try a.session(token: idle.token) == nil)
        let old = try #require(try a.login("alice", password: Self.password))
        for _ in 0..<Int(VaultAdmins.maxAge / VaultAdmins.idleTimeout) + 1 {
            clock.advance(VaultAdmins.idleTimeout - 60)
            _ = try a.session(token: old.token)
        }
        #expect(try a.session(token: old.token) == nil)
    }
}
