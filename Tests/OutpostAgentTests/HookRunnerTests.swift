import Foundation
import Synchronization
import Testing

@testable import OutpostAgent

#if canImport(Glibc)
    import Glibc
#endif

/// A group's hooks as the agent runs them: the exit status, the tail of the output, the environment, and a
/// time-out that stops the hook and everything it started.
@Suite struct HookRunnerTests {
    /// Whether a process is gone or going: no such process, a zombie its new parent has not reaped, or one
    /// exiting (PF_EXITING in /proc's flags, set before it closes its files: the hook's output ended once it did).
    static func isGone(_ pid: pid_t) -> Bool {
        if kill(pid, 0) != 0 && errno == ESRCH { return true }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let name = stat.lastIndex(of: ")") else {
            return true
        }
        // After the name: state, ppid, pgrp, session, tty_nr, tpgid, flags.
        let fields = stat[stat.index(after: name)...].split(separator: " ")
        guard fields.count > 6, let flags = UInt32(fields[6]) else { return false }
        return fields[0] == "Z" || fields[0] == "X" || flags & 0x4 != 0
    }

    /// The signals the hook's shell blocks and ignores (`/proc/$$/status`), as hex masks.
    static let signalProbe = "grep -E '^Sig(Blk|Ign):' /proc/$$/status | tr -d ' \\t'"

    /// Signal `n`'s bit in a /proc mask.
    static func has(_ mask: String, _ n: Int32) -> Bool { (UInt64(mask, radix: 16) ?? 0) & (1 << UInt64(n - 1)) != 0 }

    @Test func theExitStatusIsTheHooks() async throws {
        let ok = try await HookRunner().run("true", timeout: 30, environment: [:])
        #expect(ok.status == 0 && ok.succeeded)
        let three = try await HookRunner().run("exit 3", timeout: 30, environment: [:])
        #expect(three.status == 3 && !three.succeeded)
        let signalled = try await HookRunner().run("kill -KILL $$", timeout: 30, environment: [:])
        #expect(signalled.status == 128 + SIGKILL && !signalled.succeeded, "killed by a signal: 128 + its number, as the shell says")
    }

    @Test func stdoutAndStderrAreKeptTogether() async throws {
        let o = try await HookRunner().run("echo out; echo err >&2", timeout: 30, environment: [:])
        #expect(o.output == "out\nerr\n")
    }

    @Test func onlyTheLastKeepBytesOfTheOutputAreKept() async throws {
        var runner = HookRunner()
        runner.keep = 100
        let o = try await runner.run("head -c 300000 /dev/zero | tr '\\0' a; echo the-end >&2", timeout: 30, environment: [:])
        #expect(o.status == 0)
        #expect(o.output.utf8.count == 100)
        #expect(o.output == String(repeating: "a", count: 92) + "the-end\n")
    }

    @Test func theEnvironmentIsTheAgentsWithTheJobsOnTop() async throws {
        let o = try await HookRunner().run(
            "printf '%s|%s|%s' \"$OUTPOST_JOB\" \"$OUTPOST_PHASE\" \"${PATH:+has-path}\"", timeout: 30,
            environment: ["OUTPOST_JOB": "42", "OUTPOST_PHASE": "before"])
        #expect(o.output == "42|before|has-path")
        setenv("OUTPOST_HOOK_TEST_VALUE", "agent's", 1)
        defer { unsetenv("OUTPOST_HOOK_TEST_VALUE") }
        let over = try await HookRunner().run(
            "printf '%s' \"$OUTPOST_HOOK_TEST_VALUE\"", timeout: 30, environment: ["OUTPOST_HOOK_TEST_VALUE": "job's"])
        #expect(over.output == "job's", "the job's value wins")
    }

    @Test func theHookReadsNothingFromStandardInput() async throws {
        let o = try await HookRunner().run("cat; echo done", timeout: 30, environment: [:])
        #expect(o.status == 0 && o.output == "done\n", "stdin is /dev/null: a hook that reads it does not hang")
    }

    /// The time-out stops the shell and what it started in the background (their pids printed first).
    @Test func aTimeOutKillsTheHookAndEverythingItStarted() async throws {
        let o = try await HookRunner().run("sleep 100 & echo $!; sleep 100 & echo $!; wait", timeout: 0.5, environment: [:])
        #expect(o.status == nil && !o.succeeded, "timed out")
        #expect(o.seconds >= 0.5 && o.seconds < 60, "\(o.seconds) s")
        let pids = o.output.split(separator: "\n").compactMap { pid_t($0) }
        #expect(pids.count == 2, "\(o.output)")
        #expect(!Self.isGone(getpid()), "the check sees a live process")
        for pid in pids { #expect(Self.isGone(pid), "background child \(pid) of the hook still runs") }
    }

    /// A hook that ignores SIGTERM (and its children, which inherit that) is killed 5 s later.
    @Test func aHookIgnoringTheTimeOutsSIGTERMIsKilled() async throws {
        let o = try await HookRunner().run("trap '' TERM; sleep 100 & echo $!; wait", timeout: 0.2, environment: [:])
        #expect(o.status == nil)
        #expect(o.seconds >= 5 && o.seconds < 120, "\(o.seconds) s")
        let pids = o.output.split(separator: "\n").compactMap { pid_t($0) }
        #expect(pids.count == 1, "\(o.output)")
        for pid in pids { #expect(Self.isGone(pid), "background child \(pid) of the hook still runs") }
    }

    /// The agent's threads block every signal (libdispatch's workers, which run Swift's tasks on Linux), and a
    /// signal mask is inherited through exec: the hook must start with none blocked, or the time-out's SIGTERM
    /// (and `timeout`, `kill` in the hook's own script) would not reach it.
    @Test func aHookStartsWithNoSignalBlockedThoughItsSpawningThreadBlocksAll() async throws {
        let executor = SignalsBlockedExecutor()
        defer { executor.stop() }
        let o = try await withTaskExecutorPreference(executor) {
            try await HookRunner().run(Self.signalProbe, timeout: 30, environment: [:])
        }
        let masks = Dictionary(
            o.output.split(separator: "\n").map { line in
                let kv = line.split(separator: ":", maxSplits: 1).map(String.init)
                return (kv[0], kv.count > 1 ? kv[1] : "")
            }, uniquingKeysWith: { a, _ in a })
        #expect(masks["SigBlk"].flatMap { UInt64($0, radix: 16) } == 0, "\(o.output)")
        #expect(masks["SigIgn"].map { !Self.has($0, SIGTERM) } == true, "\(o.output)")

        let stopped = try await withTaskExecutorPreference(executor) {
            try await HookRunner().run("sleep 100 & echo $!; wait", timeout: 0.3, environment: [:])
        }
        #expect(stopped.status == nil && stopped.seconds < 5, "SIGTERM stops it, without waiting for SIGKILL: \(stopped.seconds) s")
    }
}

/// An executor whose one thread blocks every signal, as the agent's threads do: what the hook inherits from the
/// thread that spawns it is then known.
final class SignalsBlockedExecutor: TaskExecutor, Sendable {
    private let jobs = Mutex<[UnownedJob]>([])
    private let ready = DispatchSemaphore(value: 0)

    init() {
        Thread.detachNewThread { [self] in
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            while true {
                ready.wait()
                // A wake with nothing queued is `stop`.
                guard let job = jobs.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { return }
                job.runSynchronously(on: asUnownedTaskExecutor())
            }
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        ready.signal()
    }

    /// Ends the thread once the jobs queued so far ran.
    func stop() {
        ready.signal()
    }
}
