import Foundation
import OutpostCore

/// Geo-redundant storage (GRS, docs/vault.md §3): two independent copy sets. The primary decides every write and
/// answers it; the secondary follows. A put or delete the secondary does not take (unreachable, full, refusing)
/// does not fail the request, so a secondary that is down does not stop every relay's forwarding: it is recorded
/// in the primary as a pending entry (`meta/replica-pending/`), replayed by `catchUp()`, and measured by
/// `backlog()`, so that a replica that falls behind is reported (`vault replica`, metrics, the log) and catches
/// up when it is back. Reads come from the primary and fall back to the secondary when the primary lost the
/// object.
public struct ReplicatedObjectStore: ObjectStore {
    public let primary: any ObjectStore
    public let secondary: any ObjectStore
    let now: @Sendable () -> Date

    /// Where pending entries live, in the primary only: `put-<h>` and `delete-<h>`, `h` the SHA-256 of the key in
    /// hex (any key fits), holding `PendingEntry` as JSON.
    public static let pendingPrefix = "meta/replica-pending/"

    public init(primary: any ObjectStore, secondary: any ObjectStore, now: @escaping @Sendable () -> Date = { Date() }) {
        self.primary = primary
        self.secondary = secondary
        self.now = now
    }

    /// A write the secondary has not taken yet. Version 1 (docs/vault.md §3.1).
    public struct PendingEntry: Codable, Sendable, Equatable {
        public enum Operation: String, Codable, Sendable { case put, delete }
        public var format = "outpost-replica-pending"
        public var version = 1
        public var op: Operation
        public var key: String
        /// When the secondary first missed it (kept when it misses it again).
        public var since: Date
        /// The secondary's last failure, for the operator.
        public var error: String
    }

    /// How far the secondary is behind: the writes it has not taken and the age of the oldest.
    public struct Backlog: Sendable, Equatable, Codable {
        public var objects: Int
        public var oldest: Date?
        public init(objects: Int, oldest: Date?) {
            self.objects = objects
            self.oldest = oldest
        }
        public func lagSeconds(now: Date) -> Double { oldest.map { max(0, now.timeIntervalSince($0)) } ?? 0 }
    }

    /// The folder of one key's pending entries of one kind: `put-<h>/` or `delete-<h>/`.
    static func pendingFolder(_ op: PendingEntry.Operation, _ key: String) -> String {
        pendingPrefix + op.rawValue + "-" + BlobID.hash(Array(key.utf8)).hex + "/"
    }

    /// One miss: `<folder><since in ms, 13 digits>-<random>`. Named by its time, so the backlog and its age come
    /// from a listing alone; one object per miss, so a miss during a replay of the same key is not lost with it.
    func pendingKey(_ op: PendingEntry.Operation, _ key: String, since: Date) -> String {
        let ms = String(max(0, Int64(since.timeIntervalSince1970 * 1000)))
        return Self.pendingFolder(op, key) + String(repeating: "0", count: max(0, 13 - ms.count)) + ms + "-"
            + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }

    /// The time a pending entry's name carries.
    static func since(ofPendingKey key: String) -> Date? {
        guard let last = key.split(separator: "/").last, let ms = Int64(last.prefix { $0 != "-" }) else { return nil }
        return Date(timeIntervalSince1970: Double(ms) / 1000)
    }

