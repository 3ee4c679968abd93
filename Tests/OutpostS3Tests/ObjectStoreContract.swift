import Foundation
import OutpostCephTestSupport
import OutpostCore
import OutpostObjects
import Testing

/// The `ObjectStore` contract (ObjectStore.swift), as checks any implementation runs: the memory double and the
/// file store in `ObjectStoreContractTests`, the S3 store on a real Ceph RGW in `S3CephTests`. Each check expects
/// an empty store.
enum ObjectStoreContract {
    static func putIfAbsentGetListDelete(_ store: any ObjectStore) throws {
        #expect(try store.get("a/b") == nil, "a missing key reads as nil")
        #expect(try store.putIfAbsent("a/b", [1, 2, 3]))
        #expect(try !store.putIfAbsent("a/b", [9]), "a second put changes nothing")
        #expect(try store.get("a/b") == [1, 2, 3])
        _ = try store.putIfAbsent("a/c", [4])
        _ = try store.putIfAbsent("z", [])
        #expect(try store.get("z") == [], "an empty object is an object")
        #expect(try store.list(prefix: "a/").map(\.key) == ["a/b", "a/c"])
        #expect(try store.list(prefix: "").map(\.size) == [3, 1, 0])
        #expect(try store.list(prefix: "nothing/") == [])
        try store.delete("a/b")
        try store.delete("a/b")
        try store.delete("never/there")
        #expect(try store.get("a/b") == nil)
        #expect(try store.putIfAbsent("a/b", [5]), "a deleted key can be written again")
        #expect(try store.get("a/b") == [5])
    }

    static func rangesClamp(_ store: any ObjectStore) throws {
        let bytes = (0..<100).map { UInt8($0) }
        _ = try store.putIfAbsent("r", bytes)
        _ = try store.putIfAbsent("empty", [])
        #expect(try store.get("r", range: 10..<20) == Array(bytes[10..<20]))
        #expect(try store.get("r", range: 0..<1) == [0])
        #expect(try store.get("r", range: 95..<200) == Array(bytes[95..<100]), "the end clamps to the object")
        #expect(try store.get("r", range: -5..<3) == [0, 1, 2], "the start clamps to 0")
        #expect(try store.get("r", range: 100..<110) == [], "a range past the end is empty")
        #expect(try store.get("r", range: 500..<501) == [])
        #expect(try store.get("r", range: 7..<7) == [], "an empty range of an object is empty")
        #expect(try store.get("empty", range: 0..<10) == [])
        #expect(try store.get("missing", range: 0..<10) == nil, "a missing key reads as nil, whatever the range")
        #expect(try store.get("missing", range: 3..<3) == nil)
    }

    /// `count` keys under `p/`, others beside it; stores with pages smaller than `count` must follow them.
    static func listsEveryPage(_ store: any ObjectStore, count: Int = 11) throws {
        let keys = (0..<count).map { "p/\(String(format: "%03d", $0))" }
        for k in keys.reversed() { _ = try store.putIfAbsent(k, Array(k.utf8)) }
        _ = try store.putIfAbsent("p2/x", [1])
        _ = try store.putIfAbsent("o/x", [1])
        let listed = try store.list(prefix: "p/")
        #expect(listed.map(\.key) == keys, "every key, sorted, none of p2/")
        #expect(listed.allSatisfy { $0.size == 5 })
        #expect(try store.list(prefix: "p").count == count + 1)
        #expect(try store.list(prefix: "").count == count + 2)
    }

    static func largeObjects(_ store: any ObjectStore, size: Int) throws {
        var g = SystemRandomNumberGenerator()
        let big = (0..<size).map { _ in UInt8.random(in: 0...255, using: &g) }
        #expect(try store.putIfAbsent("big/one", big))
        #expect(try !store.putIfAbsent("big/one", Array(big.prefix(10))), "a large object is put-if-absent too")
        #expect(try store.get("big/one") == big)
        let mid = size / 2
        #expect(try store.get("big/one", range: (mid - 1000)..<(mid + 1000)) == Array(big[(mid - 1000)..<(mid + 1000)]))
        #expect(try store.get("big/one", range: (size - 10)..<(size + 10)) == Array(big.suffix(10)))
        #expect(try store.list(prefix: "big/") == [ObjectInfo(key: "big/one", size: size)])
    }

