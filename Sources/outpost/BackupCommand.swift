import ArgumentParser
import Foundation
import OutpostArchive
import OutpostClient
import OutpostCore
import OutpostHTTP
import OutpostStore
import Synchronization

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up files and folders into a new recovery point.",
        discussion: "Exit 0: done. Exit 3: the recovery point was committed, but some files could not be read (listed on stderr)."
    )
    @OptionGroup var target: TargetOptions
    @Option(help: "Name of the protected machine the recovery point belongs to (with --store; a relay knows it from the enrollment).") var machine:
        String?
    @Option(
        name: .customLong("exclude"),
        help: ArgumentHelp(
            "Skip entries matching this glob (repeatable). With a '/', the pattern matches the whole path; without, any entry's name.",
            valueName: "glob"))
    var excludes: [String] = []
    @Flag(help: "Print the result as JSON on stdout.") var json = false
    @Option(help: "Files read at once (default: cores + 1 locally, 3 × cores to a relay). Fewer leave more of the machine to other work.")
    var workers: Int?
    @Option(
        help: ArgumentHelp(
            "Keep this recovery point on the relay and in the vault until the end of this day (local time), whatever the retention policy.",
            valueName: "YYYY-MM-DD"))
    var keepUntil: String?
    @Argument(help: "Files and folders to protect.") var paths: [String] = []
    @Flag(help: "Back up standard input as one file (e.g. `pg_dump db | outpost backup --stdin --stdin-name db.sql`).") var stdin = false
    @Option(help: "The file name standard input is stored under (with --stdin).") var stdinName: String?

    func validate() throws {
        if stdin {
            if !paths.isEmpty { throw ValidationError("--stdin backs up standard input alone: leave out the paths") }
            guard let stdinName else { throw ValidationError("--stdin needs --stdin-name NAME, the file name it is stored under") }
            if let problem = StreamArchiver.problem(stdinName) { throw ValidationError(problem) }
        } else if stdinName != nil {
            throw ValidationError("--stdin-name goes with --stdin")
        }
        if paths.isEmpty && !stdin { throw ValidationError("name at least one file or folder to back up") }
        if let workers, !(1...256).contains(workers) { throw ValidationError("--workers must be 1 to 256") }
        if target.store != nil && machine == nil { throw ValidationError("--machine is required with --store: name the protected machine") }
        if let machine { try validateMachineName(machine) }
    }

    func run() async throws {
        // Refused before anything is read: a date in the past would protect nothing.
        let keep = try keepUntil.map { try RetentionPolicy.keepUntil($0) }
        // A store that a relay serves is written through the relay only.
        let serving = try target.store.map { try ServingLock(store: $0, role: .localWriter) }
        defer { withExtendedLifetime(serving) {} }
        try await withAccess(target, purpose: "`outpost backup`") { access in try await run(access, keepUntil: keep) }
    }

    func run(_ access: Access, keepUntil: Date?) async throws {
        let name = access.remoteMachine ?? machine!
        if let machine, let remote = access.remoteMachine, machine != remote {
            throw ValidationError("this machine is enrolled as \(remote); --machine \(machine) does not match (leave it out)")
        }
        if stdin, let stdinName {
            let result = try await StreamArchiver(
                repository: access.repository, machine: name, hostname: ProcessInfo.processInfo.hostName, name: stdinName, keepUntil: keepUntil
            ).run()
            try report(result, machine: name)
            return
        }
        var options = BackupOptions(machine: name, paths: paths, exclusions: ExclusionList(excludes))
        // Over the network, more files in flight hide the round trips (each worker waits on its uploads).
        if access.remoteMachine != nil { options.workers = ProcessInfo.processInfo.activeProcessorCount * 3 }
        if let workers { options.workers = workers }
        options.keepUntil = keepUntil
        // To a relay, the backup is a job of the relay's (trigger `manual`) that ends with the files that failed; a
        // relay without agent routes records the commit alone, as before.
        var job: Int64?
        if case .remote(let r) = access {
            job = try? await r.client.startJob(trigger: "manual", claim: nil)
            if let job { r.job.store(job, ordering: .relaxed) }
        }
        let archiver = Archiver(repository: access.repository, options: options)
        let ticker = ProgressTicker { [archiver] elapsed in
            let files = archiver.progress.files.load(ordering: .relaxed)
            let read = archiver.progress.bytesRead.load(ordering: .relaxed)
            let rate = elapsed > 0 ? Double(read) / elapsed : 0
            return "\(files) files, \(formatBytes(read)) read, \(formatBytes(Int64(rate)))/s"
        }
        let result: BackupResult
        do {
            result = try await archiver.run()
            ticker.stop()
        } catch {
            ticker.stop()
            if case .local(let store) = access { store.discardOpenPack() }
            if case .remote(let r) = access, let job {
                try? await r.client.reportJob(job, AgentAPI.JobReport(state: "failed", bytes: 0, files: 0, detail: "the backup failed: \(error)"))
            }
            throw error
        }
        if case .remote(let r) = access, let job {
            let s = result.point.point.summary
            let failures = result.failures.prefix(AgentAPI.maxFailedFiles).map { AgentAPI.FailedFile(path: $0.path, reason: $0.reason) }
            try? await r.client.reportJob(
                job,
                AgentAPI.JobReport(
                    state: failures.isEmpty ? "completed" : "completed with warnings", bytes: s.bytesRead,
                    files: s.filesNew + s.filesChanged + s.filesUnchanged,
                    detail: "recovery point \(result.point.id.shortHex)"
                        + (failures.isEmpty
                            ? "" : "; \(result.failures.count) \(result.failures.count == 1 ? "entry" : "entries") could not be backed up"),
                    failedFiles: Array(failures)))
        }
        try report(result, machine: name)
        if let keepUntil {
            // A relay older than retention decodes the record without the key and stores it without it.
            if let kept = result.point.point.keepUntil {
                printErr("recovery point \(result.point.id.shortHex) is kept until \(kept.formatted(.iso8601)), whatever the retention policy")
            } else {
                printErr(
                    "warning: the relay did not record --keep-until \(keepUntil.formatted(.iso8601)) (it predates retention); upgrade the relay, or retention may remove this recovery point before then"
                )
            }
        }
        if !result.failures.isEmpty { throw CommandExit(code: .partialBackup) }
    }

    func report(_ result: BackupResult, machine: String) throws {
        let s = result.point.point.summary
        if json {
            struct Out: Encodable {
                var id: String, machine: String, summary: BackupSummary, failures: [FailedFile], keepUntil: Date?
            }
            try printJSON(
                Out(id: result.point.id.hex, machine: machine, summary: s, failures: result.failures, keepUntil: result.point.point.keepUntil))
        } else {
            print("recovery point \(result.point.id.shortHex) saved for machine \(machine)")
            print(
                "files: \(s.filesNew) new, \(s.filesChanged) changed, \(s.filesUnchanged) unchanged; \(s.directories) folders, \(s.otherEntries) other entries"
            )
            print(
                "read \(formatBytes(s.bytesRead)) of \(formatBytes(s.bytesTotal)); added \(formatBytes(s.bytesAddedRaw)) of new data, \(formatBytes(s.bytesAddedStored)) stored after dedup and compression; \(String(format: "%.1f", s.durationSeconds)) s"
            )
        }
        if !result.failures.isEmpty {
            printErr("\(result.failures.count) \(result.failures.count == 1 ? "entry" : "entries") could not be backed up:")
            for f in result.failures { printErr("  \(Terminal.escaped(f.path)): \(Terminal.escaped(f.reason))") }
        }
    }
}

func validateMachineName(_ name: String) throws {
    if let problem = MachineName.problem(name) { throw ValidationError(problem) }
}

/// Redraws one progress line on stderr while a job runs, when stderr is a terminal.
final class ProgressTicker: Sendable {
    private let task: Task<Void, Never>?

    init(_ line: @escaping @Sendable (Double) -> String) {
        guard stderrIsTTY else { task = nil; return }
        let start = ContinuousClock.now
        task = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                let elapsed = start.duration(to: .now)
                let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                FileHandle.standardError.write(Data("\r\u{1B}[K\(line(secs))".utf8))
            }
        }
    }

    func stop() {
        guard let task else { return }
        task.cancel()
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
