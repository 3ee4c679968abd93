import Foundation
import OutpostObjects
import Testing

/// The ObjectStore contract, run against every implementation.
@Suite struct ObjectStoreConformanceTests {
    static func makeStores() throws -> [(String, any ObjectStore, () -> Void)] {
        let base = NSTemporaryDirectory() + "/outpost-objects-\(UUID().uuidString.prefix(8))"
        let fs = try FileObjectStore(root: base + "/fs")
        let grs = ReplicatedObjectStore(primary: try FileObjectStore(root: base + "/p"), secondary: try FileObjectStore(root: base + "/s"))
        let cleanup: () -> Void = { _ = try? FileManager.default.removeItem(atPath: base + "/fs") }
        return [("memory", MemoryObjectStore(), {}), ("file", fs, cleanup), ("grs", grs, { _ = try? FileManager.default.removeItem(atPath: base) })]
    }

    @Test func putIfAbsentGetListDelete() throws {
        for (name, store, cleanup) in try Self.makeStores() {
            defer { cleanup() }
            #expect(try store.get("a/b") == nil, "\(name)")
            #expect(try store.putIfAbsent("a/b", [1, 2, 3]), "\(name)")
            #expect(try !store.putIfAbsent("a/b", [9]), "\(name): a second put changes nothing")
            #expect(try store.get("a/b") == [1, 2, 3], "\(name)")
            #expect(try store.get("a/b", range: 1..<10) == [2, 3], "\(name): ranges clamp")
            _ = try store.putIfAbsent("a/c", [4])
            _ = try store.putIfAbsent("z", [])
            #expect(try store.list(prefix: "a/").map(\.key) == ["a/b", "a/c"], "\(name)")
            #expect(try store.list(prefix: "").map(\.size) == [3, 1, 0], "\(name)")
            try store.delete("a/b")
            try store.delete("a/b")
            #expect(try store.get("a/b") == nil, "\(name)")
        }
    }

    @Test(arguments: ["../x", "/abs", "a//b", "a/./b", "sp ace", ""])
    func unsafeKeysAreRefused(_ key: String) throws {
        for (name, store, cleanup) in try Self.makeStores() {
            defer { cleanup() }
            #expect(throws: ObjectStoreError.self, "\(name)") { try store.putIfAbsent(key, [1]) }
        }
    }

    @Test func grsReadsFromTheSecondaryWhenThePrimaryLostAnObject() throws {
        let primary = MemoryObjectStore(), secondary = MemoryObjectStore()
        let grs = ReplicatedObjectStore(primary: primary, secondary: secondary)
        _ = try grs.putIfAbsent("k", [7])
        #expect(try secondary.get("k") == [7], "every write reaches the second location")
        try primary.delete("k")
        #expect(try grs.get("k") == [7])
    }
}