    public func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        let created = try primary.putIfAbsent(key, bytes)
        // Also when the primary had it: a retry of a put whose secondary copy failed writes that copy.
        try replicate(key, bytes)
        return created
    }

    /// Puts `key` into the secondary; a failure is recorded as pending instead of thrown. Throws only when the
    /// pending entry cannot be written either (the primary failed too), so nothing is dropped silently.
    public func replicate(_ key: String, _ bytes: [UInt8]) throws {
        do { _ = try secondary.putIfAbsent(key, bytes) } catch { try recordPending(.put, key, error) }
    }

    public func get(_ key: String) throws -> [UInt8]? { try read(key) { try $0.get(key) } }
    public func get(_ key: String, range: Range<Int>) throws -> [UInt8]? { try read(key) { try $0.get(key, range: range) } }

    /// The primary's copy; else the secondary's, also when the primary fails. A secondary that fails does not
    /// fail a read the primary answered "absent"; a primary that fails does fail one the secondary cannot answer.
    /// An object deleted while the secondary missed the delete is absent, although the secondary still has it.
    private func read(_ key: String, _ get: (any ObjectStore) throws -> [UInt8]?) throws -> [UInt8]? {
        var primaryError: (any Error)?
        do {
            if let bytes = try get(primary) { return bytes }
            if try !primary.list(prefix: Self.pendingFolder(.delete, key)).isEmpty { return nil }
        } catch { primaryError = error }
        do { return try get(secondary) } catch { throw primaryError ?? error }
    }

    /// Whether the primary holds `key` (one byte read, not the object).
    private func primaryHolds(_ key: String) throws -> Bool { try primary.get(key, range: 0..<1) != nil }

    /// The union of both copy sets, less what was deleted while the secondary missed the delete, and never the
    /// pending entries themselves; the primary's alone while the secondary fails.
    public func list(prefix: String) throws -> [ObjectInfo] {
        var byKey: [String: ObjectInfo] = [:]
        if let fromSecondary = try? secondary.list(prefix: prefix) {
            for o in fromSecondary { byKey[o.key] = o }
            for entry in try pending(.delete) { byKey[entry.key] = nil }
        }
        for o in try primary.list(prefix: prefix) { byKey[o.key] = o }
        return byKey.values.filter { !$0.key.hasPrefix(Self.pendingPrefix) }.sorted { $0.key < $1.key }
    }

    public func delete(_ key: String) throws {
        try primary.delete(key)
        do { try secondary.delete(key) } catch { try recordPending(.delete, key, error) }
    }

    private func recordPending(_ op: PendingEntry.Operation, _ key: String, _ error: any Error) throws {
        let since = now()
        let entry = PendingEntry(op: op, key: key, since: since, error: "\(error)")
        _ = try primary.putIfAbsent(pendingKey(op, key, since: since), try Self.encoder.encode(entry).bytes)
    }

    /// The pending entries' names, grouped by key and kind (one folder each), oldest folder first.
    private func pendingFolders(_ prefix: String = pendingPrefix) throws -> [(folder: String, names: [String], oldest: Date)] {
        var byFolder: [String: [String]] = [:]
        for o in try primary.list(prefix: prefix) {
            guard let slash = o.key.lastIndex(of: "/") else { continue }
            byFolder[String(o.key[...slash]), default: []].append(o.key)
        }
        return byFolder.map { folder, names in
            (folder, names.sorted(), names.compactMap(Self.since(ofPendingKey:)).min() ?? .distantPast)
        }.sorted { ($0.oldest, $0.folder) < ($1.oldest, $1.folder) }
    }

    /// The entry of a folder (any of its misses names the same key and kind). Nil when damaged or gone.
    private func entry(in names: [String]) throws -> PendingEntry? {
        for name in names {
            if let bytes = try primary.get(name), let e = try? Self.decoder.decode(PendingEntry.self, from: Data(bytes)) { return e }
        }
        return nil
    }

    /// The pending entries (of one operation, or all), one per key and kind, oldest first, `since` the oldest
    /// miss. One get per key: for `vault replica`, not for every round.
    public func pending(_ op: PendingEntry.Operation? = nil) throws -> [PendingEntry] {
        var entries: [PendingEntry] = []
        for f in try pendingFolders(Self.pendingPrefix + (op.map { $0.rawValue + "-" } ?? "")) {
            guard var e = try entry(in: f.names) else { continue }
            e.since = f.oldest
            entries.append(e)
        }
        return entries
    }

    /// The secondary's backlog: the misses not replayed yet and the age of the oldest, from one listing.
    public func backlog() throws -> Backlog {
        let names = try primary.list(prefix: Self.pendingPrefix).map(\.key)
        return Backlog(objects: names.count, oldest: names.compactMap(Self.since(ofPendingKey:)).min())
    }

    /// Replays the pending entries on the secondary, oldest key first, and returns the backlog left. The first
    /// failure of the secondary ends the round: it is down or refusing, and trying every entry against it would
    /// cost a time-out and a read of the object from the primary each. A put whose object the primary no longer
    /// has, and a delete of a key the primary holds again, are settled by dropping the entry; a delete that
    /// reaches the primary while its object is copied is undone on the secondary at once. Only the misses listed
    /// at the start are dropped: one recorded during the replay stays for the next round.
    @discardableResult
    public func catchUp() throws -> Backlog {
        let folders = try pendingFolders()
        var done = 0
        for f in folders {
            if let e = try entry(in: f.names) {
                do {
                    switch e.op {
                    case .put:
                        if let bytes = try primary.get(e.key) {
                            _ = try secondary.putIfAbsent(e.key, bytes)
                            if try !primaryHolds(e.key) { try secondary.delete(e.key) }
                        }
                    case .delete:
                        if try !primaryHolds(e.key) {
                            try secondary.delete(e.key)
                            // Put again meanwhile: its copy may just have been deleted.
                            if let bytes = try primary.get(e.key) { _ = try secondary.putIfAbsent(e.key, bytes) }
                        }
                    }
                } catch {
                    break
                }
            }
            for name in f.names { try primary.delete(name) }
            done += 1
        }
        let left = folders.dropFirst(done)
        return Backlog(objects: left.reduce(0) { $0 + $1.names.count }, oldest: left.map(\.oldest).min())
    }

    /// Copies into the secondary every object under `prefix` the primary holds and the secondary does not, and
    /// returns how many. It finds what no pending entry records: a vault process killed between its primary
    /// write and the secondary's, or a secondary restored from an older copy. Two listings: run it rarely. It
    /// never deletes from the secondary, except a copy whose object the primary deleted meanwhile.
    public func reconcile(prefix: String = "") throws -> Int {
        let have = Set(try secondary.list(prefix: prefix).map(\.key))
        var copied = 0
        for o in try primary.list(prefix: prefix) where !have.contains(o.key) && !o.key.hasPrefix(Self.pendingPrefix) {
            guard let bytes = try primary.get(o.key) else { continue }
            if try secondary.putIfAbsent(o.key, bytes) {
                if try !primaryHolds(o.key) { try secondary.delete(o.key) } else { copied += 1 }
            }
        }
        return copied
    }

    private static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    private static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

extension Data {
    fileprivate var bytes: [UInt8] { [UInt8](self) }
}
