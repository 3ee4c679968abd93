import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// An S3 access key: from a credentials file or the standard environment variables, never from the command line
/// (where `ps` and shell histories would show the secret).
///
/// The file is the `[default]` profile of an AWS shared credentials file, mode 0600 (readable by its owner only):
///
///     [default]
///     aws_access_key_id = AKIA…
///     aws_secret_access_key = …
///     aws_session_token = …        (optional)
///
/// Lines starting with `#` or `;` are comments; the `[default]` header may be left out; other profiles are refused.
/// Without a file: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, optionally, `AWS_SESSION_TOKEN`.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// The key id only: a secret never reaches a log or an error message.
    public var description: String { "access key \(accessKeyID)" }

    /// From `file` when given, else from the environment.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> S3Credentials {
        if let file { return try read(file: file) }
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty, let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
            throw OutpostError(
                .config,
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the vault's environment, or give a credentials file (--s3-credentials FILE)"
            )
        }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }

    public static func read(file: String) throws -> S3Credentials {
        var st = stat()
        guard stat(file, &st) == 0, let data = FileManager.default.contents(atPath: file) else {
            throw OutpostError(.config, "the S3 credentials file \(file) cannot be read: \(String(cString: strerror(errno)))")
        }
        if st.st_mode & 0o077 != 0 {
            throw OutpostError(
                .config,
                "the S3 credentials file \(file) can be read by other users (mode \(String(st.st_mode & 0o777, radix: 8))): chmod 600 \(file)")
        }
        return try parse(String(decoding: data, as: UTF8.self), file: file)
    }

    public static func parse(_ text: String, file: String) throws -> S3Credentials {
        var values: [String: String] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line == "[default]" else {
                    throw OutpostError(.config, "\(file) line \(n + 1): only the [default] profile is read; put the vault's key there")
                }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else {
                throw OutpostError(.config, "\(file) line \(n + 1): expected `name = value`")
            }
            let name = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            guard ["aws_access_key_id", "aws_secret_access_key", "aws_session_token"].contains(name) else {
                throw OutpostError(
                    .config, "\(file) line \(n + 1): unknown setting \(name); use aws_access_key_id, aws_secret_access_key, aws_session_token")
            }
            values[name] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        guard let id = values["aws_access_key_id"], !id.isEmpty, let secret = values["aws_secret_access_key"], !secret.isEmpty else {
            throw OutpostError(.config, "\(file) needs aws_access_key_id and aws_secret_access_key")
        }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: values["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 })
    }
}
