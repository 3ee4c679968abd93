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

    static func pendingKey(_ op: PendingEntry.Operation, _ key: String) -> String {
        pendingPrefix + op.rawValue + "-" + BlobID.hash(Array(key.utf8)).hex
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

    public func get(_ key: String) throws -> [UInt8]? { try read { try $0.get(key) } }
    public func get(_ key: String, range: Range<Int>) throws -> [UInt8]? { try read { try $0.get(key, range: range) } }

    /// The primary's copy; else the secondary's, also when the primary fails. A secondary that fails does not
    /// fail a read the primary answered "absent"; a primary that fails does fail one the secondary cannot answer.
    private func read(_ get: (any ObjectStore) throws -> [UInt8]?) throws -> [UInt8]? {
        var primaryError: (any Error)?
        do { if let bytes = try get(primary) { return bytes } } catch { primaryError = error }
        do { return try get(secondary) } catch { throw primaryError ?? error }
    }

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
        let entry = PendingEntry(op: op, key: key, since: now(), error: "\(error)")
        // Put-if-absent: an entry already there keeps its older `since`, so the lag counts from the first miss.
        _ = try primary.putIfAbsent(Self.pendingKey(op, key), try Self.encoder.encode(entry).bytes)
    }

    /// The pending entries (of one operation, or all), oldest first. Damaged entries are skipped (they name no
    /// key to replay).
    public func pending(_ op: PendingEntry.Operation? = nil) throws -> [PendingEntry] {
        var entries: [PendingEntry] = []
        for o in try primary.list(prefix: Self.pendingPrefix + (op.map { $0.rawValue + "-" } ?? "")) {
            guard let bytes = try primary.get(o.key), let e = try? Self.decoder.decode(PendingEntry.self, from: Data(bytes)) else { continue }
            entries.append(e)
        }
        return entries.sorted { $0.since < $1.since }
    }

    /// The secondary's backlog, from the pending entries (one list and one get per entry).
    public func backlog() throws -> Backlog {
        let entries = try pending()
        return Backlog(objects: entries.count, oldest: entries.first?.since)
    }

    /// Replays the pending entries on the secondary, oldest first, and returns the backlog left. An entry that
    /// fails again stays (with its first `since`); the run goes on with the next, so one bad object does not hold
    /// back the rest. A put whose object the primary no longer has, and a delete of a key the primary holds
    /// again, are settled by dropping the entry.
    @discardableResult
    public func catchUp() throws -> Backlog {
        var left: [PendingEntry] = []
        for entry in try pending() {
            do {
                switch entry.op {
                case .put:
                    if let bytes = try primary.get(entry.key) { _ = try secondary.putIfAbsent(entry.key, bytes) }
                case .delete:
                    if try primary.get(entry.key) == nil { try secondary.delete(entry.key) }
                }
                try primary.delete(Self.pendingKey(entry.op, entry.key))
            } catch {
                left.append(entry)
            }
        }
        return Backlog(objects: left.count, oldest: left.first?.since)
    }

    /// Copies into the secondary every object under `prefix` the primary holds and the secondary does not, and
    /// returns how many. It finds what no pending entry records: a vault process killed between its primary
    /// write and the secondary's, or a secondary restored from an older copy. Two listings: run it rarely.
    public func reconcile(prefix: String = "") throws -> Int {
        let have = Set(try secondary.list(prefix: prefix).map(\.key))
        var copied = 0
        for o in try primary.list(prefix: prefix) where !have.contains(o.key) && !o.key.hasPrefix(Self.pendingPrefix) {
            guard let bytes = try primary.get(o.key) else { continue }
            if try secondary.putIfAbsent(o.key, bytes) { copied += 1 }
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
