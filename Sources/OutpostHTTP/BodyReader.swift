import Hummingbird
import NIOCore
import Synchronization

/// Reads request bodies of bounded size within a deadline and above a minimum rate (issue 8: a body sent at
/// 1 byte per 4 s held an upload slot for hours). A body is cut off with 408 once `deadline` has passed, or
/// once it arrives slower than `minimumRate` after `grace`; a body past its limit is 413.
public struct BodyReader: Sendable {
    public let deadline: Duration
    public let minimumRate: Int
    public let grace: Duration
    /// For messages: the server (“relay”) and the setting that sets the deadline.
    let server: String
    let deadlineSetting: String

    public init(deadline: Duration, minimumRate: Int, grace: Duration = .seconds(10), server: String, deadlineSetting: String) {
        self.deadline = deadline
        self.minimumRate = minimumRate
        self.grace = grace
        self.server = server
        self.deadlineSetting = deadlineSetting
    }

    /// Reads a body of at most `limit` bytes; `what` names it in messages (“upload”, “id list”). `expected`
    /// (the request's Content-Length) sizes the buffer once, instead of growing it by copies.
    public func collect(_ body: RequestBody, upTo limit: Int, expected: Int? = nil, what: String) async throws -> ByteBuffer {
        let received = Counter()
        let start = ContinuousClock.now
        let deadline = self.deadline, grace = self.grace, minimumRate = self.minimumRate
        let server = self.server, deadlineSetting = self.deadlineSetting
        return try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask {
                var buffer = ByteBuffer()
                if let expected, expected > 0 { buffer.reserveCapacity(min(expected, limit)) }
                for try await part in body {
                    guard buffer.readableBytes + part.readableBytes <= limit else {
                        throw HTTPFailure(
                            .tooLarge, "the \(what) is larger than this endpoint accepts (\(limit) bytes; docs/protocol.md lists the limits)")
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
                        throw HTTPFailure(
                            .timeout, "the \(what) did not arrive within \(deadline.components.seconds) s (\(deadlineSetting)); \(got) bytes came")
                    }
                    let counted = (elapsed - grace) / .seconds(1)
                    if counted > 0, Double(got) < counted * Double(minimumRate) {
                        let seconds = Int(counted + grace / .seconds(1))
                        throw HTTPFailure(
                            .timeout,
                            "the \(what) arrives slower than the \(server)'s minimum of \(minimumRate / 1024) KiB/s (\(got) bytes in \(seconds) s); check the network between this machine and the \(server)"
                        )
                    }
                }
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let buffer = first else {
                throw HTTPFailure(.timeout, "the \(what) was not received")
            }
            return buffer
        }
    }
}

/// Bytes of a body received so far, shared between its reader and its watchdog.
private final class Counter: Sendable {
    let value = Mutex(0)
}
