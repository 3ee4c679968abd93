import Foundation
import NIOCore
import NIOHTTP1
import OutpostCore
import OutpostHTTP

/// The agent's calls to the relay (docs/protocol.md §Agents), on the machine's credential.
extension RelayClient {
    /// The plan, when it differs from `known` now or within `wait` seconds; nil when it stayed the same.
    /// `identity`: the agent's version, time zone and host name, recorded by the relay.
    public func plan(known: String?, wait: Int, identity: [(String, String)]) async throws -> AgentAPI.Plan? {
        var path = AgentAPI.planPath + "?wait=\(wait)"
        if let known { path += "&known=" + known }
        var call = PinnedHTTPClient.Call(.GET, path, timeout: .seconds(Int64(wait) + 30), maxResponse: 1 << 20)
        call.headers = identity
        let (code, _, buffer) = try await http.sendForAnswer(call)
        if code == 304 { return nil }
        if (200..<300).contains(code) { return try decodeJSON(AgentAPI.Plan.self, Array(buffer: buffer)) }
        let message = PinnedHTTPClient.message(of: Array(buffer: buffer), limit: 500)
        switch code {
        case 401: throw ClientError(.unauthorized, "the relay refused this machine: \(message)")
        case 404:
            throw ClientError(.remote, "the relay at \(base) has no agent routes (it predates `outpost agent`): upgrade the relay")
        default: throw ClientError(.remote, "the relay answered \(code) to the plan request: \(message)")
        }
    }

    /// Starts a backup job on the relay (claiming a queued one); returns its id.
    public func startJob(trigger: String, claim: Int64?) async throws -> Int64 {
        try await postJSON(AgentAPI.JobStarted.self, "/v1/agent/jobs", AgentAPI.JobStart(trigger: trigger, claim: claim)).id
    }

    /// Reports a job's progress (`report.state` nil) or its end.
    public func reportJob(_ id: Int64, _ report: AgentAPI.JobReport) async throws {
        let body = Array(try RelayAPI.encoder().encode(report))
        _ = try await call(.POST, "/v1/agent/jobs/\(id)", body: body, contentType: "application/json")
    }
}
