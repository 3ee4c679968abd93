import Crypto
import Foundation
import NIOCore
import OutpostCore
import OutpostObjects

#if canImport(Glibc)
    import Glibc
#endif

/// How a bucket is named in a request: `http://HOST/BUCKET/KEY` (path style, what Ceph RGW and MinIO answer
/// without DNS set up) or `http://BUCKET.HOST/KEY` (virtual-hosted style, AWS's default; needs a DNS name).
public enum S3Addressing: String, Codable, Sendable, CaseIterable { case path, virtual }

/// Where a vault's objects live on an S3 service: vault.json's `s3` (and `secondaryS3` for GRS).
public struct S3Location: Codable, Sendable, Equatable, CustomStringConvertible {
    /// `http(s)://HOST[:PORT]`, nothing after it.
    public var endpoint: String
    public var bucket: String
    public var region: String
    public var addressing: S3Addressing
    /// The credentials file (`S3Credentials`); nil: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` from the environment.
    public var credentialsFile: String?

    public init(endpoint: String, bucket: String, region: String = "us-east-1", addressing: S3Addressing = .path, credentialsFile: String? = nil) {
        self.endpoint = endpoint
        self.bucket = bucket
        self.region = region
        self.addressing = addressing
        self.credentialsFile = credentialsFile
    }

    public var description: String { "bucket \(bucket) at \(endpoint)" }

    /// Scheme, host and port of the endpoint, checked; the bucket name checked against S3's rules.
    func parsed() throws -> (scheme: String, host: String, port: Int?) {
        guard let c = URLComponents(string: endpoint), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = c.host, !host.isEmpty, c.path.isEmpty || c.path == "/", c.query == nil, c.user == nil
        else {
            throw OutpostError(.usage, "the S3 endpoint \(endpoint.debugDescription) is not http(s)://HOST[:PORT] (no path, no query)")
        }
        let ok =
            (3...63).contains(bucket.utf8.count)
            && bucket.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x2e }
            && !bucket.hasPrefix("-") && !bucket.hasPrefix(".") && !bucket.hasSuffix("-") && !bucket.hasSuffix(".")
        guard ok else {
            throw OutpostError(
                .usage,
                "\(bucket.debugDescription) is not a valid S3 bucket name (3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit)")
        }
        guard !region.isEmpty, region.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }) else {
            throw OutpostError(.usage, "\(region.debugDescription) is not an S3 region (such as us-east-1)")
        }
        if addressing == .virtual && (host.allSatisfy { $0.isNumber || $0 == "." } || host.contains(":")) {
            throw OutpostError(.usage, "virtual-hosted addressing needs a DNS name for the endpoint, not the address \(host); use path addressing")
        }
        return (scheme, host, c.port)
    }
}

/// The vault's `ObjectStore` on an S3-compatible service (Ceph RGW, MinIO, AWS S3), signed with SigV4.
///
/// - put-if-absent is a PUT with `If-None-Match: *` (the service refuses with 412 when the key exists; Ceph RGW
///   16.2 honours it, atomically: of concurrent writers exactly one gets 200). Objects larger than
///   `multipartThreshold` go up as a multipart upload in `partSize` parts, aborted on any failure; RGW 16.2
///   ignores `If-None-Match` on CompleteMultipartUpload (AWS honours it), so that path first checks that the key
///   is absent: two writers of the same large key racing between that check and the completion both succeed and
///   the later completion's bytes stay (docs/vault.md).
/// - ranged GETs send `Range: bytes=FIRST-LAST` and clamp as the protocol says; a range starting at or after
///   the end reads as empty (416), a missing key as nil.
/// - listing is ListObjectsV2, page by page with continuation tokens.
/// - every request is retried on 5xx, SlowDown and connection failures, with exponential backoff, at most
///   `maxAttempts` times; errors name the operation, bucket and key, the service's answer and the fix.
///
/// Requests go through one AsyncHTTPClient on an event loop group of its own (`AsyncHTTPTransport`): the calling
/// thread waits, and must not be one of that group's loops (the store refuses rather than deadlock).
public final class S3ObjectStore: ObjectStore {
    public struct Tuning: Sendable {
        /// Objects larger than this are uploaded in parts.
        public var multipartThreshold = 16 << 20
        /// At least S3's minimum of 5 MiB (every part but the last).
        public var partSize = 16 << 20
        /// Keys asked for per ListObjectsV2 page (S3 answers at most 1000).
        public var listPageSize = 1000
        /// Attempts per request, the first included.
        public var maxAttempts = 5
        /// The first retry waits about this long (jittered), each further one twice as long, at most `maxDelay`.
        public var baseDelay = 0.2
        public var maxDelay = 5.0
        /// Sign the body's SHA-256 (the service then checks it); false sends UNSIGNED-PAYLOAD.
        public var signPayloads = true
        /// One request's deadline, retries not counted.
        public var requestTimeout: TimeAmount = .minutes(10)
        public init() {}
    }

