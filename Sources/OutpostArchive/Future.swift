import Synchronization

/// A value that one task produces and others await (a file's extents, a hardlink's first occurrence).
final class Future<Value: Sendable>: Sendable {
    private struct State { var value: Value?; var waiters: [CheckedContinuation<Value, Never>] = [] }
    private let state = Mutex(State(value: nil))

    func fulfil(_ v: Value) {
        let waiters = state.withLock { s -> [CheckedContinuation<Value, Never>] in
            s.value = v
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: v) }
    }

    var value: Value {
        get async {
            await withCheckedContinuation { (c: CheckedContinuation<Value, Never>) in
                let v = state.withLock { s -> Value? in
                    if let v = s.value { return v }
                    s.waiters.append(c)
                    return nil
                }
                if let v { c.resume(returning: v) }
            }
        }
    }
}
