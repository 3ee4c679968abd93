import Synchronization

/// Group commit for requests to the relay: while `limit` requests are in flight, callers queue, and the queue
/// leaves together in the next request (up to `maxWeight`). Many small files then cost few round trips, and
/// nothing waits on a timer: a caller that finds a free slot is sent at once.
final class RequestCoalescer<Part: Sendable, Answer: Sendable>: Sendable {
    private struct Waiter {
        let part: Part
        let weight: Int
        let continuation: CheckedContinuation<Answer, any Error>
    }
    private struct State {
        var queue: [Waiter] = []
        var inFlight = 0
    }

    private let state = Mutex(State())
    private let limit: Int
    private let maxWeight: Int
    /// Sends the parts in one request and returns one answer per part, in order.
    private let send: @Sendable ([Part]) async throws -> [Answer]

    init(limit: Int, maxWeight: Int, send: @escaping @Sendable ([Part]) async throws -> [Answer]) {
        self.limit = max(1, limit)
        self.maxWeight = maxWeight
        self.send = send
    }

    /// Parts waiting for a slot (for tests).
    var queued: Int { state.withLock { $0.queue.count } }

    /// Sends `part` (alone or with others) and returns its answer; a failed request fails every part in it.
    func submit(_ part: Part, weight: Int) async throws -> Answer {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Answer, any Error>) in
            let batch = state.withLock { s -> [Waiter]? in
                s.queue.append(Waiter(part: part, weight: weight, continuation: c))
                return Self.take(&s, limit: limit, maxWeight: maxWeight)
            }
            if let batch { launch(batch) }
        }
    }

    /// The next batch, when a slot is free: queued parts in order, at least one, within the weight limit.
    private static func take(_ s: inout State, limit: Int, maxWeight: Int) -> [Waiter]? {
        guard s.inFlight < limit, !s.queue.isEmpty else { return nil }
        var weight = 0
        var n = 0
        while n < s.queue.count, n == 0 || weight + s.queue[n].weight <= maxWeight {
            weight += s.queue[n].weight
            n += 1
        }
        let batch = Array(s.queue.prefix(n))
        s.queue.removeFirst(n)
        s.inFlight += 1
        return batch
    }

    private func launch(_ batch: [Waiter]) {
        Task {
            do {
                let answers = try await send(batch.map(\.part))
                precondition(answers.count == batch.count, "a coalesced request must answer every part")
                for (w, a) in zip(batch, answers) { w.continuation.resume(returning: a) }
            } catch {
                for w in batch { w.continuation.resume(throwing: error) }
            }
            let next = state.withLock { s -> [Waiter]? in
                s.inFlight -= 1
                return Self.take(&s, limit: limit, maxWeight: maxWeight)
            }
            if let next { launch(next) }
        }
    }
}
