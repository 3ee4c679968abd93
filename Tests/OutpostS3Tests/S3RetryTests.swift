import Crypto
import Foundation
import NIOCore
import OutpostCore
import OutpostObjects
import Testing

@testable import OutpostS3

/// Retries, error wording and request shape, with a scripted transport standing in for the service: the
/// failures a real engine will not produce on demand (SlowDown, 500s, cut connections, an answer lost after the
/// write happened). The real engine's behaviour is in S3CephTests.
@Suite struct S3RetryTests {
    /// Answers from a script, one per request; records what was sent.
    final class Scripted: S3Transport, @unchecked Sendable {
        enum Step {
            case answer(Int, String = "", [(String, String)] = [])
            case cut
        }
        private let lock = NSLock()
        private var steps: [Step]
        private(set) var sent: [S3WireRequest] = []
        init(_ steps: [Step]) { self.steps = steps }

        func send(_ request: S3WireRequest, timeout: TimeAmount) throws -> S3WireResponse {
            let step: Step = lock.withLock {
                sent.append(request)
                return steps.isEmpty ? .answer(599, "script ran out") : steps.removeFirst()
            }
            switch step {
            case .cut: throw ChannelError.eof
            case .answer(let status, let body, let headers): return S3WireResponse(status: status, headers: headers, body: Array(body.utf8))
            }
        }
    }

