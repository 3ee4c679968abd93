import Crypto
import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// AWS Signature Version 4 (header-based): the canonical request, the string to sign, the signing key derived by
/// HMAC-SHA256 from the secret, the date, the region and the service, and the `Authorization` header. Pure: no
/// clock, no I/O, so the published test vectors check it line by line (a server answers every mistake with the
/// same `SignatureDoesNotMatch`).
///
/// Paths and query items are given decoded; the signer percent-encodes them per the SigV4 rules (every byte but
/// `A-Z a-z 0-9 - . _ ~` as `%XX` in uppercase hex, `/` kept in paths) and the request must go out with exactly
/// that encoding (`canonicalPath`, `canonicalQuery`). S3 signs the path as sent: no normalisation of `.`, `..` or
/// `//`, no double encoding (which the generic suite's other services use; its vectors that need it are not ours).
public struct SigV4Signer: Sendable {
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// The payload hash S3 accepts instead of a body's SHA-256 (the body is then not covered by the signature).
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public let credentials: S3Credentials
    public let region: String
    public let service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The headers to send: `headers` plus `x-amz-date`, `x-amz-security-token` (with a session token),
    /// `x-amz-content-sha256` (S3 requires it) and `Authorization`. `headers` must hold `host` as it is sent.
    public func sign(
        method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], payloadHash: String, date: Date
    ) -> [(String, String)] {
        var all = headers
        func has(_ name: String) -> Bool { all.contains { $0.0.lowercased() == name } }
        if !has("x-amz-date") { all.append(("x-amz-date", Self.amzDate(date))) }
        if let token = credentials.sessionToken, !has("x-amz-security-token") { all.append(("x-amz-security-token", token)) }
        if service == "s3" && !has("x-amz-content-sha256") { all.append(("x-amz-content-sha256", payloadHash)) }
        all.append(("Authorization", authorization(method: method, path: path, query: query, headers: all, payloadHash: payloadHash, date: date)))
        return all
    }

    /// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` for a request whose headers are complete.
    public func authorization(
        method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], payloadHash: String, date: Date
    ) -> String {
        let canonical = canonicalRequest(method: method, path: path, query: query, headers: headers, payloadHash: payloadHash)
        let sig = signature(stringToSign: stringToSign(canonicalRequest: canonical, date: date), date: date)
        return
            "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope(date)), SignedHeaders=\(Self.signedHeaders(headers)), Signature=\(sig)"
    }

    /// Method, canonical URI, canonical query, canonical headers, a blank line, signed headers, payload hash.
    public func canonicalRequest(method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String) -> String
    {
        [method, Self.canonicalPath(path), Self.canonicalQuery(query), Self.canonicalHeaders(headers), Self.signedHeaders(headers), payloadHash]
            .joined(separator: "\n")
    }

    public func stringToSign(canonicalRequest: String, date: Date) -> String {
        [Self.algorithm, Self.amzDate(date), scope(date), Hex.encode(Array(SHA256.hash(data: Array(canonicalRequest.utf8))))].joined(separator: "\n")
    }

    /// HMAC-SHA256 of the string to sign under the key derived from `AWS4` + secret, the day, region and service.
    public func signature(stringToSign: String, date: Date) -> String {
        var key = SymmetricKey(data: Array(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [String(Self.amzDate(date).prefix(8)), region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        return Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key)))
    }

    /// The hex SHA-256 of a body, as `x-amz-content-sha256` and the canonical request's last line carry it.
    public static func payloadHash(_ body: [UInt8]) -> String { Hex.encode(Array(SHA256.hash(data: body))) }

    /// `YYYYMMDD/region/service/aws4_request`.
    public func scope(_ date: Date) -> String { "\(Self.amzDate(date).prefix(8))/\(region)/\(service)/aws4_request" }

    /// The path percent-encoded once, `/` kept; empty is `/`.
    public static func canonicalPath(_ path: String) -> String {
        path.isEmpty ? "/" : uriEncode(path, encodeSlash: false)
    }

    /// Name=value pairs, both encoded, sorted by encoded name then encoded value (bytes, not locale), joined by `&`.
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0, encodeSlash: true), uriEncode($0.1, encodeSlash: true)) }
            .sorted { $0.0 == $1.0 ? $0.1.utf8.lexicographicallyPrecedes($1.1.utf8) : $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// One `name:value` line per lower-cased name, sorted; values trimmed, inner runs of spaces collapsed to one,
    /// repeated names joined with `,` in the order given. Ends with the newline the blank line after it needs.
    public static func canonicalHeaders(_ headers: [(String, String)]) -> String {
        grouped(headers).map { "\($0.name):\($0.value)\n" }.joined()
    }

    /// The lower-cased header names, sorted, joined by `;`.
    public static func signedHeaders(_ headers: [(String, String)]) -> String {
        grouped(headers).map(\.name).joined(separator: ";")
    }

    private static func grouped(_ headers: [(String, String)]) -> [(name: String, value: String)] {
        var byName: [String: [String]] = [:]
        for (n, v) in headers { byName[n.lowercased(), default: []].append(normalise(v)) }
        return byName.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.map { ($0, byName[$0]!.joined(separator: ",")) }
    }

    private static func normalise(_ value: String) -> String {
        var out = ""
        var space = false
        for ch in value.trimmingCharacters(in: .whitespacesAndNewlines) {
            if ch == " " || ch == "\t" || ch == "\n" || ch == "\r" {
                space = true
            } else {
                if space { out.append(" ") }
                space = false
                out.append(ch)
            }
        }
        return out
    }

    /// Every byte of the UTF-8 form but the unreserved `A-Z a-z 0-9 - . _ ~` (and `/` unless `encodeSlash`) as `%XX`.
    public static func uriEncode(_ s: String, encodeSlash: Bool) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 {
            let unreserved =
                (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e
            if unreserved || (b == 0x2f && !encodeSlash) {
                out.append(b)
            } else {
                out += [0x25, hex[Int(b >> 4)], hex[Int(b & 0x0f)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `YYYYMMDDTHHMMSSZ` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tm.tm_year + 1900)\(two(tm.tm_mon + 1))\(two(tm.tm_mday))T\(two(tm.tm_hour))\(two(tm.tm_min))\(two(tm.tm_sec))Z"
    }
}
