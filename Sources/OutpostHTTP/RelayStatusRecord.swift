import Foundation

/// A relay's status as the vault's fleet view shows it (issue 13): the body of `POST /v1/status`, sent after each
/// forwarding run and at least every 5 minutes while `relay serve` runs (docs/vault.md §7.3, §20). Counts and
/// times only: no machine's name, no file name or path, no chunk id, no key. Its only strings are alert kinds and
/// the relay's version, each held to a short pattern, so the vault refuses a record that tries to carry more.
public struct RelayStatusRecord: Codable, Sendable, Equatable {
    /// The version this outpost writes and the only one the vault reads.
    public static let version = 1
    /// The largest body the vault reads (a record with `maxMachines` machines is about 40 KiB).
    public static let maxBytes = 64 << 10
    /// Machines listed one by one at most; a relay with more lists those with the oldest good backups.
    public static let maxMachines = 512
    public static let maxAlertKinds = 32
    /// The bound of every count (machines, alerts, points): far above any relay's, below any overflow.
    public static let maxCount = 1_000_000_000

    /// One machine, without its name.
    public struct Machine: Codable, Sendable, Equatable {
        /// When its last good backup started; nil: none yet.
        public var lastGood: Date?
        /// When it counts as late unless a good backup comes first: its next planned run after the last good
        /// backup plus the relay's missed-backup grace, or, without a schedule, 24 h after the last good backup
        /// (after enrolment when there is none).
        public var lateAfter: Date

        public init(lastGood: Date?, lateAfter: Date) { self.lastGood = lastGood; self.lateAfter = lateAfter }
        enum CodingKeys: String, CodingKey { case lastGood = "last_good", lateAfter = "late_after" }
        static let keys: Set<String> = ["last_good", "late_after"]
    }

    /// The file system of the relay's store.
    public struct Disk: Codable, Sendable, Equatable {
        public var usedBytes: Int64
        public var freeBytes: Int64
        public init(usedBytes: Int64, freeBytes: Int64) { self.usedBytes = usedBytes; self.freeBytes = freeBytes }
        enum CodingKeys: String, CodingKey { case usedBytes = "used_bytes", freeBytes = "free_bytes" }
        static let keys: Set<String> = ["used_bytes", "free_bytes"]
    }

    /// What forwarding has still to send: recovery points not yet forwarded, and the stored bytes the vault lacks.
    public struct Backlog: Codable, Sendable, Equatable {
        public var points: Int
        public var bytes: Int64
        public init(points: Int, bytes: Int64) { self.points = points; self.bytes = bytes }
        static let keys: Set<String> = ["points", "bytes"]
    }

    public var v: Int
    public var sentAt: Date
    public var relayVersion: String
    /// Active machines; `machines` lists at most `maxMachines` of them.
    public var machineCount: Int
    public var machines: [Machine]
    /// Open alerts by kind (`missed-backup`, `disk-low`, …); kinds without an open alert are left out.
    public var openAlerts: [String: Int]
    public var disk: Disk
    public var backlog: Backlog
    /// Seconds since the oldest recovery point still waiting to be forwarded finished (0: none waits).
    public var vaultLagSeconds: Int64

    public init(
        sentAt: Date, relayVersion: String, machineCount: Int, machines: [Machine], openAlerts: [String: Int], disk: Disk, backlog: Backlog,
        vaultLagSeconds: Int64
    ) {
        v = Self.version
        self.sentAt = sentAt; self.relayVersion = relayVersion; self.machineCount = machineCount; self.machines = machines
        self.openAlerts = openAlerts; self.disk = disk; self.backlog = backlog; self.vaultLagSeconds = vaultLagSeconds
    }

    enum CodingKeys: String, CodingKey {
        case v, sentAt = "sent_at", relayVersion = "relay_version", machineCount = "machine_count", machines, openAlerts = "open_alerts", disk,
            backlog, vaultLagSeconds = "vault_lag_seconds"
    }
    static let keys: Set<String> = [
        "v", "sent_at", "relay_version", "machine_count", "machines", "open_alerts", "disk", "backlog", "vault_lag_seconds",
    ]

