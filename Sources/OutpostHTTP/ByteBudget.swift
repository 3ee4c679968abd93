import Synchronization

/// A budget of bytes that requests in flight may hold at once (issue 8: eight unfinished 64 MiB uploads took the
/// vault to 575 MB). A request reserves what it will hold (its Content-Length, or the most it may send) before it
/// reads its body, and waits, first come first served, while the budget is spent; its body is not read meanwhile,
/// so it costs only its socket buffers. A reservation larger than the budget is cut to the whole budget.
public final class ByteBudget: Sendable {
    public let capacity: Int
    private struct Waiter { let bytes: Int; let resume: CheckedContinuation<Void, Never> }
    private struct State { var available: Int; var waiters: [Waiter] = [] }
    private let state: Mutex<State>

    public init(bytes: Int) {
        capacity = max(1, bytes)
        state = Mutex(State(available: max(1, bytes)))
    }

    /// Bytes not reserved now, and reservations waiting (for tests and logs).
    public var available: Int { state.withLock { $0.available } }
    public var waiting: Int { state.withLock { $0.waiters.count } }

    /// Runs `body` holding `bytes` of the budget.
    public func withReservation<T>(_ bytes: Int, _ body: () async throws -> T) async rethrows -> T {
        let n = min(max(bytes, 0), capacity)
        await acquire(n)
        defer { release(n) }
        return try await body()
    }

    private func acquire(_ n: Int) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.waiters.isEmpty && s.available >= n { s.available -= n; return true }
                s.waiters.append(Waiter(bytes: n, resume: c))
                return false
            }
            if now { c.resume() }
        }
    }

    private func release(_ n: Int) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.available += n
            var out: [CheckedContinuation<Void, Never>] = []
            while let first = s.waiters.first, first.bytes <= s.available {
                s.available -= first.bytes
                out.append(first.resume)
                s.waiters.removeFirst()
            }
            return out
        }
        for c in ready { c.resume() }
    }
}
