import Foundation
import Synchronization

// The stat fields come through CoreFoundation's headers once NIOSSL is in the module's graph.
#if canImport(CoreFoundation)
    import CoreFoundation
#endif

/// Credentials the relay has checked recently, so that a request costs no index read for its authentication
/// (one `stat` instead). A credential stops working in another process (`outpost relay remove-machine`), so
/// every process that withdraws one rewrites the catalog's stamp file after its commit (`MachineCatalog.
/// removeMachine`); an entry is used only while the stamp is the one read before the entry was looked up, and a
/// changed stamp empties the cache. Only credentials that were valid are remembered.
final class CredentialCache: Sendable {
    /// The stamp file's identity: a new file (rename) or a new write changes it.
    struct Stamp: Equatable {
        var inode: UInt64, seconds: Int, nanoseconds: Int, size: Int64
    }

    private struct State {
        var stamp: Stamp?
        var entries: [String: (id: Int64, name: String)] = [:]
    }

    let stampPath: String
    private let state = Mutex(State())
    /// A bound on the entries (one per machine in use); beyond it the cache starts over.
    static let capacity = 4096

    init(stampPath: String) { self.stampPath = stampPath }

    func currentStamp() -> Stamp? {
        var st = stat()
        guard stat(stampPath, &st) == 0 else { return nil }
        return Stamp(inode: UInt64(st.st_ino), seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec, size: Int64(st.st_size))
    }

    /// The machine a cached credential belongs to, under the stamp read just now.
    func lookUp(_ token: String, stamp: Stamp?) -> (id: Int64, name: String)? {
        state.withLock { s in
            if s.stamp != stamp {
                s.stamp = stamp
                s.entries = [:]
                return nil
            }
            return s.entries[token]
        }
    }

    /// Remembers a credential checked against the index after `stamp` was read.
    func remember(_ token: String, id: Int64, name: String, stamp: Stamp?) {
        state.withLock { s in
            guard s.stamp == stamp else { return }
            if s.entries.count >= Self.capacity { s.entries = [:] }
            s.entries[token] = (id, name)
        }
    }

    /// Rewrites the stamp file (a new file renamed over the old one): every relay process using the catalog
    /// forgets the credentials it cached.
    static func touch(stampPath: String) throws {
        let text = "credentials changed at \(Date().timeIntervalSince1970) by pid \(getpid())\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: stampPath), options: .atomic)
    }
}
