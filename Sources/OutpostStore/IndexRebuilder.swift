import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Rebuilds the index from the packs alone: blobs from each pack's trailer (or, if the trailer is damaged,
/// its blob headers), recovery points from the `.point` blobs.
public struct IndexRebuilder {
    let store: Store

    public init(store: Store) { self.store = store }

    public struct Report: Sendable {
        public var packs = 0, blobs = 0, points = 0, salvagedPacks = 0
        public var problems: [String] = []
    }

    public func run() throws -> Report {
        var report = Report()
        var packs: [(name: String, size: Int, entries: [PackEntry])] = []
        var pointBlobs: [(PackEntry, String)] = []
        for name in try store.layout.packFilesOnDisk() {
            let path = store.layout.packPath(name)
            var result: (entries: [PackEntry], size: Int)
            do { result = try PackReader.entries(path: path, name: name) } catch {
                result = try PackReader.salvage(path: path, name: name)
                report.salvagedPacks += 1
                report.problems.append("pack \(name): \(error); \(result.entries.count) blobs recovered from its blob headers")
            }
            packs.append((name, result.size, result.entries))
            report.blobs += result.entries.count
            for e in result.entries where e.kind == .point { pointBlobs.append((e, name)) }
        }
        report.packs = packs.count
        var points: [(BlobID, RecoveryPoint)] = []
        let decompressor = ZstdDecompressor()
        for (e, name) in pointBlobs {
            let path = store.layout.packPath(name)
            do {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                if fd < 0 { throw StoreError.system(errno, "opening pack", path) }
                defer { close(fd) }
                let stored = try FileIO.readExactly(fd, offset: e.offset, count: e.storedLength, path: path)
                let plain = try stored.withUnsafeBytes {
                    try PreparedBlob.open(
                        stored: $0, id: e.id, compression: e.compression, rawLength: e.rawLength,
                        decompressor: decompressor, what: "recovery point \(e.id.shortHex) in pack \(name)")
                }
                points.append((e.id, try RecoveryPoint.decode(plain, what: "recovery point \(e.id.shortHex)")))
            } catch {
                report.problems.append("recovery point record \(e.id.shortHex) in pack \(name) cannot be read: \(error)")
            }
        }
        report.points = points.count
        try store.index.replaceAll(packs: packs, points: points)
        return report
    }
}
