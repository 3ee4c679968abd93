import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// What a prune decides, machine by machine and point by point, for `outpost relay prune` (text and `--json`)
/// and the daily prune of `relay serve`.
public struct PrunePlan: Sendable, Encodable {
    public var now: Date
    /// False: the relay forwards nowhere, so it prunes by the relay rules alone.
    public var vaultRegistered: Bool
    /// `--force`: points leave the relay even before they are forwarded.
    public var force: Bool
    public var machines: [MachinePrune]
    /// Set once the plan was applied to the relay's catalog.
    public var applied = false
    /// Set once the vault tier was applied in the vault (`VaultRetention`, run by the command after the relay tier).
    public var vaultApplied = false
    /// What happened in the vault, in a line (set by the command that applied it, or why it was not).
    public var vaultTier = "not applied"
    /// The points of the vault tier that expire: deleted in the vault when the plan is applied there.
    public var expiring: [(machine: String, id: BlobID)] {
        machines.flatMap { m in m.points.filter { $0.vault.action == "expires" }.compactMap { p in BlobID(hex: p.id).map { (m.machine, $0) } } }
    }

    public struct MachinePrune: Sendable, Encodable {
        public var machine: String
        public var policy: EffectiveRetention
        public var points: [PointPrune]
    }

    public struct PointPrune: Sendable, Encodable {
        public var id: String
        public var finishedAt: Date
        public var keepUntil: Date?
        /// The forwarding ledger's state (pending, forwarding, forwarded, failed); nil without a vault.
        public var forwarding: String?
        public var relay: Verdict
        public var vault: Verdict
    }

    /// An action and why: relay `stays` / `leaves` / `pruned earlier`; vault `keeps` / `expires` /
    /// `expired` (earlier) / `not forwarded yet` / `no vault`.
    public struct Verdict: Sendable, Encodable, Equatable {
        public var action: String
        public var reasons: [String]
    }

    /// The points that leave the relay.
    public var leaving: [(machine: String, point: PointPrune)] {
        machines.flatMap { m in m.points.filter { $0.relay.action == "leaves" }.map { (m.machine, $0) } }
    }

    public func count(relay action: String) -> Int { machines.reduce(0) { $0 + $1.points.count { $0.relay.action == action } } }
    public func count(vault action: String) -> Int { machines.reduce(0) { $0 + $1.points.count { $0.vault.action == action } } }
    /// Points that the relay rules let go but that stay because they are not forwarded yet.
    public var waitingForForwarding: Int {
        machines.reduce(0) { $0 + $1.points.count { $0.relay.action == "stays" && $0.relay.reasons.first?.hasPrefix("not forwarded yet") == true } }
    }
}

/// Applies the relay tier of each machine's effective retention policy to the relay's catalog, and decides the
/// vault tier for the report. A point leaves the relay when no relay rule keeps it, it is not kept until a later
/// date, it is not the machine's newest, and (when the relay forwards to a vault) it has been forwarded, unless
/// `force`. Leaving is forgetting: the catalog row goes (a forwarded point is remembered in `pruned_points`,
/// since the vault still holds it); the data goes at the next gc.
public struct RelayPruner: Sendable {
    let store: Store
    let settings: RetentionSettings
    /// relay.toml's `[retention]`.
    let file: RetentionPolicy
    let timeZone: TimeZone

    public init(store: Store, file: RetentionPolicy, timeZone: TimeZone = .current) {
        self.store = store
        self.settings = RetentionSettings(store: store)
        self.file = file
        self.timeZone = timeZone
    }

    /// Decides, changing nothing. `forwarding`: each point's ledger state (a point missing is pending), or nil
    /// when the relay is registered with no vault.
    public func plan(machine: String? = nil, forwarding: [BlobID: String]?, force: Bool = false, now: Date = Date()) throws -> PrunePlan {
        let known = try store.index.machines()
        if let machine, !known.contains(machine) {
            throw StoreError(.notFound, "no machine named \(machine) is known to this relay; list them with `outpost relay machines`")
        }
        var plan = PrunePlan(now: now, vaultRegistered: forwarding != nil, force: force, machines: [])
        for name in machine.map({ [$0] }) ?? known {
            let policy = try settings.effective(machine: name, file: file)
            do { try policy.policy.validate() } catch let e as OutpostError {
                throw OutpostError(
                    e.code,
                    "\(e.message) in the effective retention policy of machine \(name); fix it with `outpost relay retention` or in relay.toml")
            }
            let points = try store.index.points(machine: name)
            let earlier = try pruned(machine: name).filter { p in !points.contains { $0.id == p.id } }
            if points.isEmpty && earlier.isEmpty { continue }
            plan.machines.append(
                PrunePlan.MachinePrune(
                    machine: name, policy: policy,
                    points: decide(points, earlier: earlier, policy: policy.policy, forwarding: forwarding, force: force, now: now)))
        }
        return plan
    }

