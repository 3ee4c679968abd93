import Synchronization

/// A small pool of expensive, non-thread-safe objects (zstd contexts, read buffers) shared by pipeline workers.
public final class ResourcePool<Resource>: Sendable {
    private let items: Mutex<[UnsafeTransfer<Resource>]> = Mutex([])
    private let make: @Sendable () -> Resource

    public init(_ make: @escaping @Sendable () -> Resource) { self.make = make }

    public func with<R>(_ body: (Resource) throws -> R) rethrows -> R {
        let item = items.withLock { $0.popLast() }?.value ?? make()
        defer { items.withLock { $0.append(UnsafeTransfer(item)) } }
        return try body(item)
    }
}

/// Moves a non-Sendable value between isolation domains where the code guarantees exclusive use.
public struct UnsafeTransfer<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}

/// A counting semaphore for async code: bounds how much work a producer may queue ahead of its consumers.
public final class AsyncSemaphore: Sendable {
    private struct State { var permits: Int; var waiters: [CheckedContinuation<Void, Never>] = [] }
    private let state: Mutex<State>

    public init(permits: Int) { state = Mutex(State(permits: permits)) }

    public func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resume = state.withLock { s -> Bool in
                if s.permits > 0 { s.permits -= 1; return true }
                s.waiters.append(c)
                return false
            }
            if resume { c.resume() }
        }
    }

    public func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty { s.permits += 1; return nil }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
