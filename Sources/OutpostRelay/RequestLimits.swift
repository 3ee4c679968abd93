import Foundation
import OutpostCore
import OutpostHTTP
import Synchronization

/// What one machine, and one request, may hold of the relay at once (issue 8: a machine that held every upload
/// slot open at 1 byte per 4 s blocked all others; two fetches of one large blob listed 64 times took 4 GB).
///
/// - Uploads: a machine waits for one of its own slots (`perMachineUploads`) before it waits for one of the
///   relay's (`maxConcurrentUploads`), so a slow or greedy machine holds at most its share.
/// - Fetches: each answer holds at most `WireFormat.maxFetchAnswerBytes`, and the answers one machine has in
///   flight share a budget of `perMachineFetchBytes` (a restore's many small answers run side by side; a greedy
///   machine's large ones wait for each other).
/// - Bodies: read within `request_timeout_seconds`, and no slower than `min_upload_kbps` once 10 s have passed
///   (`body`); a stalled body is cut off with 408 and its slot freed.
public final class RequestLimits: Sendable {
    public let uploads: AsyncSemaphore
    public let perMachineUploads: Int
    public let perMachineFetchBytes: Int
    public let body: BodyReader
    private let machineUploads = Mutex<[Int64: AsyncSemaphore]>([:])
    private let machineFetches = Mutex<[Int64: ByteBudget]>([:])

    public init(configuration c: RelayConfiguration) {
        uploads = AsyncSemaphore(permits: c.maxConcurrentUploads)
        perMachineUploads = c.maxUploadsPerMachine
        perMachineFetchBytes = 2 * WireFormat.maxFetchAnswerBytes
        body = BodyReader(
            deadline: .seconds(c.requestTimeoutSeconds), minimumRate: c.minimumBodyRateBytes, grace: .seconds(10),
            server: "relay", deadlineSetting: "request_timeout_seconds")
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

    /// Runs `body` holding `bytes` of the machine's fetch budget.
    func withFetchBudget<T: Sendable>(machine: Int64, bytes: Int, _ body: () async throws -> T) async throws -> T {
        let budget = machineFetches.withLock { t in
            if let b = t[machine] { return b }
            let b = ByteBudget(bytes: perMachineFetchBytes)
            t[machine] = b
            return b
        }
        return try await budget.withReservation(bytes, body)
    }

    private func slot(_ machine: Int64, in table: borrowing Mutex<[Int64: AsyncSemaphore]>, permits: Int) -> AsyncSemaphore {
        table.withLock { t in
            if let s = t[machine] { return s }
            let s = AsyncSemaphore(permits: permits)
            t[machine] = s
            return s
        }
    }
}