    public let location: S3Location
    public let tuning: Tuning
    let signer: SigV4Signer
    let transport: any S3Transport
    let scheme: String, host: String, port: Int?
    /// Called with "part N" before each part of a multipart upload: lets tests fail an upload halfway.
    let beforePart: (@Sendable (String) throws -> Void)?

    public convenience init(location: S3Location, credentials: S3Credentials, tuning: Tuning = Tuning()) throws {
        try self.init(location: location, credentials: credentials, tuning: tuning, transport: AsyncHTTPTransport.shared)
    }

    init(
        location: S3Location, credentials: S3Credentials, tuning: Tuning, transport: any S3Transport,
        beforePart: (@Sendable (String) throws -> Void)? = nil
    ) throws {
        (scheme, host, port) = try location.parsed()
        guard tuning.partSize >= 5 << 20, tuning.multipartThreshold >= tuning.partSize, tuning.listPageSize >= 1, tuning.maxAttempts >= 1 else {
            throw OutpostError(
                .usage, "S3 tuning: parts of at least 5 MiB, a multipart threshold of at least one part, pages and attempts of at least 1")
        }
        self.location = location
        self.tuning = tuning
        self.signer = SigV4Signer(credentials: credentials, region: location.region, service: "s3")
        self.transport = transport
        self.beforePart = beforePart
    }

    /// From the location's credentials file or, without one, the environment.
    public convenience init(location: S3Location, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        try self.init(location: location, credentials: S3Credentials.load(file: location.credentialsFile, environment: environment))
    }

    // MARK: ObjectStore

