/// The one operator-facing error of every layer: a stable code for scripts and logs, a message that names the
/// object, the problem and the fix, the exit code a command ends with (docs/exit-codes.md), and the HTTP status
/// a server answers with when the error reaches a request.
///
/// Each layer still has its own name for it (`StoreError`, `ClientError`, `ArchiveError`, … are type aliases),
/// so that code reads as before; a code means the same thing, the same exit and the same status in every layer.
public struct OutpostError: OperatorFacingError, Sendable {
    public enum Code: String, Sendable, CaseIterable {
        // Stores and data directories.
        case notAStore, alreadyExists, exists, unsupportedVersion, locked, diskFull, io, corrupt, notFound, ambiguous, invalid, taken
        // Backup and restore on the local file system.
        case invalidPath, conflict, unsafe, damaged
        // The push client.
        case notEnrolled, config, unauthorized, forbidden, unreachable, remote, relayDiskFull, fingerprintMismatch
        // The relay's own setup.
        case notARelay, tls
        // The forwarder and the vault.
        case notRegistered, credentials, refused, vault, staging, tampered, notAVault, invalidKey
        // Keys.
        case weakPassphrase, wrongPassphrase, malformed
        // Commands: a bad command line, an address a server cannot listen on.
        case usage, cannotListen
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
        case .notAStore, .alreadyExists, .exists, .notARelay, .notAVault: .notAStore
        case .unsupportedVersion: .unsupportedVersion
        case .locked: .locked
        case .diskFull, .relayDiskFull, .staging: .diskFull
        case .io: .ioError
        case .corrupt, .damaged, .tampered, .malformed: .corruptData
        case .notFound, .ambiguous: .notFound
        case .invalid, .invalidPath, .notEnrolled, .config, .notRegistered, .invalidKey, .weakPassphrase, .usage: .usage
        case .taken, .conflict, .unsafe, .forbidden, .fingerprintMismatch, .refused: .refused
        case .unauthorized, .credentials, .wrongPassphrase: .unauthorized
        case .unreachable: .unreachable
        case .remote, .vault: .remoteError
        case .cannotListen: .cannotListen
        case .tls: .failure
        }
    }

    /// The status a server answers with when this error ends a request.
    public var httpStatus: Int {
        switch code {
        case .invalid, .invalidPath, .invalidKey, .usage, .malformed: 400
        case .unauthorized, .credentials, .wrongPassphrase: 401
        case .forbidden, .refused: 403
        case .notFound, .ambiguous: 404
        case .alreadyExists, .exists, .taken, .conflict: 409
        case .diskFull, .relayDiskFull, .staging: 507
        default: 500
        }
    }
}
