import Foundation
import OutpostCore

/// Where the vault keeps objects. Semantics every implementation must have (checked by the conformance suite
/// in the tests, run against each implementation):
/// - `putIfAbsent` stores the bytes under `key` only when nothing is there, atomically: a reader sees either no
///   object or the whole object, never a part; it returns false (and changes nothing) when the key exists.
/// - `get` returns nil for a missing key; `get(range:)` clamps the range to the object.
/// - `list(prefix:)` returns every key that starts with `prefix`, sorted, with sizes.
/// - `delete` of a missing key is not an error.
/// Keys are `[A-Za-z0-9._/-]`, at most 512 bytes, no `..` component, not starting with `/`.
public protocol ObjectStore: Sendable {
    func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool
    func get(_ key: String) throws -> [UInt8]?
    func get(_ key: String, range: Range<Int>) throws -> [UInt8]?
    func list(prefix: String) throws -> [ObjectInfo]
    func delete(_ key: String) throws
}

public struct ObjectInfo: Sendable, Equatable, Codable {
    public var key: String
    public var size: Int
    public init(key: String, size: Int) { self.key = key; self.size = size }
}

/// The object stores' name for their errors (one type for every layer: `OutpostError`).
public typealias ObjectStoreError = OutpostError

public enum ObjectKey {
    public static func validate(_ key: String) throws {
        let ok =
            !key.isEmpty && key.utf8.count <= 512 && !key.hasPrefix("/")
            && key.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2f || c == 0x2d
            }
            && !key.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == ".." || $0 == "." || $0.isEmpty }
        if !ok {
            throw ObjectStoreError(
                .invalidKey, "\(key.debugDescription) is not a valid object key (letters, digits, . _ - /, no empty, . or .. parts)")
        }
    }
}
