import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Logging
import OutpostCore
import OutpostHTTP
import OutpostObjects
import OutpostTLS
import OutpostVault
import ServiceLifecycle
import Synchronization

/// The vault's fleet view (issue 13): one read-only page of every registered relay, on a listener of its own
/// (`console_listen`), with the vault's certificate, behind the vault's administrators (`VaultAdmins`). It lives
/// in OutpostConsole, beside the relay's console, to share its login, sessions, CSRF, limiter, headers and
/// layout; OutpostConsole depends on OutpostVault, never the reverse, and the vault server knows nothing of it.
public struct VaultConsoleServer: Sendable {
    let vault: VaultServer
    let accounts: VaultAdmins
    let pages: ConsolePages
    let logger: Logger
    let limiter = LoginLimiter()
    let usage: ContainerUsage
    let clock: @Sendable () -> Date

    public init(vault: VaultServer, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }) throws {
        self.vault = vault
        self.logger = logger
        self.clock = clock
        accounts = VaultAdmins(objects: vault.objects, clock: clock)
        usage = ContainerUsage(objects: vault.objects)
        pages = ConsolePages(library: try ConsoleTemplates.library(), site: "vault " + vault.settings.name, nav: [("/", "Fleet")])
    }

    /// The console as a service of `vault serve`: HTTPS with the vault's certificate.
    public func service(host: String, port: Int, onListening: @escaping @Sendable (Int) -> Void) throws -> some Service {
        Application(
            router: buildRouter(), server: try .tls(.http1(), tlsConfiguration: try vault.identity.serverConfiguration()),
            configuration: .init(address: .hostname(host, port: port), serverName: "outpost-vault-console"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
    }

    public func buildRouter() -> Router<ConsoleContext> {
        let router = Router(context: ConsoleContext.self)
        router.add(middleware: ConsoleHeaders())
        let admin = router.group().add(middleware: SessionMiddleware(accounts: accounts))
        ConsoleLogin(
            accounts: accounts, limiter: limiter, pages: pages, logger: logger, linkCommand: "outpost vault admin link NAME",
            offload: { body in try await ConsoleThread.run(body) }
        ).add(to: router, sessions: admin)
        admin.get("/", use: fleet)
        return router
    }

    /// A relay without contact for this long is shown late (it sends a status record every 5 minutes).
    static let silence: TimeInterval = 15 * 60

    @Sendable func fleet(_ request: Request, context: ConsoleContext) async throws -> Response {
        let vault = self.vault, usage = self.usage, now = clock()
        let data = try await ConsoleThread.run { () -> PageData in
            let relays = try vault.registry.allRelays()
            let status = try RelayStatusStore(objects: vault.objects).all()
            // The soft-delete period and immutability every node shares (on S3 they are in the registry).
            let policy = vault.registry.policy(default: vault.settings)
            var values = try Self.fleetValues(
                relays: relays, status: status, usage: { usage.bytes(relay: $0, now: now) }, policy: policy, now: now)
            values.merge(Self.replicaValues(vault.replica?.status, now: now)) { $1 }
            return PageData(values)
        }
        return pages.page("Fleet", "fleet", data.values, context: context)
    }

    /// The page's values: active relays by name, then the removed ones (soft-deleted containers) with their purge date.
    static func fleetValues(
        relays: [VaultRegistry.Relay], status: [String: RelayStatusStore.Stored], usage: (String) throws -> Int64?, policy: VaultPolicy,
        now: Date
    ) rethrows -> [String: Any] {
        var rows: [[String: Any]] = [], removed: [[String: Any]] = []
        var machines = 0, late = 0, alerts = 0
        for r in relays.sorted(by: { ($0.name, $0.id) < ($1.name, $1.id) }) {
            let name = RelayName.printable(r.name)
            if let at = r.removedAt {
                let purge = at.addingTimeInterval(Double(policy.softDeleteDays) * 86400)
                removed.append([
                    "name": name, "id": r.id, "removedAt": time(at),
                    "purge": policy.immutable ? "kept: the vault is immutable" : (purge < now ? "purged " : "") + time(purge),
                    "space": try usage(r.id).map(ConsoleFormat.bytes) ?? "counting…",
                ])
                continue
            }
            var row: [String: Any] = [
                "name": name, "id": r.id, "registered": time(r.registeredAt), "space": try usage(r.id).map(ConsoleFormat.bytes) ?? "counting…",
                "contact": "never", "lag": "-", "machines": "-", "alerts": "-", "disk": "-", "version": "-", "class": "late",
            ]
            if let s = status[r.id] {
                let rec = s.record
                let lateMachines = rec.machines.count { $0.lateAfter < now }
                let open = rec.openAlerts.values.reduce(0, +)
                machines += rec.machineCount
                late += lateMachines
                alerts += open
                let silent = now.timeIntervalSince(s.receivedAt) > silence
                row["contact"] = time(s.receivedAt) + " (" + duration(now.timeIntervalSince(s.receivedAt)) + " ago)"
                row["lag"] =
                    duration(Double(rec.vaultLagSeconds))
                    + (rec.backlog.points > 0 ? "; \(rec.backlog.points) points, \(ConsoleFormat.bytes(rec.backlog.bytes)) waiting" : "")
                row["machines"] =
                    "\(rec.machineCount) machine\(rec.machineCount == 1 ? "" : "s")" + (lateMachines > 0 ? ", \(lateMachines) late" : "")
                row["alerts"] =
                    open == 0 ? "none" : rec.openAlerts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                row["disk"] = "\(ConsoleFormat.bytes(rec.disk.usedBytes)) used, \(ConsoleFormat.bytes(rec.disk.freeBytes)) free"
                row["version"] = rec.relayVersion
                row["class"] = silent || lateMachines > 0 || open > 0 ? "late" : "ok"
            }
            rows.append(row)
        }
        return [
            "relays": rows, "removed": removed, "hasRemoved": !removed.isEmpty, "active": rows.count, "machines": machines, "late": late,
            "alerts": alerts, "now": time(now),
        ]
    }

    /// GRS: how far the secondary copy set is behind (docs/vault.md §3.1), from the node's last round; nothing
    /// on an LRS vault.
    static func replicaValues(_ status: ReplicaMonitor.Status?, now: Date) -> [String: Any] {
        guard let status else { return ["hasReplica": false] }
        let text: String
        var behind = status.failure != nil
        if let failure = status.failure {
            text = "not read at the last round: \(failure)"
        } else if status.checkedAt == nil {
            text = "not read yet"
        } else if status.backlog.objects == 0 {
            text = "up to date"
        } else {
            let lag = status.lagSeconds(now: now)
            behind = lag > ReplicaMonitor.warnAfter
            text = "\(status.backlog.objects) writes pending, \(duration(lag)) behind"
        }
        return ["hasReplica": true, "replica": text, "replicaClass": behind ? "late" : "ok"]
    }

    static func time(_ d: Date) -> String { ConsoleFormat.time(d) }

    /// "45 s", "12 min", "3 h 20 min", "2 d 4 h".
    static func duration(_ seconds: Double) -> String {
        // Clamped before the conversion, which traps beyond Int's range (and on NaN).
        let s = seconds.isNaN ? 0 : Int(min(max(seconds, 0), 1e12))
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min" }
        if s < 86400 { return "\(s / 3600) h \(s % 3600 / 60) min" }
        return "\(s / 86400) d \(s % 86400 / 3600) h"
    }
}

/// The bytes in each relay's container, summed from a listing and kept 10 minutes per node: on S3 a listing is a
/// request per 1000 objects. Counted on one thread of its own, one container after the other, never inside a page
/// request: a page shows the last count (however old) and asks for a new one when it is older than `lifetime`,
/// so page views stay fast and many views at once list each container once.
final class ContainerUsage: Sendable {
    static let lifetime: TimeInterval = 600
    let objects: any ObjectStore
    private struct State {
        var counted: [String: (bytes: Int64, at: Date)] = [:]
        var wanted: Set<String> = []
        var counting = false
    }
    private let state = Mutex(State())

    init(objects: any ObjectStore) { self.objects = objects }

    /// The last count, nil before the first; a count older than `lifetime` (or none) is asked for.
    func bytes(relay: String, now: Date) -> Int64? {
        let (last, start) = state.withLock { s -> ((bytes: Int64, at: Date)?, Bool) in
            let last = s.counted[relay]
            guard last.map({ now.timeIntervalSince($0.at) >= Self.lifetime }) ?? true else { return (last, false) }
            s.wanted.insert(relay)
            defer { s.counting = true }
            return (last, !s.counting)
        }
        if start { Thread { self.countWanted() }.start() }
        return last?.bytes
    }

    /// Counts what was asked for until nothing is; a listing that fails leaves the old count.
    private func countWanted() {
        while let relay = state.withLock({ s -> String? in
            guard let r = s.wanted.popFirst() else {
                s.counting = false
                return nil
            }
            return r
        }) {
            guard let listed = try? objects.list(prefix: "containers/\(relay)/") else { continue }
            let sum = listed.reduce(Int64(0)) { $0 + Int64($1.size) }
            state.withLock { $0.counted[relay] = (sum, Date()) }
        }
    }
}

/// How both consoles write times and sizes.
enum ConsoleFormat {
    static func time(_ d: Date?) -> String {
        guard let d else { return "-" }
        return d.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon))
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}
