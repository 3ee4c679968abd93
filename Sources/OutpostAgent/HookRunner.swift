import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a group's hook (`/bin/sh -c COMMAND`) in a process group of its own, so that a time-out kills the command
/// and everything it started. Keeps the last `keep` bytes of its output (stdout and stderr together) for the job
/// record; a chatty hook costs no memory.
struct HookRunner: Sendable {
    struct Outcome: Sendable {
        /// The exit status; nil when it was killed at its time-out.
        var status: Int32?
        var output: String
        var seconds: Double
        var succeeded: Bool { status == 0 }
    }

    var keep = 8192

    /// The hook's exit, awaited once.
    private final class Exit: Sendable {
        private let state = Mutex<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))
        func fire() {
            let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
                s.done = true
                let w = s.waiter
                s.waiter = nil
                return w
            }
            w?.resume()
        }
        func wait() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let done = state.withLock { s -> Bool in
                    if s.done { return true }
                    s.waiter = c
                    return false
                }
                if done { c.resume() }
            }
        }
    }

    /// The last bytes of the output, and whether the pipe ended.
    private final class Tail: Sendable {
        let bytes = Mutex<[UInt8]>([])
        let ended = Atomic<Bool>(false)
        let timedOut = Atomic<Bool>(false)
    }

    func run(_ command: String, timeout: Double, environment: [String: String]) async throws -> Outcome {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw HookError("cannot make a pipe for the hook: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        // Not inherited by other children of the agent (dup2 onto 1 and 2 clears the flag for the hook's copies).
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A process group of its own (its id is the hook's pid), so that a time-out stops everything it started.
        // No signal blocked: the spawning thread's mask is inherited through exec, and the agent's threads
        // (libdispatch's, Swift's cooperative pool) block them all; the time-out's SIGTERM would not reach the hook.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attributes, 0)
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attributes, &unblocked)
        let env = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }.map { "\($0.key)=\($0.value)" }
        let argv = ["/bin/sh", "-c", command]
        var spawnedPid: pid_t = 0
        let spawned = withCStrings(argv) { a in withCStrings(env) { e in posix_spawn(&spawnedPid, "/bin/sh", &actions, &attributes, a, e) } }
        let pid = spawnedPid
        close(writeEnd)
        guard spawned == 0 else {
            close(readEnd)
            throw HookError("cannot start /bin/sh for the hook: \(String(cString: strerror(spawned)))")
        }
        let exit = Exit()
        let tail = Tail()
        let keep = self.keep
        let started = ContinuousClock.now
        let status = Atomic<Int32>(0)
        // The exit, awaited on a thread of its own (waitpid blocks).
        Thread.detachNewThread {
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            status.store(raw, ordering: .releasing)
            exit.fire()
        }
        // The output, read on a thread of its own until every writer closed it.
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                tail.bytes.withLock { t in
                    t.append(contentsOf: buffer[0..<n])
                    if t.count > keep { t.removeFirst(t.count - keep) }
                }
            }
            close(readEnd)
            tail.ended.store(true, ordering: .releasing)
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await exit.wait() }
            group.addTask {
                do { try await Task.sleep(for: .seconds(timeout)) } catch { return }
                tail.timedOut.store(true, ordering: .relaxed)
                kill(-pid, SIGTERM)
                try? await Task.sleep(for: .seconds(5))
                kill(-pid, SIGKILL)
            }
            await group.next()
            group.cancelAll()
        }
        let killed = tail.timedOut.load(ordering: .relaxed)
        // Whatever the hook left running holds the pipe: gone with its group.
        if killed { kill(-pid, SIGKILL) }
        let elapsed = started.duration(to: .now)
        // The last output is read once the pipe ends; children the hook left running may keep it open, so the
        // wait is bounded (2 s) and the output so far is what is kept.
        for _ in 0..<200 where !tail.ended.load(ordering: .acquiring) { try? await Task.sleep(for: .milliseconds(10)) }
        let output = String(decoding: tail.bytes.withLock { $0 }, as: UTF8.self)
        let raw = status.load(ordering: .acquiring)
        // WIFEXITED: the low 7 bits are 0; then the status is in the next 8.
        let exited = raw & 0x7f == 0
        return Outcome(
            status: killed ? nil : (exited ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)), output: output,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}

struct HookError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// `body` with `strings` as a NULL-terminated C array.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for p in pointers { free(p) } }
    return body(pointers)
}
