import Foundation
import Logging
import OutpostCore
import ServiceLifecycle
import Synchronization

/// When `relay serve` forwards (relay.toml's forward_after_each_point and forward_times).
public struct ForwardingSchedule: Sendable, Equatable {
    /// Forward each recovery point as soon as it is committed.
    public var afterEachPoint: Bool
    /// Times of day, in minutes after midnight (local time), at which the forwarder also runs.
    public var times: [Int]

    public init(afterEachPoint: Bool, times: [Int]) {
        self.afterEachPoint = afterEachPoint
        self.times = times
    }
}

/// Runs the forwarder inside `relay serve`: after each committed recovery point (when configured), at the
/// configured times of day, and again with backoff while the vault is unreachable. Backups go on meanwhile.
/// With `status`, it also sends the vault the relay's status record (its fleet view, docs/vault.md §20) after
/// each run, at most once a minute, and every `statusInterval` in any case.
public final class ForwardingService: Service, Sendable {
    let forwarder: Forwarder
    let schedule: ForwardingSchedule
    let logger: Logger
    let status: (@Sendable () async -> Void)?
    private let trigger: AsyncStream<Void>.Continuation
    private let triggers: AsyncStream<Void>
    private let lastStatus = Mutex<ContinuousClock.Instant?>(nil)

    /// The longest a running relay goes without sending a status record.
    public static let statusInterval: Duration = .seconds(300)
    /// The shortest time between two records sent after forwarding runs (a run follows each commit).
    static let statusSpacing: Duration = .seconds(60)

    public init(forwarder: Forwarder, schedule: ForwardingSchedule, logger: Logger, status: (@Sendable () async -> Void)? = nil) {
        self.forwarder = forwarder
        self.schedule = schedule
        self.logger = logger
        self.status = status
        (triggers, trigger) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Sends the status record unless one went less than `spacing` ago.
    private func reportStatus(spacing: Duration) async {
        guard let status else { return }
        let now = ContinuousClock.now
        let due = lastStatus.withLock { last -> Bool in
            if let l = last, now - l < spacing { return false }
            last = now
            return true
        }
        if due { await status() }
    }

    /// Called when a recovery point was committed.
    public func pointCommitted() {
        if schedule.afterEachPoint { trigger.yield() }
    }

    public func run() async throws {
        trigger.yield()  // catch up on anything left from before the restart
        // The vault client is shut down however the service ends: a client dropped without it traps the process
        // (a relay registered with a vault died of SIGILL on SIGTERM).
        let ended: (any Error)?
        do {
            try await schedule()
            ended = nil
        } catch {
            ended = error
        }
        await forwarder.vault.close()
        if let ended, !(ended is CancellationError) { throw ended }
    }

    /// Forwards at the configured times and after each commit until the service is shut down.
    private func schedule() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The schedule: a trigger at each configured time of day.
                group.addTask {
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(self.secondsToNextScheduledRun()))
                        if !self.schedule.times.isEmpty { self.trigger.yield() }
                    }
                }
                // The status record while idle (the runs send one too).
                if self.status != nil {
                    group.addTask {
                        while !Task.isCancelled {
                            await self.reportStatus(spacing: Self.statusSpacing)
                            try await Task.sleep(for: Self.statusInterval)
                        }
                    }
                }
                // The runs: one at a time; after a failure, wait (exponential backoff) and try again.
                group.addTask {
                    var failures = 0
                    for await _ in self.triggers {
                        if Task.isCancelled { return }
                        do {
                            let r = try await self.forwarder.run()
                            if r.points > 0 { self.logger.info("forwarded", metadata: ["points": "\(r.points)", "bytes": "\(r.bytes)"]) }
                            failures = 0
                            await self.reportStatus(spacing: r.points > 0 ? .zero : Self.statusSpacing)
                        } catch {
                            failures += 1
                            let delay = min(900.0, 5 * pow(2.0, Double(failures - 1)))
                            self.logger.warning(
                                "forwarding failed; backups go on and forwarding retries", metadata: ["error": "\(error)", "retry_in_s": "\(delay)"])
                            try await Task.sleep(for: .seconds(delay))
                            self.trigger.yield()
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    func secondsToNextScheduledRun(now: Date = Date()) -> Double {
        let minutes = schedule.times
        guard !minutes.isEmpty else { return 3600 }
        let c = Calendar.current.dateComponents([.hour, .minute, .second], from: now)
        let h: Int = c.hour ?? 0, m: Int = c.minute ?? 0, sec: Int = c.second ?? 0
        let nowSec: Int = h * 3600 + m * 60 + sec
        var best = 86400
        for t in minutes {
            let at = t * 60
            let delta = at > nowSec ? at - nowSec : at + 86400 - nowSec
            best = min(best, delta)
        }
        return Double(max(1, best))
    }
}
