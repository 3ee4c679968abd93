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