    static func error(_ code: String, _ message: String = "") -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>\(code)</Code><Message>\(message)</Message><RequestId>tx1</RequestId></Error>"
    }

    static func store(_ t: Scripted, attempts: Int = 4, addressing: S3Addressing = .path, endpoint: String = "http://127.0.0.1:7480") throws
        -> S3ObjectStore
    {
        var tuning = S3ObjectStore.Tuning()
        tuning.maxAttempts = attempts
        tuning.baseDelay = 0.001
        tuning.maxDelay = 0.002
        return try S3ObjectStore(
            location: S3Location(endpoint: endpoint, bucket: "vault-b", addressing: addressing),
            credentials: S3Credentials(accessKeyID: "AKID", secretAccessKey: "SECRET"), tuning: tuning, transport: t)
    }

    @Test func slowDownAndServerErrorsAreRetried() throws {
        let t = Scripted([.answer(503, Self.error("SlowDown")), .answer(500, Self.error("InternalError")), .cut, .answer(200)])
        #expect(try Self.store(t).putIfAbsent("k", [1, 2]))
        #expect(t.sent.count == 4)
        #expect(Set(t.sent.map { $0.headers.first { $0.0 == "x-amz-date" }?.1 ?? "" }).count >= 1, "each attempt signed afresh")
        #expect(t.sent.allSatisfy { $0.headers.contains { $0.0 == "Authorization" } })
    }

    @Test func throttlingToTheEndIsNamed() throws {
        let t = Scripted(Array(repeating: .answer(503, Self.error("SlowDown", "Please reduce your request rate.")), count: 3))
        let e = #expect(throws: OutpostError.self) { try Self.store(t, attempts: 3).get("containers/r1/p") }
        #expect(t.sent.count == 3, "attempts are bounded")
        #expect(e?.code == .remote)
        #expect(e?.message.contains("GetObject of vault-b/containers/r1/p") == true, "\(e?.message ?? "")")
        #expect(e?.message.contains("throttled") == true && e?.message.contains("SlowDown") == true, "\(e?.message ?? "")")
    }

    @Test func noAnswerAtAllIsUnreachable() throws {
        let t = Scripted([.cut, .cut])
        let e = #expect(throws: OutpostError.self) { try Self.store(t, attempts: 2).list(prefix: "x/") }
        #expect(e?.code == .unreachable && e?.exitCode == .unreachable)
        #expect(e?.message.contains("cannot reach the S3 endpoint http://127.0.0.1:7480") == true, "\(e?.message ?? "")")
    }

    /// A real socket: nothing listens on port 1 of loopback.
    @Test func aRefusedConnectionIsUnreachable() throws {
        var tuning = S3ObjectStore.Tuning()
        tuning.maxAttempts = 2
        tuning.baseDelay = 0.01
        let store = try S3ObjectStore(
            location: S3Location(endpoint: "http://127.0.0.1:1", bucket: "vault-b"),
            credentials: S3Credentials(accessKeyID: "a", secretAccessKey: "b"),
            tuning: tuning)
        let e = #expect(throws: OutpostError.self) { try store.ensureBucket() }
        #expect(e?.code == .unreachable, "\(e?.message ?? "")")
    }

    /// The PUT went through but its answer was lost: the retry's 412 is our own object (same MD5), so created.
    @Test func aLostAnswerToAPutIsRecognised() throws {
        let bytes: [UInt8] = [1, 2, 3]
        let md5 = Hex.encode(Array(Insecure.MD5.hash(data: bytes)))
        let t = Scripted([.cut, .answer(412, Self.error("PreconditionFailed")), .answer(200, "", [("ETag", "\"\(md5)\""), ("Content-Length", "3")])])
        #expect(try Self.store(t).putIfAbsent("k", bytes))
        #expect(t.sent.map(\.method) == ["PUT", "PUT", "HEAD"])
        let other = Scripted([.cut, .answer(412, Self.error("PreconditionFailed")), .answer(200, "", [("ETag", "\"0123\"")])])
        #expect(try !Self.store(other).putIfAbsent("k", bytes), "someone else's object: not created")
        let plain = Scripted([.answer(412, Self.error("PreconditionFailed"))])
        #expect(try !Self.store(plain).putIfAbsent("k", bytes))
        #expect(plain.sent.count == 1, "a plain 412 needs no second look")
    }

    @Test func requestsCarryTheConditionAndTheSignedPayload() throws {
        let t = Scripted([.answer(200)])
        _ = try Self.store(t).putIfAbsent("containers/r/k", [9, 9])
        let r = try #require(t.sent.first)
        #expect(r.url == "http://127.0.0.1:7480/vault-b/containers/r/k")
        let h = Dictionary(r.headers.map { ($0.0.lowercased(), $0.1) }, uniquingKeysWith: { a, _ in a })
        #expect(h["if-none-match"] == "*")
        #expect(h["host"] == "127.0.0.1:7480")
        #expect(h["x-amz-content-sha256"] == SigV4Signer.payloadHash([9, 9]))
        #expect(h["authorization"]?.contains("SignedHeaders=content-type;host;if-none-match;x-amz-content-sha256;x-amz-date") == true)
    }

    @Test func virtualHostedAddressingPutsTheBucketInTheHost() throws {
        let t = Scripted([.answer(200, "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")])
        #expect(try Self.store(t, addressing: .virtual, endpoint: "https://s3.example.com").list(prefix: "a/") == [])
        let r = try #require(t.sent.first)
        #expect(r.url == "https://vault-b.s3.example.com/?list-type=2&max-keys=1000&prefix=a%2F")
        #expect(r.headers.contains { $0.0 == "host" && $0.1 == "vault-b.s3.example.com" })
        #expect(throws: OutpostError.self, "an address has no subdomains") {
            try Self.store(t, addressing: .virtual, endpoint: "http://127.0.0.1:9000")
        }
    }

    @Test func listingFollowsContinuationTokens() throws {
        let page1 =
            "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>true</IsTruncated><NextContinuationToken>t/1+=</NextContinuationToken>"
            + "<Contents><Key>b</Key><Size>2</Size></Contents><Contents><Key>a&amp;</Key><Size>1</Size></Contents></ListBucketResult>"
        let page2 = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>c</Key><Size>3</Size></Contents></ListBucketResult>"
        let t = Scripted([.answer(200, page1), .answer(200, page2)])
        let listed = try Self.store(t).list(prefix: "")
        #expect(listed.map(\.key) == ["a&", "b", "c"] && listed.map(\.size) == [1, 2, 3])
        #expect(t.sent.last?.url.contains("continuation-token=t%2F1%2B%3D") == true, "\(t.sent.last?.url ?? "")")
    }

    @Test func aWrongRegionIsNamed() throws {
        let t = Scripted([.answer(400, Self.error("AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong; expecting 'eu-west-1'"))])
        let e = #expect(throws: OutpostError.self) { try Self.store(t).get("k") }
        #expect(e?.code == .config && e?.message.contains("region us-east-1") == true, "\(e?.message ?? "")")
    }
}

