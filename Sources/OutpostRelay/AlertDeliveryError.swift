import Foundation
import OutpostCore

/// Why one attempt to deliver an alert (webhook or SMTP) failed. The message names the target (the webhook's
/// scheme, host and port — never its path, which often holds a token — or the SMTP server's host:port), the
/// step that failed with what the server said, and the fix.
///
/// `permanent` tells the delivery queue whether another attempt can succeed without an operator changing
/// something: a refused password, a rejected recipient, a 404 or an untrusted certificate stay refused; a
/// connection refused, a time-out, a 5xx or an SMTP 4xx answer may pass later.
public struct AlertDeliveryError: OperatorFacingError, Sendable {
    public let permanent: Bool
    /// The code scripts see (`config`, `unauthorized`, `refused`, `tls`, `unreachable`, `remote`, `invalid`) and the message.
    public let error: OutpostError

    public init(permanent: Bool, _ code: OutpostError.Code, _ message: String) {
        self.permanent = permanent
        self.error = OutpostError(code, message)
    }

    public static func permanent(_ code: OutpostError.Code, _ message: String) -> AlertDeliveryError {
        AlertDeliveryError(permanent: true, code, message)
    }

    public static func temporary(_ code: OutpostError.Code, _ message: String) -> AlertDeliveryError {
        AlertDeliveryError(permanent: false, code, message)
    }

    public var code: OutpostError.Code { error.code }
    public var message: String { error.message }
    public var description: String { error.message }
    public var exitCode: ExitCode { error.exitCode }
}

/// What a server said, made safe to put in a message or a log line: control characters become spaces and the
/// text is cut at `limit` characters (an error page or a hostile server's reply cannot flood the log).
func printableExcerpt(_ text: String, limit: Int = 200) -> String {
    let cleaned = String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : $0 }))
        .trimmingCharacters(in: .whitespaces)
    return cleaned.count > limit ? String(cleaned.prefix(limit)) + "…" : cleaned
}
