import Foundation
import Hummingbird
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostObjects

/// Each relay's newest status record (issue 13; docs/vault.md §20), in the vault's object store so that every
/// node over one bucket shows the same fleet: `meta/status/<relay id>/<received, ms since 1970, 16 digits>.json`.
/// The store has no overwrite, so each record is a new object under a later name; the older ones of that relay
/// are deleted once it is stored, and a reader takes the greatest name. Nothing is ever missing in between: the
/// new object is stored before an old one goes.
public struct RelayStatusStore: Sendable {
    public static let prefix = "meta/status/"
    let objects: any ObjectStore

    public init(objects: any ObjectStore) { self.objects = objects }

    /// A record as the vault stored it: when it arrived (the relay's last contact) and what it said.
    public struct Stored: Codable, Sendable, Equatable {
        public var format = "outpost-vault-relay-status"
        public var version = 1
        public var receivedAt: Date
        public var record: RelayStatusRecord

        public init(receivedAt: Date, record: RelayStatusRecord) { self.receivedAt = receivedAt; self.record = record }
        enum CodingKeys: String, CodingKey { case format, version, receivedAt = "received_at", record }
    }

    static func key(relay: String, at: Date) -> String {
        let ms = String(max(0, Int64((at.timeIntervalSince1970 * 1000).rounded(.down))))
        return prefix + relay + "/" + String(repeating: "0", count: max(0, 16 - ms.count)) + ms + ".json"
    }

    /// Stores `record` as the relay's newest and deletes the ones before it. Two records of one relay arriving
    /// in the same millisecond (two nodes) keep the first.
    public func save(_ record: RelayStatusRecord, relay: String, receivedAt: Date) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        let before = try objects.list(prefix: Self.prefix + relay + "/").map(\.key)
        var key = Self.key(relay: relay, at: receivedAt)
        // Named after the newest one there when this node's clock is behind the node that stored it, so the record
        // that arrived last is the one the page shows, whatever the nodes' clocks say.
        if let newest = before.max(), newest >= key, let ms = Int64(newest.dropFirst(Self.prefix.count + relay.count + 1).prefix(16)) {
            key = Self.key(relay: relay, at: Date(timeIntervalSince1970: Double(ms + 1) / 1000))
        }
        _ = try objects.putIfAbsent(key, Array(try e.encode(Stored(receivedAt: receivedAt, record: record))))
        // The older ones: those listed before, and any another request stored meanwhile under an older name. A
        // newer one another node stored meanwhile stays.
        let after = try objects.list(prefix: Self.prefix + relay + "/").map(\.key)
        for k in Set(before + after) where k < key { try objects.delete(k) }
    }

    static func decode(_ bytes: [UInt8]) -> Stored? {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        guard let s = try? d.decode(Stored.self, from: Data(bytes)), s.format == "outpost-vault-relay-status", s.version == 1 else { return nil }
        return s
    }

    /// The newest record of every relay that sent one: one listing, then one read per relay. A record deleted
    /// between the two (a newer one arrived) is read again from a new listing of that relay.
    public func all() throws -> [String: Stored] {
        var newest: [String: String] = [:]
        for o in try objects.list(prefix: Self.prefix) {
            let rest = o.key.dropFirst(Self.prefix.count).split(separator: "/")
            guard rest.count == 2 else { continue }
            let relay = String(rest[0])
            if o.key > newest[relay] ?? "" { newest[relay] = o.key }
        }
        var out: [String: Stored] = [:]
        for (relay, key) in newest {
            if let s = try read(key) ?? latest(relay: relay) { out[relay] = s }
        }
        return out
    }

    /// The relay's newest record, or nil when it never sent one.
    public func latest(relay: String) throws -> Stored? {
        guard let key = try objects.list(prefix: Self.prefix + relay + "/").map(\.key).max() else { return nil }
        return try read(key)
    }

    private func read(_ key: String) throws -> Stored? { try objects.get(key).flatMap(Self.decode) }

    /// Deletes a relay's records (its container was purged). Returns how many.
    public func remove(relay: String) throws -> Int {
        let keys = try objects.list(prefix: Self.prefix + relay + "/").map(\.key)
        for k in keys { try objects.delete(k) }
        return keys.count
    }
}

/// `POST /v1/status`: a relay's status record, behind the relay credential (docs/vault.md §7.3).
struct VaultStatusRoutes: Sendable {
    let objects: any ObjectStore
    let logger: Logger
    var clock: @Sendable () -> Date = { Date() }

    func addRoutes(to group: RouterGroup<VaultRequestContext>) {
        group.post("status", use: post)
    }

    @Sendable func post(_ request: Request, context: VaultRequestContext) async throws -> Response {
        let relay = try context.authenticated()
        let max = RelayStatusRecord.maxBytes
        func tooLarge(_ n: Int?) -> HTTPFailure {
            HTTPFailure(.tooLarge, "the status record is \(n.map { "\($0) bytes" } ?? "larger"), more than the vault reads (\(max >> 10) KiB)")
        }
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        if let declared, declared > max { throw tooLarge(declared) }
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: max) } catch is NIOTooManyBytesError { throw tooLarge(nil) }
        let record: RelayStatusRecord
        do { record = try RelayStatusRecord.decode(Array(buffer: body)) } catch let f as HTTPFailure {
            logger.warning("status record refused", metadata: ["relay": "\(relay.id)", "reason": "\(f.message)"])
            throw f
        }
        try RelayStatusStore(objects: objects).save(record, relay: relay.id, receivedAt: clock())
        return Response(status: .noContent)
    }
}
