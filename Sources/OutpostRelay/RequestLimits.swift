import Foundation
import Hummingbird
import NIOCore
import OutpostCore
import OutpostHTTP
import Synchronization

/// What one machine, and one request, may hold of the relay at once (issue 8: a machine that held every upload
/// slot open at 1 byte per 4 s blocked all others; two fetches of one large blob listed 64 times took 4 GB).
///
/// - Uploads: a machine waits for one of its own slots (`perMachineUploads`) before it waits for one of the
///   relay's (`maxConcurrentUploads`), so a slow or greedy machine holds at most its share.
/// - Fetches: likewise per machine, and each answer holds at most `WireFormat.maxFetchAnswerBytes`.
/// - Bodies: read within `deadline`, and no slower than `minimumRate` once `grace` has passed; a stalled body
///   is cut off with 408 and its slot freed.
public final class RequestLimits: Sendable {
    public let uploads: AsyncSemaphore
    public let perMachineUploads: Int
    public let perMachineFetches: Int
    public let deadline: Duration
    public let minimumRate: Int
    public let grace: Duration
    private let machineUploads = Mutex<[Int64: AsyncSemaphore]>([:])
    private let machineFetches = Mutex<[Int64: AsyncSemaphore]>([:])

    public init(configuration c: RelayConfiguration) {
        uploads = AsyncSemaphore(permits: c.maxConcurrentUploads)
        perMachineUploads = c.maxUploadsPerMachine
        perMachineFetches = 2
        deadline = .seconds(c.requestTimeoutSeconds)
        minimumRate = c.minimumBodyRateBytes
        grace = .seconds(10)
    }

    /// Runs `body` holding one of the machine's upload slots and one of the relay's.
    func withUploadSlot<T: Sendable>(machine: Int64, _ body: () async throws -> T) async throws -> T {
        let own = slot(machine, in: machineUploads, permits: perMachineUploads)
        await own.acquire()
        defer { own.release() }
        await uploads.acquire()
        defer { uploads.release() }
        return try await body()
    }

    /// Runs `body` holding one of the machine's fetch slots.
    func withFetchSlot<T: Sendable>(machine: Int64, _ body: () async throws -> T) async throws -> T {
        let own = slot(machine, in: machineFetches, permits: perMachineFetches)
        await own.acquire()
        defer { own.release() }
        return try await body()
    }

    private func slot(_ machine: Int64, in table: borrowing Mutex<[Int64: AsyncSemaphore]>, permits: Int) -> AsyncSemaphore {
        table.withLock { t in
            if let s = t[machine] { return s }
            let s = AsyncSemaphore(permits: permits)
            t[machine] = s
            return s
        }
    }

    /// Reads a request body of at most `limit` bytes, cut off when it is too slow (see the type's comment).
    func collect(_ body: RequestBody, upTo limit: Int, what: String) async throws -> ByteBuffer {
        let received = Counter()
        let start = ContinuousClock.now
        let deadline = self.deadline, grace = self.grace, minimumRate = self.minimumRate
        return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask {
                var buffer = ByteBuffer()
                for try await part in body {
                    guard buffer.readableBytes + part.readableBytes <= limit else {
                        throw RelayFailure(.tooLarge, "the \(what) is larger than this endpoint accepts (\(limit) bytes; docs/protocol.md lists the limits)")
                    }
                    buffer.writeImmutableBuffer(part)
                    received.value.withLock { $0 = buffer.readableBytes }
                }
                return buffer
            }
            group.addTask {
                // A watchdog: wakes once a second and cuts off a body that is late or too slow.
                while true {
                    try await Task.sleep(for: .seconds(1))
                    let elapsed = ContinuousClock.now - start
                    let got = received.value.withLock { $0 }
                    if elapsed > deadline {
                        throw RelayFailure(.timeout, "the \(what) did not arrive within \(deadline.components.seconds) s (request_timeout_seconds); \(got) bytes came")
                    }
                    let counted = (elapsed - grace) / .seconds(1)
                    if counted > 0, Double(got) < counted * Double(minimumRate) {
                        throw RelayFailure(.timeout, "the \(what) arrives slower than the relay's minimum of \(minimumRate / 1024) KiB/s (\(got) bytes in \(Int(counted + 10)) s); check the network between this machine and the relay")
                    }
                }
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let buffer = first else {
                throw RelayFailure(.timeout, "the \(what) was not received")
            }
            return buffer
        }
    }
}

/// Bytes of a body received so far, shared between its reader and its watchdog.
private final class Counter: Sendable {
    let value = Mutex(0)
}
