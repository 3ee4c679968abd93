import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OutpostArchive
import OutpostCore
import OutpostHTTP
import OutpostRelay
import OutpostStore

#if canImport(Glibc)
    import Glibc
#endif

/// The console's pages and actions.
struct ConsoleRoutes: Sendable {
    let server: ConsoleServer
    var relay: Relay { server.relay }
    var store: Store { server.relay.store }

    /// A state-changing request carries the session's CSRF token; refused otherwise.
    func checkCSRF(_ request: Request, _ context: ConsoleContext) async throws {
        try await ConsoleLogin.checkCSRF(request, context)
    }

    // MARK: Pages

    static func time(_ d: Date?) -> String { ConsoleFormat.time(d) }
    static func bytes(_ n: Int64) -> String { ConsoleFormat.bytes(n) }

    func jobRow(_ j: Job) -> [String: Any] {
        [
            "id": j.id, "kind": j.kind.rawValue, "machine": j.machine ?? "-", "state": j.state.rawValue, "started": Self.time(j.startedAt),
            "detail": String((j.detail ?? "").prefix(200)), "trigger": j.trigger ?? "-",
        ]
    }

    @Sendable func overview(_ request: Request, context: ConsoleContext) async throws -> Response {
        let store = self.store, clock = relay.clock
        let data = try await relay.offload { () -> PageData in
            let now = clock.now()
            let machines = try MachineCatalog(store: store).machines().filter(\.isActive)
            let members = Dictionary(try ProtectionGroups(store: store).memberships().map { ($0.machine, $0.group) }, uniquingKeysWith: { a, _ in a })
            let good = try JobLog(store: store).lastGoodBackups()
            let agents = try AgentDesk(store: store, clock: clock).contacts()
            let open = try AlertBook(store: store).open()
            let missed = Set(open.filter { $0.kind == .missedBackup }.map(\.subject))
            var s = statvfs()
            let disk = statvfs(store.layout.root, &s) == 0
            return PageData([
                "machines": machines.map { m -> [String: Any] in
                    let g = members[m.name]
                    let status = missed.contains(m.name) ? "late" : (g == nil ? "" : "ok")
                    return [
                        "name": m.name, "group": g.map { "\($0.name) (\($0.schedule))" } ?? "-", "lastGood": Self.time(good[m.name]),
                        "points": m.recoveryPoints, "agent": agents[m.name].map { "seen " + Self.time($0.lastSeen) } ?? "-", "status": status,
                    ]
                },
                "alerts": open.map { ["kind": $0.kind.rawValue, "subject": $0.subject, "message": $0.message] },
                "jobs": try JobLog(store: store).list(limit: 20).map(jobRow),
                "diskFree": disk ? Self.bytes(Int64(s.f_bavail) * Int64(s.f_frsize)) : "?",
                "diskTotal": disk ? Self.bytes(Int64(s.f_blocks) * Int64(s.f_frsize)) : "?",
                "vault": server.hooks.vaultStatus(), "now": Self.time(now),
            ])
        }
        return server.page("Overview", "overview", data.values, context: context)
    }

    @Sendable func alerts(_ request: Request, context: ConsoleContext) async throws -> Response {
        let store = self.store, now = relay.clock.now()
        let list = try await relay.offload { try AlertBook(store: store).history(since: now.addingTimeInterval(-30 * 86400)) }
        return server.page(
            "Alerts", "alerts",
            [
                "alerts": list.map {
                    [
                        "opened": Self.time($0.openedAt), "kind": $0.kind.rawValue, "subject": $0.subject, "message": $0.message,
                        "state": $0.clearedAt.map { "cleared " + Self.time($0) } ?? "open", "class": $0.clearedAt == nil ? "late" : "",
                    ]
                }
            ], context: context)
    }

    @Sendable func machine(_ request: Request, context: ConsoleContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        let page = min(max(request.uri.queryParameters.get("page").flatMap { Int($0) } ?? 1, 1), 1_000_000)
        let relay = self.relay, store = self.store, vault = server.hooks.vault != nil
        let data = try await relay.offload { () -> PageData? in
            guard try MachineCatalog(store: store).machineID(named: name) != nil else { return nil }
            let g = try ProtectionGroups(store: store).membership(of: name)?.group
            // One page of points, newest first: only its records are read, however many the machine has.
            let per = Self.pointsPerPage
            let (points, total) = try PointTiers(store: store, vault: vault).newest(machine: name, limit: per, offset: (page - 1) * per)
            var values: [String: Any] = [
                "name": name, "group": g?.name ?? "-", "schedule": g?.schedule ?? "-",
                "agent": try AgentDesk(store: store).contacts()[name].map { "\($0.hostname), \($0.timeZone), seen " + Self.time($0.lastSeen) } ?? "-",
                "points": points.map { p -> [String: Any] in
                    let s = p.info.point.summary
                    return [
                        "id": p.info.id.hex, "short": p.info.id.shortHex, "finished": Self.time(p.info.point.finishedAt), "tier": p.tier.rawValue,
                        "files": s.filesNew + s.filesChanged + s.filesUnchanged, "size": Self.bytes(s.bytesTotal),
                    ]
                },
                "jobs": try JobLog(store: store).list(machine: name, limit: 50).map(jobRow),
            ]
            values.merge(Self.pointsPage(page, shown: points.count, total: total)) { a, _ in a }
            return PageData(values)
        }
        guard let data else { throw HTTPError(.notFound, message: "no machine is named \(name)") }
        return server.page(name, "machine", data.values, context: context)
    }