    func decide(
        _ points: [RecoveryPointInfo], earlier: [RecoveryPointInfo], policy: RetentionPolicy, forwarding: [BlobID: String]?, force: Bool,
        now: Date
    ) -> [PrunePlan.PointPrune] {
        func candidate(_ p: RecoveryPointInfo) -> RetentionCandidate {
            RetentionCandidate(id: p.id.hex, finishedAt: p.point.finishedAt, keepUntil: p.point.keepUntil)
        }
        let relay = policy.relayTier(points.map(candidate), now: now)
        // The vault tier over what the vault holds: forwarded points, and those pruned from the relay earlier.
        let state = { (p: RecoveryPointInfo) in forwarding.map { $0[p.id] ?? "pending" } }
        let inVault = points.filter { state($0) == "forwarded" } + (forwarding == nil ? [] : earlier)
        let vault = Dictionary(
            uniqueKeysWithValues: policy.vaultTier(inVault.map(candidate), now: now, timeZone: timeZone).map { ($0.id, $0) })
        func vaultVerdict(_ p: RecoveryPointInfo) -> PrunePlan.Verdict {
            guard forwarding != nil else { return .init(action: "no vault", reasons: []) }
            if state(p) == "expired" { return .init(action: "expired", reasons: ["deleted from the vault by its retention earlier"]) }
            guard let d = vault[p.id.hex] else { return .init(action: "not forwarded yet", reasons: []) }
            return d.isKept
                ? .init(action: "keeps", reasons: d.keptBy.map(\.description)) : .init(action: "expires", reasons: expiry(policy, vault: true))
        }
        var out: [PrunePlan.PointPrune] = []
        for (p, d) in zip(points, relay) {
            let verdict: PrunePlan.Verdict
            let st = state(p)
            if d.isKept {
                verdict = .init(action: "stays", reasons: d.keptBy.map(\.description))
            } else if let st, st != "forwarded", st != "expired", !force {
                verdict = .init(action: "stays", reasons: ["not forwarded yet (\(st)); it leaves once the vault has it"])
            } else {
                var why = expiry(policy, vault: false)
                if let st, st != "forwarded", st != "expired" { why.append("not forwarded yet (\(st)), removed anyway (--force)") }
                verdict = .init(action: "leaves", reasons: why)
            }
            out.append(
                .init(
                    id: p.id.hex, finishedAt: p.point.finishedAt, keepUntil: p.point.keepUntil, forwarding: st, relay: verdict, vault: vaultVerdict(p)
                ))
        }
        for p in earlier {
            out.append(
                .init(
                    id: p.id.hex, finishedAt: p.point.finishedAt, keepUntil: p.point.keepUntil, forwarding: "forwarded",
                    relay: .init(action: "pruned earlier", reasons: []), vault: vaultVerdict(p)))
        }
        return out.sorted { $0.finishedAt != $1.finishedAt ? $0.finishedAt < $1.finishedAt : $0.id < $1.id }
    }

    /// Why no rule of a tier keeps a point.
    func expiry(_ policy: RetentionPolicy, vault: Bool) -> [String] {
        if vault {
            let rules: [(String, Int?)] = [
                ("days", policy.vaultDaily), ("weeks", policy.vaultWeekly), ("months", policy.vaultMonthly), ("years", policy.vaultYearly),
            ]
            let kinds = rules.compactMap { kind, n in n.map { "the last \($0) \(kind)" } }
            return ["not the newest of its period in \(kinds.joined(separator: ", "))"]
        }
        var why: [String] = []
        if let d = policy.relayDays { why.append("older than \(d) days (relay_days)") }
        if let n = policy.relayLast { why.append("not among the newest \(n) (relay_last)") }
        return why
    }

    /// Recovery points pruned from the relay earlier that the vault still holds.
    func pruned(machine: String) throws -> [RecoveryPointInfo] {
        try PrunedPoints(store: store).list(machine: machine).map(\.info)
    }

    /// Removes the points that leave from the relay's catalog, in one transaction (a prune killed midway
    /// removed nothing, and the next one decides again). A forwarded point is remembered in `pruned_points`.
    @discardableResult
    public func apply(_ plan: PrunePlan) throws -> PrunePlan {
        var done = plan
        let leaving = plan.leaving
        guard !leaving.isEmpty else { done.applied = true; return done }
        try store.index.write("pruning \(leaving.count) recovery points") { db in
            for (_, p) in leaving {
                guard let id = BlobID(hex: p.id) else { continue }
                if p.forwarding == "forwarded" {
                    try db.execute(
                        sql: """
                            INSERT OR REPLACE INTO pruned_points (point_id, machine, finished_at, record, pruned_at)
                            SELECT r.id, m.name, r.finished_at, r.record, ? FROM recovery_points r JOIN machines m ON m.id = r.machine_id
                            WHERE r.id = ?
                            """, arguments: [plan.now.timeIntervalSince1970, id.data])
                }
                try db.execute(sql: "DELETE FROM recovery_points WHERE id = ?", arguments: [id.data])
            }
        }
        done.applied = true
        return done
    }
}
