import Foundation
import GRDB
import OutpostCore

/// The forwarder's bookkeeping in the store's index (schema v3): blobs the vault acknowledged, and per recovery
/// point its state (pending, forwarding, forwarded, failed with the reason).
public struct ForwardingLedger: Sendable {
    let index: StoreIndex

    public init(store: Store) { index = store.index }

    public enum State: String, Sendable, Codable { case pending, forwarding, forwarded, failed }

    public struct Entry: Sendable, Codable {
        public var point: String
        public var machine: String
        public var finishedAt: Date
        public var state: State
        public var reason: String?
        public var bytes: Int64
    }

    /// Of `ids`, those the vault has not acknowledged.
    public func unsent(_ ids: [ChunkID]) throws -> [ChunkID] {
        var sent = Set<ChunkID>()
        try index.read("looking up forwarded blobs") { db in
            var start = 0
            while start < ids.count {
                let slice = ids[start..<min(ids.count, start + 500)]
                let marks = Array(repeating: "?", count: slice.count).joined(separator: ",")
                for d in try Data.fetchAll(db, sql: "SELECT blob_id FROM vault_blobs WHERE blob_id IN (\(marks))", arguments: StatementArguments(slice.map { $0.data })) {
                    if let id = ChunkID(bytes: d) { sent.insert(id) }
                }
                start += 500
            }
        }
        return ids.filter { !sent.contains($0) }
    }

    public func markSent(_ ids: [ChunkID], now: Date = Date()) throws {
        guard !ids.isEmpty else { return }
        try index.write("recording forwarded blobs") { db in
            let st = try db.cachedStatement(sql: "INSERT OR IGNORE INTO vault_blobs (blob_id, sent_at) VALUES (?, ?)")
            for id in ids { try st.execute(arguments: [id.data, now.timeIntervalSince1970]) }
        }
    }

    /// Every blob the vault has acknowledged.
    public func sent() throws -> [ChunkID] {
        try index.read("listing forwarded blobs") { db in
            try Data.fetchAll(db, sql: "SELECT blob_id FROM vault_blobs").compactMap { ChunkID(bytes: $0) }
        }
    }

    public func set(_ point: ChunkID, _ state: State, reason: String? = nil, bytes: Int64 = 0, now: Date = Date()) throws {
        try index.write("recording forwarding state") { db in
            try db.execute(sql: """
                INSERT INTO forwarding (point_id, state, reason, bytes, updated_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(point_id) DO UPDATE SET state = excluded.state, reason = excluded.reason,
                    bytes = forwarding.bytes + excluded.bytes, updated_at = excluded.updated_at
                """, arguments: [point.data, state.rawValue, reason, bytes, now.timeIntervalSince1970])
        }
    }

    /// Every recovery point with its forwarding state, oldest first (points never tried are pending).
    public func entries() throws -> [Entry] {
        let points = try index.points()
        let states = try index.read("listing forwarding state") { db in
            try Row.fetchAll(db, sql: "SELECT point_id, state, reason, bytes FROM forwarding").reduce(into: [ChunkID: (State, String?, Int64)]()) { acc, row in
                if let id = ChunkID(bytes: row["point_id"] as Data) {
                    acc[id] = (State(rawValue: row["state"]) ?? .pending, row["reason"], row["bytes"])
                }
            }
        }
        return points.map { p in
            let s = states[p.id]
            return Entry(point: p.id.hex, machine: p.point.machine, finishedAt: p.point.finishedAt, state: s?.0 ?? .pending, reason: s?.1, bytes: s?.2 ?? 0)
        }
    }
}