@Suite struct S3CredentialsTests {
    @Test func theDefaultProfileOfACredentialsFile() throws {
        let c = try S3Credentials.parse("# vault\n[default]\naws_access_key_id = AK\naws_secret_access_key= S/K+\n\n", file: "f")
        #expect(c == S3Credentials(accessKeyID: "AK", secretAccessKey: "S/K+"))
        #expect(try S3Credentials.parse("aws_access_key_id=A\naws_secret_access_key=B\naws_session_token=T", file: "f").sessionToken == "T")
        #expect(throws: OutpostError.self) { try S3Credentials.parse("[other]\naws_access_key_id=A\naws_secret_access_key=B", file: "f") }
        #expect(throws: OutpostError.self) { try S3Credentials.parse("aws_access_key_id=A", file: "f") }
        #expect(throws: OutpostError.self) { try S3Credentials.parse("region=x\naws_access_key_id=A\naws_secret_access_key=B", file: "f") }
        #expect("\(c)".contains("AK") && !"\(c)".contains("S/K+"), "a description never shows the secret")
    }

    @Test func aFileOthersCanReadIsRefused() throws {
        let path = NSTemporaryDirectory() + "/outpost-s3creds-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = FileManager.default.createFile(
            atPath: path, contents: Data("aws_access_key_id=A\naws_secret_access_key=B\n".utf8), attributes: [.posixPermissions: 0o644])
        let e = #expect(throws: OutpostError.self) { try S3Credentials.load(file: path) }
        #expect(e?.message.contains("chmod 600") == true)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        #expect(try S3Credentials.load(file: path).accessKeyID == "A")
    }

    @Test func theEnvironment() throws {
        let env = ["AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "B", "AWS_SESSION_TOKEN": "T"]
        #expect(try S3Credentials.load(file: nil, environment: env) == S3Credentials(accessKeyID: "A", secretAccessKey: "B", sessionToken: "T"))
        let e = #expect(throws: OutpostError.self) { try S3Credentials.load(file: nil, environment: [:]) }
        #expect(e?.message.contains("AWS_ACCESS_KEY_ID") == true)
    }
}

/// The XML reader of S3's answers.
@Suite struct S3XMLTests {
    @Test func readsWhatS3Sends() throws {
        let doc = """
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
              <Contents><Key>a&amp;b&#x2F;c&#47;&lt;&gt;&quot;&apos;</Key><Size>12</Size><Owner/></Contents>
              <Contents><Key><![CDATA[x<y]]></Key><s3:Size xmlns:s3="x">3</s3:Size></Contents>
              <IsTruncated attr='a>b'>false</IsTruncated>
            </ListBucketResult>
            """
        let root = try #require(S3XMLNode.parse(Array(doc.utf8)))
        #expect(root.name == "ListBucketResult")
        #expect(root.all("Contents").map { $0.value("Key") } == ["a&b/c/<>\"'", "x<y"])
        #expect(root.all("Contents").map { $0.value("Size") } == ["12", "3"])
        #expect(root.value("IsTruncated") == "false")
    }

    @Test(arguments: ["", "<a>", "<a></b>", "<a>&bogus;</a>", "<a/><b/>", "text", "<a>x</a>trailing", "<>"])
    func refusesMalformedDocuments(_ doc: String) {
        #expect(S3XMLNode.parse(Array(doc.utf8)) == nil)
    }
}
