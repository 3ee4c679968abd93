/// An operator-facing failure that is not tied to one layer's error type: an exit code and a message that
/// names the object, the problem and the fix.
public struct OperatorError: OperatorFacingError, Sendable {
    public let exitCode: ExitCode
    public let message: String

    public init(_ exitCode: ExitCode, _ message: String) {
        self.exitCode = exitCode
        self.message = message
    }

    public var description: String { message }
}