    /// Recovery points a machine's page shows at once, newest first; `?page=N` shows older ones.
    static let pointsPerPage = 100

    /// The machine page's line on its points: which of them this page shows, and links to the pages around it
    /// (a page past the last links back to the last).
    static func pointsPage(_ page: Int, shown: Int, total: Int) -> [String: Any] {
        let first = (page - 1) * pointsPerPage, last = max(1, (total + pointsPerPage - 1) / pointsPerPage)
        let line =
            shown > 0 ? "\(first + 1)–\(first + shown) of \(total), newest first" : total > 0 ? "none on page \(page) (\(total) in all)" : "none"
        return [
            "pointsShown": line, "hasNewer": page > 1 && total > 0, "newerPage": min(page - 1, last),
            "hasOlder": shown > 0 && first + shown < total, "olderPage": page + 1,
        ]
    }

    @Sendable func job(_ request: Request, context: ConsoleContext) async throws -> Response {
        guard let id = context.parameters.get("id").flatMap({ Int64($0) }) else { throw HTTPError(.badRequest, message: "a job id is a number") }
        let store = self.store
        guard let j = try await relay.offload({ try? JobLog(store: store).job(id) }) else {
            throw HTTPError(.notFound, message: "no job has the id \(id)")
        }
        var data = jobRow(j)
        data["ended"] = Self.time(j.endedAt)
        data["bytes"] = Self.bytes(j.bytes)
        data["files"] = j.files
        data["detail"] = j.detail ?? ""
        data["trigger"] = j.trigger as Any
        data["point"] = j.point as Any
        data["failed"] = j.failedFiles.map { ["path": $0.path, "reason": $0.reason] }
        return server.page("Job \(id)", "job", data, context: context)
    }

    // MARK: Actions

    @Sendable func backupNow(_ request: Request, context: ConsoleContext) async throws -> Response {
        try await checkCSRF(request, context)
        let name = context.parameters.get("name") ?? ""
        let store = self.store, clock = relay.clock, minutes = relay.configuration.jobs.backupNowMinutes
        let id = try await relay.offload {
            try AgentDesk(store: store, clock: clock).backupNow(machine: name, claimWithin: Double(minutes) * 60)
        }
        server.logger.notice("console: backup now", metadata: ["admin": "\(context.session?.admin ?? "")", "machine": "\(name)", "job": "\(id)"])
        return Response(status: .seeOther, headers: [.location: "/jobs/\(id)"])
    }

    @Sendable func forwardNow(_ request: Request, context: ConsoleContext) async throws -> Response {
        try await checkCSRF(request, context)
        guard let forward = server.hooks.forwardNow else {
            throw HTTPError(.conflict, message: "this relay is not registered with a vault: there is nothing to forward to")
        }
        forward()
        server.logger.notice("console: forward now", metadata: ["admin": "\(context.session?.admin ?? "")"])
        return Response(status: .seeOther, headers: [.location: "/"])
    }

    @Sendable func check(_ request: Request, context: ConsoleContext) async throws -> Response {
        try await checkCSRF(request, context)
        let store = self.store, logger = server.logger
        // A check of the index and packs (not every chunk's data), as a job; the page shows it when it ends.
        Task.detached {
            _ = try? JobLog(store: store).run(
                .check,
                summary: { (r: CheckReport) in
                    (r.damage.isEmpty ? "no damage" : "\(r.damage.count) problems: \(r.damage.prefix(3).joined(separator: "; "))", 0)
                }
            ) {
                let report = try StoreChecker(store: store, readData: false).run()
                if !report.damage.isEmpty { throw OutpostError(.damaged, "check found damage: \(report.damage.prefix(5).joined(separator: "; "))") }
                return report
            }
            logger.notice("console: check ran")
        }
        return Response(status: .seeOther, headers: [.location: "/"])
    }
}
