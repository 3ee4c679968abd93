import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Reading blobs, trees and recovery points back from packs, verified against their ids.
extension Store {
    /// The plaintext of a blob, verified against its id.
    public func load(_ id: BlobID) throws -> [UInt8] {
        guard let loc = try index.location(of: id) else {
            throw notInStore(id)
        }
        return try load(id, at: loc)
    }

    /// Plaintexts of many blobs, in order, looked up in one index read (a restore batch).
    public func loadMany(_ ids: [BlobID]) throws -> [[UInt8]] {
        let locations = try index.locations(of: ids)
        return try ids.map { id in
            guard let loc = locations[id] else {
                throw notInStore(id)
            }
            return try load(id, at: loc)
        }
    }

    private func notInStore(_ id: BlobID) -> StoreError {
        StoreError(.notFound, "blob \(id.shortHex) is not in the store \(layout.root); run `outpost check` to see what is affected")
    }

    public func load(_ id: BlobID, at given: BlobLocation) throws -> [UInt8] {
        let (stored, loc) = try readStored(id, at: given)
        do {
            return try decompressors.with { d in
                try stored.withUnsafeBytes {
                    try PreparedBlob.open(
                        stored: $0, id: id, compression: loc.compression, rawLength: loc.rawLength,
                        decompressor: d, what: "blob \(id.shortHex) in pack \(loc.packName)")
                }
            }
        } catch let e as FormatError {
            throw StoreError(.corrupt, "\(e.message); run `outpost check --read-data` to list the damage")
        }
    }

    /// A blob as stored (compressed or not), for sending it on without recompressing; nil when absent.
    public func loadStored(_ id: BlobID) throws -> PreparedBlob? {
        guard let given = try index.location(of: id) else { return nil }
        let (stored, loc) = try readStored(id, at: given)
        return PreparedBlob(id: id, kind: loc.kind, compression: loc.compression, stored: stored, rawLength: loc.rawLength)
    }

    /// Many blobs as stored, in order, looked up in one index read; nil for the absent ones. A blob whose pack
    /// cannot be read throws (the caller may try elsewhere blob by blob).
    public func loadStoredMany(_ ids: [BlobID]) throws -> [PreparedBlob?] {
        try loadStoredMany(ids, at: try index.locations(of: ids))
    }

    /// The same, with locations the caller already read from the index (no second index read).
    public func loadStoredMany(_ ids: [BlobID], at locations: [BlobID: BlobLocation]) throws -> [PreparedBlob?] {
        try ids.map { id in
            guard let given = locations[id] else { return nil }
            let (stored, loc) = try readStored(id, at: given)
            return PreparedBlob(id: id, kind: loc.kind, compression: loc.compression, stored: stored, rawLength: loc.rawLength)
        }
    }

    /// The stored bytes of a blob and where they were read. A pack that vanished under the reader (an online gc
    /// moved the blob, committed the index, then deleted the pack) sends it to the index again, once: the blob's
    /// new location was committed before the old file went.
    func readStored(_ id: BlobID, at loc: BlobLocation) throws -> ([UInt8], BlobLocation) {
        let path = layout.packPath(loc.packName)
        do {
            return (try readers.read(path: path, offset: loc.offset, count: loc.storedLength), loc)
        } catch {
            guard access(path, F_OK) != 0, let moved = try index.location(of: id), moved.packName != loc.packName else { throw error }
            let stored = try readers.read(path: layout.packPath(moved.packName), offset: moved.offset, count: moved.storedLength)
            return (stored, moved)
        }
    }

    public func loadTree(_ id: BlobID) throws -> Tree {
        do { return try Tree.decode(try load(id), id: id) } catch let e as FormatError { throw StoreError(.corrupt, e.message) }
    }

    public func loadPoint(_ id: BlobID) throws -> RecoveryPoint {
        do { return try RecoveryPoint.decode(try load(id), what: "recovery point \(id.shortHex)") } catch let e as FormatError {
            throw StoreError(.corrupt, e.message)
        }
    }

    /// Finds a recovery point by `latest` or by a unique prefix (at least 4 hex digits) of its id.
    public func resolvePoint(_ ref: String, machine: String?) throws -> RecoveryPointInfo {
        let points = try index.points(machine: machine)
        return try Self.resolve(ref, in: points, machine: machine, where: layout.root)
    }

    public static func resolve(_ ref: String, in points: [RecoveryPointInfo], machine: String?, where place: String) throws -> RecoveryPointInfo {
        let scope = machine.map { " of machine \($0)" } ?? ""
        if ref == "latest" {
            guard let p = points.max(by: { $0.point.finishedAt < $1.point.finishedAt }) else {
                throw StoreError(.notFound, "there is no recovery point\(scope) in \(place); run a backup first, or check the machine name")
            }
            return p
        }
        let prefix = ref.lowercased()
        guard prefix.count >= 4, Hex.isHex(prefix) else {
            throw StoreError(
                .invalid, "\(ref.debugDescription) is not a recovery point id: give `latest` or at least 4 hex digits of an id from `outpost points`")
        }
        let matches = points.filter { $0.id.hex.hasPrefix(prefix) }
        if matches.count == 1 { return matches[0] }
        if matches.isEmpty {
            throw StoreError(.notFound, "no recovery point\(scope) has an id starting with \(prefix); list them with `outpost points`")
        }
        throw StoreError(
            .ambiguous, "\(prefix) names \(matches.count) recovery points (\(matches.map(\.id.shortHex).joined(separator: ", "))); give more digits")
    }
}
