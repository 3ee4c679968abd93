import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Writes one pack: under `tmp/` while open, sealed (trailer, fsync, rename into `packs/`, fsync the
/// directory) before the index may reference it. The open file is flocked, so that an online gc tells a pack
/// being written from one a killed writer left (`LeftoverFiles`). Not thread-safe: it has one owner at a time (the store's
/// writer while open, then the one caller that seals it), which is why it may cross threads.
final class PackWriter: @unchecked Sendable {
    let name: String
    private let tmpPath: String
    private let finalPath: String
    private let packDirectory: String
    private var fd: Int32
    private(set) var size: Int
    private(set) var entries: [PackEntry] = []

    init(layout: StoreLayout) throws {
        var random = [UInt8](repeating: 0, count: 16)
        for i in random.indices { random[i] = UInt8.random(in: 0...255) }
        name = Hex.encode(random)
        tmpPath = layout.tmpDirectory + "/" + name + ".pack"
        packDirectory = layout.packDirectory(for: name)
        finalPath = layout.packPath(name)
        fd = open(tmpPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 { throw StoreError.system(errno, "creating pack", tmpPath) }
        flock(fd, LOCK_EX | LOCK_NB)
        size = 0
        do {
            try PackFormat.header().withUnsafeBytes { try FileIO.writeAll(fd, $0, path: tmpPath) }
        } catch {
            abandon(); throw error
        }
        size = PackFormat.headerSize
    }

    deinit { if fd >= 0 { close(fd); unlink(tmpPath) } }

    var isEmpty: Bool { entries.isEmpty }

    func append(_ blob: PreparedBlob) throws {
        let header = PackFormat.blobHeader(blob)
        try header.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: tmpPath) }
        try blob.stored.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: tmpPath) }
        let offset = size + header.count
        entries.append(
            PackEntry(
                id: blob.id, kind: blob.kind, compression: blob.compression, offset: offset,
                storedLength: blob.stored.count, rawLength: blob.rawLength))
        size = offset + blob.stored.count
    }

    /// Writes the trailer and makes the pack durable under its final name.
    func seal() throws -> (name: String, size: Int, entries: [PackEntry]) {
        let trailer = PackFormat.trailer(entries)
        try trailer.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: tmpPath) }
        size += trailer.count
        try FileIO.fsync(fd, path: tmpPath)
        close(fd)
        fd = -1
        try FileIO.makeDirectory(packDirectory)
        if rename(tmpPath, finalPath) != 0 { let e = errno; unlink(tmpPath); throw StoreError.system(e, "moving pack into place", finalPath) }
        try FileIO.fsyncDirectory(packDirectory)
        return (name, size, entries)
    }

    func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tmpPath)
    }
}

/// Paths inside a store directory.
public struct StoreLayout: Sendable {
    public let root: String
    public var configPath: String { root + "/config" }
    public var indexPath: String { root + "/index.sqlite" }
    public var lockPath: String { root + "/lock" }
    public var tmpDirectory: String { root + "/tmp" }
    public var packsRoot: String { root + "/packs" }

    public init(root: String) {
        self.root = DirectoryPath.normalized(root)
    }

    func packDirectory(for name: String) -> String { packsRoot + "/" + String(name.prefix(2)) }
    public func packPath(_ name: String) -> String { packDirectory(for: name) + "/" + name + ".pack" }

    /// Names of the pack files on disk.
    func packFilesOnDisk() throws -> [String] {
        let fm = FileManager.default
        var out: [String] = []
        for sub in (try? fm.contentsOfDirectory(atPath: packsRoot)) ?? [] {
            for f in (try? fm.contentsOfDirectory(atPath: packsRoot + "/" + sub)) ?? [] where f.hasSuffix(".pack") {
                out.append(String(f.dropLast(5)))
            }
        }
        return out.sorted()
    }
}