    /// `writers` threads put different bytes under one key at once: exactly one wins, and its bytes are there.
    static func concurrentWritersOneWins(_ store: any ObjectStore, writers: Int = 8) throws {
        for round in 0..<3 {
            let key = "race/\(round)"
            let results = Results(writers)
            DispatchQueue.concurrentPerform(iterations: writers) { i in
                results.set(i, Result { try store.putIfAbsent(key, [UInt8(i), UInt8(round)] + Array(repeating: UInt8(i), count: 1000)) })
            }
            let won = try results.all().enumerated().filter { $0.element }.map(\.offset)
            #expect(won.count == 1, "round \(round): winners \(won)")
            if let w = won.first { #expect(try store.get(key)?.prefix(2) == [UInt8(w), UInt8(round)], "the winner's bytes stay") }
        }
    }

    static let unsafeKeys = ["../x", "/abs", "a//b", "a/./b", "sp ace", "", "a/..", "ü"]

    static func refusesUnsafeKeys(_ store: any ObjectStore) {
        for key in unsafeKeys {
            #expect(throws: OutpostError.self, "\(key.debugDescription)") { try store.putIfAbsent(key, [1]) }
            #expect(throws: OutpostError.self, "\(key.debugDescription)") { try store.get(key) }
            #expect(throws: OutpostError.self, "\(key.debugDescription)") { try store.delete(key) }
        }
    }

    /// Results of concurrent writers, collected under a lock.
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [Result<Bool, any Error>?]
        init(_ n: Int) { values = Array(repeating: nil, count: n) }
        func set(_ i: Int, _ r: Result<Bool, any Error>) { lock.withLock { values[i] = r } }
        func all() throws -> [Bool] { try lock.withLock { try values.map { try $0!.get() } } }
    }
}

/// The contract on the in-memory double, the file store and the replicated (GRS) pair of file stores.
@Suite struct ObjectStoreContractTests {
    static func make(_ kind: String) throws -> (any ObjectStore, () -> Void) {
        let base = NSTemporaryDirectory() + "/outpost-contract-\(UUID().uuidString.prefix(8))"
        let cleanup = { _ = try? FileManager.default.removeItem(atPath: base) }
        switch kind {
        case "memory": return (MemoryObjectStore(), cleanup)
        case "file": return (try FileObjectStore(root: base), cleanup)
        default:
            return (
                ReplicatedObjectStore(primary: try FileObjectStore(root: base + "/p"), secondary: try FileObjectStore(root: base + "/s")), cleanup
            )
        }
    }

    static let kinds = ["memory", "file", "grs"]

    @Test(arguments: kinds) func putIfAbsentGetListDelete(_ kind: String) throws {
        let (store, cleanup) = try Self.make(kind)
        defer { cleanup() }
        try ObjectStoreContract.putIfAbsentGetListDelete(store)
    }

    @Test(arguments: kinds) func rangesClamp(_ kind: String) throws {
        let (store, cleanup) = try Self.make(kind)
        defer { cleanup() }
        try ObjectStoreContract.rangesClamp(store)
    }

    @Test(arguments: kinds) func listsEveryPage(_ kind: String) throws {
        let (store, cleanup) = try Self.make(kind)
        defer { cleanup() }
        try ObjectStoreContract.listsEveryPage(store)
    }

    @Test(arguments: kinds) func largeObjects(_ kind: String) throws {
        let (store, cleanup) = try Self.make(kind)
        defer { cleanup() }
        try ObjectStoreContract.largeObjects(store, size: 12 << 20)
    }

    @Test(arguments: kinds) func concurrentWritersOneWins(_ kind: String) throws {
        let (store, cleanup) = try Self.make(kind)
        defer { cleanup() }
        try ObjectStoreContract.concurrentWritersOneWins(store)
    }

    @Test(arguments: kinds) func refusesUnsafeKeys(_ kind: String) throws {
        let (store, cleanup) = try Self.make(kind)
        defer { cleanup() }
        ObjectStoreContract.refusesUnsafeKeys(store)
    }
}
