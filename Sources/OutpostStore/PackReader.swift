import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Reads a pack file on its own, without the index: its trailer, or, when the trailer is damaged, the blob
/// headers one after the other (salvage for rebuild-index).
enum PackReader {
    static func entries(path: String, name: String) throws -> (entries: [PackEntry], size: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw StoreError.system(errno, "opening pack", path) }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        guard size >= PackFormat.headerSize + PackFormat.footerSize else {
            throw StoreError(.corrupt, "pack \(name) is only \(size) bytes: truncated")
        }
        do {
            try PackFormat.checkHeader(try FileIO.readExactly(fd, offset: 0, count: PackFormat.headerSize, path: path), pack: name)
            let footer = try PackFormat.decodeFooter(
                try FileIO.readExactly(fd, offset: size - PackFormat.footerSize, count: PackFormat.footerSize, path: path), pack: name)
            let trailerSize = footer.count * PackFormat.entrySize
            guard trailerSize <= size - PackFormat.footerSize - PackFormat.headerSize else {
                throw FormatError(.invalidValue, "pack \(name) footer claims \(footer.count) blobs, more than the file can hold")
            }
            let bytes = try FileIO.readExactly(fd, offset: size - PackFormat.footerSize - trailerSize, count: trailerSize, path: path)
            return (try PackFormat.decodeEntries(bytes, count: footer.count, digest: footer.digest, pack: name, packSize: size), size)
        } catch let e as FormatError {
            throw StoreError(.corrupt, e.message)
        }
    }

    /// Walks the blob headers from the start; stops at the first one that does not make sense.
    static func salvage(path: String, name: String) throws -> (entries: [PackEntry], size: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw StoreError.system(errno, "opening pack", path) }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        var out: [PackEntry] = []
        var offset = PackFormat.headerSize
        while offset + PackFormat.blobHeaderSize <= size {
            guard let header = try? FileIO.readExactly(fd, offset: offset, count: PackFormat.blobHeaderSize, path: path),
                let h = try? PackFormat.decodeBlobHeader(header, pack: name, at: offset),
                h.stored > 0, h.raw >= 0, h.raw <= PackFormat.maxRawLength, offset + PackFormat.blobHeaderSize + h.stored <= size
            else { break }
            out.append(
                PackEntry(id: h.4, kind: h.0, compression: h.1, offset: offset + PackFormat.blobHeaderSize, storedLength: h.stored, rawLength: h.raw))
            offset += PackFormat.blobHeaderSize + h.stored
        }
        return (out, size)
    }
}
