import Logging
import OutpostCore
import Synchronization

/// What a restore has done so far, shared by its stages: the counts of its result, the entries it could not
/// restore (it goes on and lists them at the end), the first fatal error (a full disk stops it), and how an
/// entry's path is shown (the target as given, then the path inside the recovery point).
final class RestoreTally: Sendable {
    let target: String
    private let logger: Logger
    private let result = Mutex(RestoreResult())
    private let fatal = Mutex<(any Error)?>(nil)
    private let onWrite: @Sendable (Int64) -> Void

    /// `onWrite` hears of every run of bytes written (the progress line).
    init(target: String, logger: Logger, onWrite: @escaping @Sendable (Int64) -> Void) {
        self.target = target
        self.logger = logger
        self.onWrite = onWrite
    }

    func count(_ update: (inout RestoreResult) -> Void) { result.withLock { update(&$0) } }

    /// An entry kept as it was (`--skip`), or one that cannot be restored by its nature (a socket).
    func skipped() { count { $0.skipped += 1 } }

    var counted: RestoreResult { result.withLock { $0 } }

    func wrote(_ bytes: Int64) { onWrite(bytes) }

    /// An entry that could not be restored, and why; logged and listed in the result.
    func fail(_ components: [[UInt8]], _ reason: String) {
        let path = display(components)
        logger.warning("\(path): \(reason)")
        count { $0.failures.append(FailedFile(path: path, reason: reason)) }
    }

    func info(_ message: String) { logger.info("\(message)") }

    /// Keeps the first fatal error; the stages stop at their next check.
    func stop(_ error: any Error) { fatal.withLock { if $0 == nil { $0 = error } } }

    var stopped: Bool { fatal.withLock { $0 != nil } }

    var fatalError: (any Error)? { fatal.withLock { $0 } }

    /// A path inside the recovery point, from its components: `/a/b`.
    static func pointPath(_ components: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for c in components { out.append(0x2f); out += c }
        return out
    }

    /// Where an entry goes, for messages.
    func display(_ components: [[UInt8]]) -> String {
        target + String(decoding: Self.pointPath(components), as: UTF8.self)
    }
}
