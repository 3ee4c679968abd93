import OutpostCore
#if canImport(Glibc)
import Glibc
#endif

/// The archive layer's error (backup and restore on the local file system).
public struct ArchiveError: OperatorFacingError, Sendable {
    public enum Code: String, Sendable { case invalidPath, conflict, io, diskFull, notFound, unsafe, damaged }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) { self.code = code; self.message = message }

    public var description: String { message }

    public var exitCode: ExitCode {
        switch code {
        case .invalidPath: .usage
        case .conflict, .unsafe: .refused
        case .io: .ioError
        case .diskFull: .diskFull
        case .notFound: .notFound
        case .damaged: .corruptData
        }
    }

    static func system(_ err: Int32, _ action: String, _ path: String) -> ArchiveError {
        let reason = String(cString: strerror(err))
        if err == ENOSPC || err == EDQUOT {
            return ArchiveError(.diskFull, "the disk holding \(path) is full (\(action): \(reason)); free space there and run the restore again")
        }
        return ArchiveError(.io, "\(action) \(path) failed: \(reason)")
    }
}

/// A file the job could not handle; the job goes on and lists these at the end (like MARS's failed-files list).
public struct FailedFile: Sendable, Codable, Equatable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
}