    public func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        try ObjectKey.validate(key)
        if bytes.count > tuning.multipartThreshold { return try putMultipart(key, bytes) }
        let o = try call(
            "PutObject", "PUT", key: key, headers: [("if-none-match", "*"), ("content-type", "application/octet-stream")], body: bytes)
        switch o.status {
        case 200: return true
        case 412:
            // An earlier attempt that got no answer may have stored it: then the object there is ours.
            if o.ambiguous, let etag = try head(key)?.etag, etag == Hex.encode(Array(Insecure.MD5.hash(data: bytes))) { return true }
            return false
        default: throw failure("PutObject", key, o)
        }
    }

    public func get(_ key: String) throws -> [UInt8]? {
        try ObjectKey.validate(key)
        let o = try call("GetObject", "GET", key: key)
        switch o.status {
        case 200: return o.body
        case 404 where o.code == nil || o.code == "NoSuchKey": return nil
        default: throw failure("GetObject", key, o)
        }
    }

    public func get(_ key: String, range: Range<Int>) throws -> [UInt8]? {
        try ObjectKey.validate(key)
        let lo = max(0, range.lowerBound), hi = range.upperBound
        if hi <= lo { return try exists(key) ? [] : nil }
        let o = try call("GetObject", "GET", key: key, headers: [("range", "bytes=\(lo)-\(hi - 1)")])
        switch o.status {
        case 206: return Array(o.body.prefix(hi - lo))
        case 200:
            // A service that ignores Range sends it all.
            let a = min(lo, o.body.count), b = min(hi, o.body.count)
            return Array(o.body[a..<b])
        case 416: return []
        case 404 where o.code == nil || o.code == "NoSuchKey": return nil
        default: throw failure("GetObject", key, o)
        }
    }

    public func list(prefix: String) throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("max-keys", "\(tuning.listPageSize)")]
            if !prefix.isEmpty { query.append(("prefix", prefix)) }
            if let token { query.append(("continuation-token", token)) }
            let o = try call("ListObjectsV2", "GET", key: nil, query: query)
            guard o.status == 200, let root = S3XMLNode.parse(o.body), root.name == "ListBucketResult" else {
                throw failure("ListObjectsV2", prefix.isEmpty ? nil : prefix + "*", o)
            }
            for c in root.all("Contents") {
                guard let key = c.value("Key"), let size = c.value("Size").flatMap({ Int($0) }) else { continue }
                out.append(ObjectInfo(key: key, size: size))
            }
            token = root.value("IsTruncated") == "true" ? root.value("NextContinuationToken") : nil
            if root.value("IsTruncated") == "true" && (token ?? "").isEmpty {
                throw OutpostError(.remote, "S3 ListObjectsV2 of \(location): a truncated page without a continuation token")
            }
        } while token != nil
        return out.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
    }

    public func delete(_ key: String) throws {
        try ObjectKey.validate(key)
        let o = try call("DeleteObject", "DELETE", key: key)
        switch o.status {
        case 200, 204: return
        case 404 where o.code == nil || o.code == "NoSuchKey": return
        default: throw failure("DeleteObject", key, o)
        }
    }

    // MARK: Bucket

    /// Creates the bucket when it is missing (in the location's region); true when it was created. Also the
    /// check `vault init` makes that the endpoint answers and accepts the credentials.
    @discardableResult
    public func ensureBucket() throws -> Bool {
        let o = try call("HeadBucket", "HEAD", key: nil)
        switch o.status {
        case 200: return false
        case 404:
            let body =
                location.region == "us-east-1"
                ? []
                : Array(("<CreateBucketConfiguration>" + xmlElement("LocationConstraint", location.region) + "</CreateBucketConfiguration>").utf8)
            let c = try call("CreateBucket", "PUT", key: nil, body: body)
            if c.status == 200 { return true }
            if c.status == 409 && c.code == "BucketAlreadyOwnedByYou" { return false }
            throw failure("CreateBucket", nil, c)
        default: throw failure("HeadBucket", nil, o)
        }
    }

    /// Unfinished multipart uploads in the bucket (keys), for tests and operators: each holds storage until aborted.
    public func pendingUploads() throws -> [String] {
        let o = try call("ListMultipartUploads", "GET", key: nil, query: [("uploads", "")])
        guard o.status == 200, let root = S3XMLNode.parse(o.body) else { throw failure("ListMultipartUploads", nil, o) }
        return root.all("Upload").compactMap { $0.value("Key") }
    }

    // MARK: Multipart

    private func putMultipart(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        // RGW 16.2 completes over an existing key whatever If-None-Match says: look first (see the type's comment).
        if try exists(key) { return false }
        let start = try call(
            "CreateMultipartUpload", "POST", key: key, query: [("uploads", "")], headers: [("content-type", "application/octet-stream")])
        guard start.status == 200, let uploadID = S3XMLNode.parse(start.body)?.value("UploadId"), !uploadID.isEmpty else {
            throw failure("CreateMultipartUpload", key, start)
        }
        do {
            var parts: [(number: Int, etag: String)] = []
            var offset = 0
            while offset < bytes.count {
                let number = parts.count + 1
                let end = min(bytes.count, offset + tuning.partSize)
                try beforePart?("part \(number)")
                let p = try call(
                    "UploadPart \(number)", "PUT", key: key, query: [("partNumber", "\(number)"), ("uploadId", uploadID)],
                    body: Array(bytes[offset..<end]))
                guard p.status == 200, let etag = p.header("etag") else { throw failure("UploadPart \(number)", key, p) }
                parts.append((number, etag))
                offset = end
            }
            let xml =
                "<CompleteMultipartUpload>"
                + parts.map { "<Part>" + xmlElement("PartNumber", "\($0.number)") + xmlElement("ETag", $0.etag) + "</Part>" }.joined()
                + "</CompleteMultipartUpload>"
            let done = try call(
                "CompleteMultipartUpload", "POST", key: key, query: [("uploadId", uploadID)], headers: [("if-none-match", "*")],
                body: Array(xml.utf8), errorsIn200: true)
            switch done.status {
            case 200: return true
            case 412:
                abort(key, uploadID)
                return false
            case 404 where done.code == "NoSuchUpload" && done.ambiguous:
                // An earlier attempt completed it without the answer reaching us.
                if try head(key)?.size == bytes.count { return true }
                throw failure("CompleteMultipartUpload", key, done)
            default: throw failure("CompleteMultipartUpload", key, done)
            }
        } catch {
            abort(key, uploadID)
            throw error
        }
    }

    /// Best effort: an upload left behind only costs storage until a lifecycle rule or an operator removes it.
    private func abort(_ key: String, _ uploadID: String) {
        _ = try? call("AbortMultipartUpload", "DELETE", key: key, query: [("uploadId", uploadID)])
    }

    // MARK: Requests

    /// True when the key is there: a one-byte ranged GET (unlike HEAD, its 404 says whether the key or the bucket is missing).
    private func exists(_ key: String) throws -> Bool {
        let o = try call("GetObject", "GET", key: key, headers: [("range", "bytes=0-0")])
        switch o.status {
        case 200, 206, 416: return true
        case 404 where o.code == nil || o.code == "NoSuchKey": return false
        default: throw failure("GetObject", key, o)
        }
    }

    private func head(_ key: String) throws -> (size: Int, etag: String)? {
        let o = try call("HeadObject", "HEAD", key: key)
        switch o.status {
        case 200:
            let etag = (o.header("etag") ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            return (Int(o.header("content-length") ?? "") ?? -1, etag)
        case 404: return nil
        default: throw failure("HeadObject", key, o)
        }
    }

    struct Outcome {
        var status: Int
        var headers: [(String, String)]
        var body: [UInt8]
        /// The `Code` and `Message` of an S3 error body.
        var code: String?
        var message: String?
        /// An earlier attempt got no answer or a 5xx: the service may have carried it out.
        var ambiguous: Bool
        var attempts: Int
        var seconds: Double

        func header(_ name: String) -> String? {
            let n = name.lowercased()
            return headers.first { $0.0.lowercased() == n }?.1
        }
    }

    /// The URL, `Host` header value and path (as signed) for `key`, or for the bucket when nil.
    func target(_ key: String?) -> (host: String, path: String) {
        let defaultPort = scheme == "https" ? 443 : 80
        let portPart = port.map { $0 == defaultPort ? "" : ":\($0)" } ?? ""
        switch location.addressing {
        case .path: return (host + portPart, "/" + location.bucket + (key.map { "/" + $0 } ?? ""))
        case .virtual: return (location.bucket + "." + host + portPart, "/" + (key ?? ""))
        }
    }

    /// Sends one S3 request, signed afresh for each attempt, retrying transient failures; returns the first answer
    /// that is not transient (any status: the caller decides). Throws `.unreachable` when no attempt got an answer
    /// and the failure (SlowDown, 5xx) of the last attempt when every one was transient.
    func call(
        _ operation: String, _ method: String, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
        body: [UInt8] = [], errorsIn200: Bool = false
    ) throws -> Outcome {
        let (hostHeader, path) = target(key)
        let canonicalQuery = SigV4Signer.canonicalQuery(query)
        let url = "\(scheme)://\(hostHeader)\(SigV4Signer.canonicalPath(path))\(canonicalQuery.isEmpty ? "" : "?" + canonicalQuery)"
        let payloadHash = tuning.signPayloads || body.isEmpty ? SigV4Signer.payloadHash(body) : SigV4Signer.unsignedPayload
        let started = Date()
        var ambiguous = false
        var lastFailure = ""
        var last: Outcome?
        for attempt in 1...tuning.maxAttempts {
            if attempt > 1 {
                let delay = min(tuning.maxDelay, tuning.baseDelay * Double(1 << min(attempt - 2, 16))) * Double.random(in: 0.5...1.0)
                usleep(UInt32(delay * 1_000_000))
            }
            let signed = signer.sign(
                method: method, path: path, query: query, headers: [("host", hostHeader)] + headers, payloadHash: payloadHash, date: Date())
            let response: S3WireResponse
            do {
                response = try transport.send(S3WireRequest(method: method, url: url, headers: signed, body: body), timeout: tuning.requestTimeout)
            } catch let e as OutpostError {
                throw e
            } catch {
                lastFailure = "\(error)"
                ambiguous = true
                continue
            }
            var o = Outcome(
                status: response.status, headers: response.headers, body: response.body, code: nil, message: nil, ambiguous: ambiguous,
                attempts: attempt, seconds: Date().timeIntervalSince(started))
            if response.status >= 300 || errorsIn200, let root = S3XMLNode.parse(response.body), root.name == "Error" {
                o.code = root.value("Code")
                o.message = root.value("Message").flatMap { $0.isEmpty ? nil : $0 }
                // CompleteMultipartUpload can fail after its 200 status line went out: the error is in the body.
                if o.status == 200 { o.status = 500 }
            }
            if !Self.transient(o) { return o }
            last = o
            ambiguous = true
        }
        if let last { throw failure(operation, key, last) }
        throw OutpostError(
            .unreachable,
            "cannot reach the S3 endpoint \(location.endpoint) for \(operation) of \(object(key)): \(lastFailure) (\(tuning.maxAttempts) attempts over \(seconds(since: started))); check the endpoint and that the service runs"
        )
    }

    static func transient(_ o: Outcome) -> Bool {
        if [500, 502, 503, 504].contains(o.status) { return true }
        return ["SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable", "ConditionalRequestConflict"].contains(o.code ?? "")
    }

    private func object(_ key: String?) -> String { key.map { "\(location.bucket)/\($0)" } ?? "bucket \(location.bucket)" }

    private func seconds(since: Date) -> String { String(format: "%.1f s", Date().timeIntervalSince(since)) }

    private var credentialsSource: String {
        location.credentialsFile.map { "from \($0)" } ?? "from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    }

    /// The error for an answer the operation cannot use: what failed, the service's answer, and the fix.
    func failure(_ operation: String, _ key: String?, _ o: Outcome) -> OutpostError {
        let what = "S3 \(operation) of \(object(key)) at \(location.endpoint)"
        let answer = "\(o.status)\(o.code.map { " \($0)" } ?? "")\(o.message.map { " (\($0))" } ?? "")"
        switch (o.status, o.code ?? "") {
        case (403, "RequestTimeTooSkewed"):
            return OutpostError(.refused, "\(what) was refused: \(answer): this machine's clock is off by more than 15 minutes; set it (NTP)")
        case (401, _), (403, _):
            return OutpostError(
                .credentials,
                "\(what) was refused: \(answer); check the access key and secret (\(signer.credentials), \(credentialsSource)) and the key's permissions on bucket \(location.bucket)"
            )
        case (404, _) where o.code == "NoSuchBucket" || (o.code == nil && key == nil):
            return OutpostError(
                .notFound,
                "\(what): bucket \(location.bucket) does not exist there (\(answer)); check the bucket name, or create it (`outpost vault init` does)"
            )
        case (301, _), (307, _), (400, "AuthorizationHeaderMalformed"), (400, "IllegalLocationConstraintException"),
            (400, "InvalidLocationConstraint"):
            return OutpostError(
                .config,
                "\(what) was refused: \(answer): the bucket is not in region \(location.region) at this endpoint; check the region and the endpoint")
        case (503, _), (429, _), (_, "SlowDown"):
            return OutpostError(
                .remote,
                "\(what) was throttled: \(answer) to all \(o.attempts) attempts over \(String(format: "%.1f s", o.seconds)); lower the load or raise the service's request rate limit"
            )
        case (500..<600, _):
            return OutpostError(
                .remote, "\(what) failed on the service: \(answer) to all \(o.attempts) attempts; check the service's health (on Ceph: `ceph -s`)")
        default:
            return OutpostError(.remote, "\(what) failed: \(answer)")
        }
    }
}
