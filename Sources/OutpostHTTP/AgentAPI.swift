import Foundation

/// The agent's routes on the relay (issue 12; docs/protocol.md §Agents): the plan a machine's agent follows, and
/// the jobs it reports. Every field added later is optional, so that agents and relays of neighbouring versions
/// understand each other.
public enum AgentAPI {
    /// `GET /v1/agent/plan?known=ETAG&wait=S`: the plan at once when it differs from `known`, else when it
    /// changes within `wait` seconds (a long poll, at most `maxWait`), else 304.
    public static let planPath = "/v1/agent/plan"
    public static let maxWait = 60
    /// The agent's headers on a plan request, recorded by the relay (its console, the missed-backup check).
    public static let timeZoneHeader = "Outpost-Agent-Time-Zone"
    public static let versionHeader = "Outpost-Agent-Version"
    public static let hostHeader = "Outpost-Agent-Host"
    /// On a commit: the job the recovery point belongs to.
    public static let jobHeader = "Outpost-Job"

    public struct Hooks: Codable, Sendable, Equatable {
        public var before: String?
        public var after: String?
        public var timeoutSeconds: Int
        public init(before: String?, after: String?, timeoutSeconds: Int) {
            self.before = before; self.after = after; self.timeoutSeconds = timeoutSeconds
        }
    }

    public struct Plan: Codable, Sendable, Equatable {
        /// The plan's tag: the agent sends it back as `known`.
        public var tag: String
        /// The machine's protection group; nil: the machine is in none, and its agent only answers `backup-now`.
        public var group: String?
        public var schedule: String?
        public var paths: [String]
        public var excludes: [String]
        public var hooks: Hooks?
        /// Jobs `relay backup-now` queued for this machine, oldest first: the agent claims each and runs it.
        public var queued: [Int64]
        public init(
            tag: String, group: String?, schedule: String?, paths: [String], excludes: [String], hooks: Hooks?, queued: [Int64]
        ) {
            self.tag = tag; self.group = group; self.schedule = schedule; self.paths = paths; self.excludes = excludes
            self.hooks = hooks; self.queued = queued
        }
    }

    /// `POST /v1/agent/jobs`: a backup starts; `claim` is a queued job's id.
    public struct JobStart: Codable, Sendable {
        public var trigger: String
        public var claim: Int64?
        public init(trigger: String, claim: Int64?) { self.trigger = trigger; self.claim = claim }
    }

    public struct JobStarted: Codable, Sendable {
        public var id: Int64
        public init(id: Int64) { self.id = id }
    }

    public struct FailedFile: Codable, Sendable, Equatable {
        public var path: String
        public var reason: String
        public init(path: String, reason: String) { self.path = path; self.reason = reason }
    }

    /// `POST /v1/agent/jobs/ID`: progress while `state` is nil, the end otherwise (completed, completed with
    /// warnings, failed, cancelled). At most `maxFailedFiles` failed files are recorded.
    public struct JobReport: Codable, Sendable {
        public var state: String?
        public var bytes: Int64
        public var files: Int
        public var detail: String?
        public var failedFiles: [FailedFile]
        public init(state: String?, bytes: Int64, files: Int, detail: String?, failedFiles: [FailedFile] = []) {
            self.state = state; self.bytes = bytes; self.files = files; self.detail = detail; self.failedFiles = failedFiles
        }
    }

    public static let maxFailedFiles = 1000
}
