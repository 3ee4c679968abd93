import Foundation
import OutpostCore
import OutpostHTTP
import OutpostObjects
import OutpostVault
import Testing

@testable import OutpostConsole

/// What the fleet page says of each relay (issue 13; docs/vault.md §20.2), from the registry and the stored
/// status records.
@Suite struct FleetPageTests {
    static let now = Date(timeIntervalSince1970: 1_750_000_000)

    static func relay(_ id: String, _ name: String, removedAt: Date? = nil) throws -> VaultRegistry.Relay {
        var object: [String: Any] = ["id": id, "name": name, "credentialHash": "", "registeredAt": "2025-01-01T00:00:00Z"]
        if let removedAt { object["removedAt"] = ISO8601DateFormatter().string(from: removedAt) }
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return try d.decode(VaultRegistry.Relay.self, from: try JSONSerialization.data(withJSONObject: object))
    }

    static func stored(ago: TimeInterval, machines: [TimeInterval], alerts: [String: Int] = [:], backlog: Int = 0) -> RelayStatusStore.Stored {
        let record = RelayStatusRecord(
            sentAt: now.addingTimeInterval(-ago), relayVersion: "0.1.0", machineCount: machines.count,
            machines: machines.map { .init(lastGood: nil, lateAfter: now.addingTimeInterval($0)) }, openAlerts: alerts,
            disk: .init(usedBytes: 1 << 30, freeBytes: 3 << 30), backlog: .init(points: backlog, bytes: Int64(backlog) << 20),
            vaultLagSeconds: backlog > 0 ? 7500 : 0)
        return RelayStatusStore.Stored(receivedAt: now.addingTimeInterval(-ago), record: record)
    }

    static func values(_ immutable: Bool = false) throws -> [String: Any] {
        let relays = [
            try relay("r1", "east"), try relay("r2", "west"), try relay("r3", "north"),
            try relay("r4", "gone", removedAt: now.addingTimeInterval(-86400)),
        ]
        let status = [
            "r1": stored(ago: 60, machines: [3600, 7200]),
            "r2": stored(ago: 120, machines: [-60, 3600, 60], alerts: ["missed-backup": 1, "disk-low": 1], backlog: 2),
        ]
        var policy = VaultPolicy(VaultConfiguration(id: "v", name: "v", url: "https://h:1", replication: .lrs, secondary: nil))
        policy.immutable = immutable
        return try VaultConsoleServer.fleetValues(relays: relays, status: status, usage: { $0 == "r4" ? 5 << 20 : 1024 }, policy: policy, now: now)
    }

    static func row(_ values: [String: Any], _ name: String) -> [String: Any]? {
        (values["relays"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }

    @Test func eachRelayShowsItsContactLagMachinesAlertsAndSpace() throws {
        let v = try Self.values()
        let east = try #require(Self.row(v, "east"))
        #expect(east["machines"] as? String == "2 machines" && east["lag"] as? String == "0 s" && east["class"] as? String == "ok")
        #expect(east["contact"] as? String == "2025-06-15T15:05:40 (1 min ago)")
        #expect(east["space"] as? String == "1.0 KiB" && east["alerts"] as? String == "none")
        let west = try #require(Self.row(v, "west"))
        #expect(west["machines"] as? String == "3 machines, 1 late" && west["class"] as? String == "late")
        #expect(west["alerts"] as? String == "disk-low 1, missed-backup 1")
        #expect(west["lag"] as? String == "2 h 5 min; 2 points, 2.0 MiB waiting")
        let north = try #require(Self.row(v, "north"))
        #expect(north["contact"] as? String == "never" && north["class"] as? String == "late")
        #expect(v["active"] as? Int == 3 && v["machines"] as? Int == 5 && v["late"] as? Int == 1 && v["alerts"] as? Int == 2)
    }

    @Test func aRelaySilentFor15MinutesIsLate() throws {
        let relays = [try Self.relay("r1", "east")]
        let policy = VaultPolicy(VaultConfiguration(id: "v", name: "v", url: "https://h:1", replication: .lrs, secondary: nil))
        let quiet = try VaultConsoleServer.fleetValues(
            relays: relays, status: ["r1": Self.stored(ago: 16 * 60, machines: [3600])], usage: { _ in 0 }, policy: policy, now: Self.now)
        #expect(Self.row(quiet, "east")?["class"] as? String == "late")
    }

    @Test func removedRelaysAreListedApartWithTheirPurgeDate() throws {
        let v = try Self.values()
        #expect(Self.row(v, "gone") == nil)
        let gone = try #require((v["removed"] as? [[String: Any]])?.first)
        #expect(gone["name"] as? String == "gone" && gone["space"] as? String == "5.0 MiB")
        // Removed a day ago, purged softDeleteDays (14) after removal.
        #expect((gone["purge"] as? String)?.hasPrefix("2025-06-28") == true, "\(gone)")
        let kept = try #require((try Self.values(true)["removed"] as? [[String: Any]])?.first)
        #expect(kept["purge"] as? String == "kept: the vault is immutable")
    }

    @Test func theSecondaryCopySetsLagIsShownOnAGRSVault() {
        #expect(VaultConsoleServer.replicaValues(nil, now: Self.now)["hasReplica"] as? Bool == false, "LRS: no line")
        var status = ReplicaMonitor.Status()
        #expect(VaultConsoleServer.replicaValues(status, now: Self.now)["replica"] as? String == "not read yet")
        status.checkedAt = Self.now
        #expect(VaultConsoleServer.replicaValues(status, now: Self.now)["replica"] as? String == "up to date")
        status.backlog = .init(objects: 3, oldest: Self.now.addingTimeInterval(-1200))
        let behind = VaultConsoleServer.replicaValues(status, now: Self.now)
        #expect(behind["replica"] as? String == "3 writes pending, 20 min behind")
        #expect(behind["replicaClass"] as? String == "late", "past the 15 minutes")
        status.failure = "the primary is unreachable"
        #expect((VaultConsoleServer.replicaValues(status, now: Self.now)["replica"] as? String)?.hasPrefix("not read at the last round") == true)
    }

    @Test func aDurationBeyondIntsRangeDoesNotTrap() {
        #expect(VaultConsoleServer.duration(Double(Int64.max)).hasSuffix(" h"))
        #expect(VaultConsoleServer.duration(-5) == "0 s")
        #expect(VaultConsoleServer.duration(.nan) == "0 s")
    }

    /// A page never lists a container itself: it shows the last count and a thread of its own counts again.
    @Test func containerSizesAreCountedOffThePage() async throws {
        let objects = MemoryObjectStore()
        _ = try objects.putIfAbsent("containers/r1/a", [UInt8](repeating: 1, count: 100))
        _ = try objects.putIfAbsent("containers/r1/b", [UInt8](repeating: 1, count: 50))
        let usage = ContainerUsage(objects: objects)
        #expect(usage.bytes(relay: "r1", now: Self.now) == nil, "not counted yet: the page says so")
        let deadline = ContinuousClock.now + .seconds(10)
        var counted: Int64?
        while counted == nil && ContinuousClock.now < deadline {
            await Task.yield()
            counted = usage.bytes(relay: "r1", now: Self.now)
        }
        #expect(counted == 150)
        _ = try objects.putIfAbsent("containers/r1/c", [1])
        #expect(usage.bytes(relay: "r1", now: Self.now) == 150, "within its lifetime the count is not taken again")
    }
}