    /// Compact JSON with sorted keys and ISO 8601 dates.
    public func encoded() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return Array(try e.encode(self))
    }

    /// A record as the vault accepts it, or the reason it does not: over `maxBytes` (413), not version 1, a field
    /// missing, unknown or out of its range (400). Every message names the field and what it must be.
    public static func decode(_ bytes: [UInt8]) throws -> RelayStatusRecord {
        guard bytes.count <= maxBytes else {
            throw HTTPFailure(.tooLarge, "the status record is \(bytes.count) bytes, more than the vault reads (\(maxBytes >> 10) KiB)")
        }
        guard let top = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
            throw HTTPFailure(.badRequest, "the status record is not a JSON object")
        }
        guard let found = top["v"] else {
            throw HTTPFailure(.badRequest, "the status record has no version (\"v\": \(version)); this vault reads status records version \(version)")
        }
        guard let v = found as? NSNumber, v.doubleValue == v.doubleValue.rounded() else {
            throw HTTPFailure(.badRequest, "the status record's version \"v\" must be a whole number (this vault reads version \(version))")
        }
        guard v.intValue == version else {
            throw HTTPFailure(
                .badRequest,
                "the status record has version \(v), which this vault does not read (it reads version \(version)): upgrade the vault, or the relay's outpost to the vault's"
            )
        }
        try check(top, keys, "the status record")
        if let disk = top["disk"] as? [String: Any] { try check(disk, Disk.keys, "the status record's disk") }
        if let backlog = top["backlog"] as? [String: Any] { try check(backlog, Backlog.keys, "the status record's backlog") }
        for m in (top["machines"] as? [Any]) ?? [] {
            guard let m = m as? [String: Any] else { throw HTTPFailure(.badRequest, "each machine of the status record is a JSON object") }
            try check(m, Machine.keys.subtracting(["last_good"]), "a machine of the status record", optional: ["last_good"])
        }
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        let r: RelayStatusRecord
        do { r = try d.decode(RelayStatusRecord.self, from: Data(bytes)) } catch let DecodingError.typeMismatch(_, c) {
            throw HTTPFailure(.badRequest, "the status record's \(path(c)) has the wrong type: \(c.debugDescription)")
        } catch let DecodingError.dataCorrupted(c) {
            throw HTTPFailure(.badRequest, "the status record's \(path(c)) is not valid: \(c.debugDescription)")
        } catch let DecodingError.valueNotFound(_, c) {
            throw HTTPFailure(.badRequest, "the status record's \(path(c)) is null; give a value")
        } catch {
            throw HTTPFailure(.badRequest, "the status record cannot be read: \(error)")
        }
        try r.validate()
        return r
    }

    static func path(_ c: DecodingError.Context) -> String {
        c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    /// Every key of `object` known and every required one present.
    static func check(_ object: [String: Any], _ required: Set<String>, _ what: String, optional: Set<String> = []) throws {
        if let unknown = object.keys.sorted().first(where: { !required.contains($0) && !optional.contains($0) }) {
            throw HTTPFailure(
                .badRequest,
                "\(what) has the field \(Self.shown(unknown)), which version \(version) does not have (it has \(required.union(optional).sorted().joined(separator: ", ")))"
            )
        }
        if let missing = required.sorted().first(where: { object[$0] == nil }) {
            throw HTTPFailure(.badRequest, "\(what) lacks the field \(missing)")
        }
    }

    /// A key as sent, short and printable (it is quoted in an answer and the vault's log).
    static func shown(_ s: String) -> String {
        let clipped = s.prefix(40).unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? String($0) : "?" }.joined()
        return "\"" + clipped + (s.count > 40 ? "…" : "") + "\""
    }

    /// The ranges and patterns of the values (decoding checked the types).
    public func validate() throws {
        func bad(_ field: String, _ rule: String) -> HTTPFailure { HTTPFailure(.badRequest, "the status record's \(field) must be \(rule)") }
        let versionOK = (1...32).contains(relayVersion.utf8.count) && relayVersion.utf8.allSatisfy(Self.versionByte)
        guard versionOK else { throw bad("relay_version", "1 to 32 letters, digits, '.', '-' or '+'") }
        guard (0...Self.maxCount).contains(machineCount) else { throw bad("machine_count", "0 to \(Self.maxCount)") }
        guard machines.count <= min(machineCount, Self.maxMachines) else {
            throw bad("machines", "at most machine_count (\(machineCount)) and at most \(Self.maxMachines) entries, not \(machines.count)")
        }
        guard openAlerts.count <= Self.maxAlertKinds else { throw bad("open_alerts", "at most \(Self.maxAlertKinds) kinds") }
        for (kind, n) in openAlerts {
            guard Self.isAlertKind(kind) else {
                throw bad("open_alerts", "keyed by alert kinds of 1 to 32 lowercase letters, digits or '-', not \(Self.shown(kind))")
            }
            guard (1...Self.maxCount).contains(n) else { throw bad("open_alerts.\(kind)", "1 to \(Self.maxCount)") }
        }
        // Bounded above too: the page does arithmetic on them (a lag near Int64.max would trap converting back
        // from Double and take the vault down at the next page view).
        guard (0...Self.maxStorageBytes).contains(disk.usedBytes), (0...Self.maxStorageBytes).contains(disk.freeBytes) else {
            throw bad("disk", "counts of bytes from 0 to 2^60")
        }
        guard (0...Self.maxCount).contains(backlog.points), (0...Self.maxStorageBytes).contains(backlog.bytes) else {
            throw bad("backlog", "points from 0 to \(Self.maxCount) and bytes from 0 to 2^60")
        }
        guard (0...Self.maxLagSeconds).contains(vaultLagSeconds) else { throw bad("vault_lag_seconds", "0 to \(Self.maxLagSeconds) (200 years)") }
        // Dates between 2000 and 2200: a relay's clock that far off is a mistake the page would only hide.
        let range = Date(timeIntervalSince1970: 946_684_800)...Date(timeIntervalSince1970: 7_258_118_400)
        guard range.contains(sentAt) else { throw bad("sent_at", "a date between 2000 and 2200") }
        for (i, m) in machines.enumerated() {
            guard range.contains(m.lateAfter), m.lastGood.map(range.contains) ?? true else {
                throw bad("machines[\(i)]", "dates between 2000 and 2200")
            }
        }
    }

    /// 1 EiB: more than any relay's disk or backlog.
    public static let maxStorageBytes: Int64 = 1 << 60
    /// 200 years, in seconds.
    public static let maxLagSeconds: Int64 = 200 * 366 * 86400

    static func versionByte(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x2d || c == 0x2b
    }

    static func isAlertKind(_ s: String) -> Bool {
        let b = Array(s.utf8)
        return (1...32).contains(b.count) && b[0] >= 0x61 && b[0] <= 0x7a
            && b.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
    }
}
