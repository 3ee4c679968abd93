/// An error of the formats layer: a byte sequence that is not what its format says.
///
/// Carries a stable `code` for scripts and a message that names the object and the cause.
public struct FormatError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case truncated, badMagic, unsupportedVersion, invalidValue, checksumMismatch, compression
    }
    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// Process exit codes shared by every command. Documented in docs/exit-codes.md; never renumber.
public enum ExitCode: Int32, Sendable {
    case success = 0
    case failure = 1
    /// A backup finished and committed, but some files could not be read.
    case partialBackup = 3
    case notAStore = 10
    case unsupportedVersion = 11
    case locked = 12
    case damageFound = 13
    case notFound = 14
    case refused = 15
    case diskFull = 16
    case ioError = 17
    case corruptData = 18
    /// The relay refused the credential or the token.
    case unauthorized = 19
    /// The relay could not be reached (after retries).
    case unreachable = 20
    /// The relay answered with an error (the message says which).
    case remoteError = 21
    /// A server could not listen on its address (in use, not this machine's, or a privileged port).
    case cannotListen = 22
    case usage = 64
    /// Stopped by Ctrl-C (SIGINT), 128 + 2 as shells report it; a message says what was kept.
    case interrupted = 130
    /// Stopped by SIGTERM, 128 + 15.
    case terminated = 143
}

/// Errors that know how they should end the process and what the operator should do.
public protocol OperatorFacingError: Error, CustomStringConvertible {
    var exitCode: ExitCode { get }
}
