import Logging
import OutpostCore
import Synchronization

/// What a backup has found so far, shared by its stages: the recovery point's summary counters, the live
/// progress, the entries it could not back up (it goes on and lists them at the end), and the first fatal error
/// (an upload that failed: the point must not be committed).
final class BackupTally: Sendable {
    let progress: BackupProgress
    private let logger: Logger
    private let summary = Mutex(BackupSummary())
    private let failures = Mutex<[FailedFile]>([])
    private let fatal = Mutex<(any Error)?>(nil)

    init(progress: BackupProgress, logger: Logger) {
        self.progress = progress
        self.logger = logger
    }

    func count(_ update: (inout BackupSummary) -> Void) { summary.withLock { update(&$0) } }

    var counted: BackupSummary { summary.withLock { $0 } }

    /// An entry that could not be backed up, and why; logged and listed in the result.
    func record(_ path: [UInt8], _ reason: String) {
        let display = FS.display(path)
        logger.warning("\(display): \(reason)")
        failures.withLock { $0.append(FailedFile(path: display, reason: reason)) }
    }

    var failed: [FailedFile] { failures.withLock { $0 } }

    /// Keeps the first fatal error; the stages stop at their next check.
    func stop(_ error: any Error) { fatal.withLock { if $0 == nil { $0 = error } } }

    var fatalError: (any Error)? { fatal.withLock { $0 } }
}
