import OutpostCore

/// The store layer's error: a code for scripts, an exit code, and a message naming the object and the fix.
public struct StoreError: OperatorFacingError, Sendable {
    public enum Code: String, Sendable {
        case notAStore, alreadyExists, unsupportedVersion, locked, diskFull, io, corrupt, notFound, ambiguous, invalid
        /// A name already in use (a machine's): the command declines, exit 15.
        case taken
    }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public var exitCode: ExitCode {
        switch code {
        case .notAStore, .alreadyExists: .notAStore
        case .unsupportedVersion: .unsupportedVersion
        case .locked: .locked
        case .diskFull: .diskFull
        case .io: .ioError
        case .corrupt: .corruptData
        case .notFound, .ambiguous: .notFound
        case .invalid: .usage
        case .taken: .refused
        }
    }

    /// Maps a failed system call on `path` to a store error; ENOSPC and EDQUOT become `.diskFull`.
    static func system(_ errno: Int32, _ action: String, _ path: String) -> StoreError {
        let reason = String(cString: strerror(errno))
        if errno == ENOSPC || errno == EDQUOT {
            return StoreError(.diskFull, "the disk holding \(path) is full (\(action) failed: \(reason)); free space there and run the job again — nothing that was committed is lost")
        }
        return StoreError(.io, "\(action) \(path) failed: \(reason)")
    }
}

#if canImport(Glibc)
import Glibc
#endif
