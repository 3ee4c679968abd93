import Synchronization

/// Wakes the agent's scheduler early (a new plan arrived): `wait` returns when woken or when its time is up,
/// whichever comes first. A wake while nobody waits is kept for the next wait.
final class Waker: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func wake() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns after `seconds`, or sooner when woken or cancelled.
    func wait(seconds: Double) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: .seconds(max(0, seconds))) }
            group.addTask { await self.woken() }
            await group.next()
            group.cancelAll()
        }
    }

    private func woken() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    // A cancellation that came first has no waiter to resume: checked here, under the lock.
                    if s.pending || Task.isCancelled {
                        s.pending = false
                        return true
                    }
                    s.waiter = c
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                let w = s.waiter
                s.waiter = nil
                return w
            }
            waiter?.resume()
        }
    }
}
