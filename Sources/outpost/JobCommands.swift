import ArgumentParser
import Foundation
import OutpostCore
import OutpostRelay
import OutpostStore

extension RelayCommand {
    /// `outpost relay jobs` (issue 12): what ran, and how it ended.
    struct Jobs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the relay's jobs, newest first: backups committed, forwards, prunes, gcs.",
            discussion:
                "States: running, completed, completed with warnings, failed (a job a killed relay left running is failed when it starts again).")
        @OptionGroup var relay: RelayOptions
        @Option(help: "Only this machine's jobs.") var machine: String?
        @Option(help: "Only jobs in this state (running, completed, \"completed with warnings\", failed, …).") var state: String?
        @Option(help: ArgumentHelp("Only jobs started at or after this time (YYYY-MM-DD or ISO 8601).", valueName: "time")) var since: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let wanted = try state.map { s in
                guard let st = Job.State(rawValue: s) else {
                    throw ValidationError("--state must be one of \(Job.State.allCases.map(\.rawValue).joined(separator: ", ")), not \(s)")
                }
                return st
            }
            let after = try since.map { text -> Date in
                if let d = try? Date(text, strategy: .iso8601) { return d }
                if let d = try? Date(text + "T00:00:00Z", strategy: .iso8601) { return d }
                throw ValidationError("--since takes YYYY-MM-DD or an ISO 8601 time, not \(text)")
            }
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay jobs`")
            let jobs = try JobLog(store: store).list(machine: machine, state: wanted, since: after)
            if json { try printJSON(jobs); return }
            if jobs.isEmpty { print("no jobs"); return }
            for j in jobs { print(Self.line(j)) }
        }

        static func line(_ j: Job) -> String {
            let time = j.startedAt.formatted(
                .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon))
            let took = j.endedAt.map { String(format: "%.1f s", $0.timeIntervalSince(j.startedAt)) } ?? "-"
            return
                "\(j.id)  \(time)  \(j.kind.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0))  \((j.machine ?? "-").padding(toLength: 14, withPad: " ", startingAt: 0))  \(j.state.rawValue)  \(took)  \(formatBytes(j.bytes))\(j.detail.map { "  \($0)" } ?? "")"
        }
    }

    struct JobDetail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "job", abstract: "Show one job: what it did, and the files that failed, with the reasons.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The job's id (from `outpost relay jobs`).") var id: Int64
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let job = try JobLog(store: try Store.open(at: dir.storePath, purpose: "`outpost relay job`")).job(id)
            if json { try printJSON(job); return }
            print(Jobs.line(job))
            for f in job.failedFiles { print("  failed: \(f.path): \(f.reason)") }
        }
    }
}

/// Runs a relay-host command as a job (relay jobs): recorded running, then completed, or failed with the error
/// (thrown on: the command's exit code is unchanged). The job is recorded in the relay's store at `dir`.
func asRelayJob<T>(_ kind: Job.Kind, _ dir: RelayDataDirectory, machine: String? = nil, _ body: () async throws -> T) async throws -> T {
    guard let store = try? Store.open(at: dir.storePath, purpose: "recording a job") else { return try await body() }
    return try await JobLog(store: store).run(kind, machine: machine, body)
}
