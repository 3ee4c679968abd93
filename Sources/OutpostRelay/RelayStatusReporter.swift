import Foundation
import OutpostCore
import OutpostHTTP
import OutpostStore

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's status record for the vault's fleet view (issue 13; docs/vault.md §20), read from its index: its
/// machines (no names: a last good backup and when each counts as late), its open alerts by kind, its disk.
/// The forwarder adds its backlog and lag, which the relay itself does not know.
public struct RelayStatusReporter: Sendable {
    let store: Store
    let settings: AlertSettings
    let clock: WallClock
    /// For machines whose agent never said its own.
    let timeZone: TimeZone

    public init(store: Store, settings: AlertSettings, clock: WallClock, timeZone: TimeZone = .current) {
        self.store = store; self.settings = settings; self.clock = clock; self.timeZone = timeZone
    }

    /// Without a schedule, a machine counts as late 24 h after its last good backup.
    static let unscheduled: TimeInterval = 24 * 3600

    public func record(backlog: RelayStatusRecord.Backlog, vaultLagSeconds: Int64) throws -> RelayStatusRecord {
        let now = clock.now()
        let active = try MachineCatalog(store: store).machines(now: now).filter(\.isActive)
        let lastGood = try JobLog(store: store).lastGoodBackups()
        let members = Dictionary(
            try ProtectionGroups(store: store).memberships().map { ($0.machine, ($0.group.schedule, $0.joinedAt)) }, uniquingKeysWith: { a, _ in a })
        let contacts = try AgentDesk(store: store, clock: clock).contacts()
        let grace = Double(settings.missedGraceMinutes) * 60
        var machines = active.map { m -> RelayStatusRecord.Machine in
            let good = lastGood[m.name]
            // As the missed-backup alert decides (AlertMonitor.missedBackups): the first planned run after the last
            // good backup (or after joining the group), plus the grace.
            if let member = members[m.name], let schedule = try? BackupSchedule.parse(member.0) {
                let zone = contacts[m.name].flatMap { TimeZone(identifier: $0.timeZone) } ?? timeZone
                let since = max(member.1, (good ?? .distantPast).addingTimeInterval(300))
                return .init(lastGood: good, lateAfter: schedule.next(after: since, in: zone).addingTimeInterval(grace))
            }
            return .init(lastGood: good, lateAfter: (good ?? m.enrolledAt ?? now).addingTimeInterval(Self.unscheduled))
        }
        // The most overdue first, when there are more than a record lists.
        machines.sort { $0.lateAfter < $1.lateAfter }
        var alerts: [String: Int] = [:]
        for a in try AlertBook(store: store).open() { alerts[a.kind.rawValue, default: 0] += 1 }
        var s = statvfs()
        let disk =
            statvfs(store.layout.root, &s) == 0
            ? RelayStatusRecord.Disk(
                usedBytes: Int64(s.f_blocks - s.f_bfree) * Int64(s.f_frsize), freeBytes: Int64(s.f_bavail) * Int64(s.f_frsize))
            : RelayStatusRecord.Disk(usedBytes: 0, freeBytes: 0)
        return RelayStatusRecord(
            sentAt: now, relayVersion: OutpostVersion.string, machineCount: active.count,
            machines: Array(machines.prefix(RelayStatusRecord.maxMachines)), openAlerts: alerts, disk: disk, backlog: backlog,
            vaultLagSeconds: vaultLagSeconds)
    }
}
