import Foundation
import HTTPTypes
import Hummingbird
import OutpostCore
import OutpostHTTP
import OutpostStore

/// The agent's routes (docs/protocol.md §Agents), behind the machine's credential: its plan, by long poll, and
/// the jobs it runs. A machine sees and reports only its own.
struct AgentRoutes: Sendable {
    let relay: Relay

    func addRoutes(to group: RouterGroup<RelayRequestContext>) {
        group.get(RouterPath(AgentAPI.planPath), use: plan)
        group.post("/v1/agent/jobs", use: start)
        group.post("/v1/agent/jobs/:id", use: report)
    }

    static let timeZoneField = HTTPField.Name(AgentAPI.timeZoneHeader)!
    static let versionField = HTTPField.Name(AgentAPI.versionHeader)!
    static let hostField = HTTPField.Name(AgentAPI.hostHeader)!

    /// The plan when it differs from the one the agent knows, at once or as soon as it changes within the wait
    /// (checked twice a second: a change made by another process, `relay group edit` or `relay backup-now`,
    /// reaches the agent within that); 304 when the wait ends with no change.
    @Sendable func plan(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        let known = request.uri.queryParameters.get("known")
        let wait =
            try request.uri.queryParameters.get("wait").map { text in
                guard let w = Int(text), (0...AgentAPI.maxWait).contains(w) else {
                    throw HTTPFailure(.badRequest, "wait=\(text) is not a number of seconds from 0 to \(AgentAPI.maxWait)")
                }
                return w
            } ?? 0
        let desk = AgentDesk(store: relay.store, clock: relay.clock)
        if let zone = request.headers[Self.timeZoneField] {
            let version = request.headers[Self.versionField] ?? "?"
            let host = request.headers[Self.hostField] ?? "?"
            guard TimeZone(identifier: zone) != nil else {
                throw HTTPFailure(
                    .badRequest, "the \(AgentAPI.timeZoneHeader) header \(zone.debugDescription) is not a time zone (like Europe/Amsterdam)")
            }
            try await relay.offload {
                try desk.seen(machine: machine.name, version: String(version.prefix(64)), timeZone: zone, hostname: String(host.prefix(255)))
            }
        }
        let until = ContinuousClock.now + .seconds(wait)
        while true {
            let plan = try await relay.offload { try desk.plan(machine: machine.name) }
            if plan.tag != known { return try .json(plan) }
            if ContinuousClock.now >= until { return Response(status: .notModified) }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    @Sendable func start(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        let body = try await relay.limits.body.collect(request.body, upTo: 64 << 10, what: "job start")
        let start = try decode(AgentAPI.JobStart.self, body)
        guard ["schedule", "now", "manual"].contains(start.trigger) else {
            throw HTTPFailure(.badRequest, "a job's trigger is schedule, now or manual, not \(start.trigger.debugDescription)")
        }
        let relay = self.relay
        let id = try await Self.mapped {
            try await relay.offload {
                let now = relay.clock.now()
                return try JobLog(store: relay.store).begin(
                    .backup, machine: machine.name, trigger: start.trigger, claiming: start.claim,
                    deadline: now.addingTimeInterval(Double(relay.configuration.backupDeadlineHours) * 3600), now: now)
            }
        }
        return try .json(AgentAPI.JobStarted(id: id), status: .created)
    }

    @Sendable func report(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        guard let id = context.parameters.get("id").flatMap({ Int64($0) }) else { throw HTTPFailure(.badRequest, "a job id is a number") }
        let body = try await relay.limits.body.collect(request.body, upTo: 4 << 20, what: "job report")
        let r = try decode(AgentAPI.JobReport.self, body)
        guard r.bytes >= 0, r.files >= 0 else { throw HTTPFailure(.badRequest, "a job report's bytes and files are counts, not negative") }
        let state = try r.state.map { text in
            guard let s = Job.State(rawValue: text), ![.queued, .running, .missed].contains(s) else {
                throw HTTPFailure(.badRequest, "a job ends completed, completed with warnings, failed or cancelled, not \(text.debugDescription)")
            }
            return s
        }
        let relay = self.relay
        try await Self.mapped {
            try await relay.offload {
                let log = JobLog(store: relay.store)
                let detail = r.detail.map { String($0.prefix(8192)) }
                if let state {
                    try log.end(
                        id, machine: machine.name, state, bytes: r.bytes, files: r.files, detail: detail,
                        failedFiles: r.failedFiles.prefix(AgentAPI.maxFailedFiles).map { Job.FailedFile(path: $0.path, reason: $0.reason) },
                        now: relay.clock.now())
                } else {
                    try log.report(id, machine: machine.name, bytes: r.bytes, files: r.files, detail: detail, now: relay.clock.now())
                }
            }
        }
        return Response(status: .noContent)
    }

    /// The job log's refusals as the client's mistakes: another machine's or an unknown job (404), a job claimed
    /// or ended already (409), a state a job cannot end in (400).
    static func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as OutpostError where [.notFound, .conflict, .invalid].contains(e.code) {
            throw HTTPFailure(e)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ buffer: ByteBuffer) throws -> T {
        do { return try RelayAPI.decoder().decode(type, from: Data(buffer.readableBytesView)) } catch {
            throw HTTPFailure(.badRequest, "the request body is not a valid \(T.self): \(error)")
        }
    }
}
