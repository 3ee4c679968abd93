import Foundation
import OutpostS3
import Testing

/// The signer against AWS's published vectors: the generic aws-sig-v4-test-suite (credentials AKIDEXAMPLE,
/// 2015-08-30T12:36:00Z, us-east-1, service "service") and the S3 examples of the S3 SigV4 documentation
/// (AKIAIOSFODNN7EXAMPLE, 2013-05-24, examplebucket). Where the suite publishes them, the canonical request and the
/// hash in the string to sign are checked too: they say which line is wrong when a signature is.
@Suite struct SigV4SignerTests {
    static let suite = SigV4Signer(
        credentials: S3Credentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), region: "us-east-1",
        service: "service")
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 20150830T123600Z
    static let host = ("Host", "example.amazonaws.com")
    static let amzDate = ("X-Amz-Date", "20150830T123600Z")

    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var method = "GET"
        var path = "/"
        var query: [(String, String)] = []
        var headers: [(String, String)] = []
        var body = ""
        var canonical: String?
        var stringToSignHash: String?
        var signedHeaders = "host;x-amz-date"
        var signature: String
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        Vector(
            name: "get-vanilla",
            canonical: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" + SigV4Signer.emptyPayloadHash,
            stringToSignHash: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(
            name: "get-vanilla-query-order-key-case", query: [("Param2", "value2"), ("Param1", "value1")],
            canonical: "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                + SigV4Signer.emptyPayloadHash,
            stringToSignHash: "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(
            name: "get-vanilla-query-order-value", query: [("Param1", "value2"), ("Param1", "value1")],
            signature: "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"),
        Vector(
            name: "get-vanilla-query-unreserved",
            query: [
                (
                    "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                    "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                )
            ],
            stringToSignHash: "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
            signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
        Vector(
            name: "get-vanilla-utf8-query", query: [("\u{1234}", "bar")],
            stringToSignHash: "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        Vector(
            name: "get-utf8", path: "/\u{1234}",
            canonical: "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                + SigV4Signer.emptyPayloadHash,
            stringToSignHash: "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
            signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        Vector(
            name: "get-space", path: "/example space/",
            canonical: "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                + SigV4Signer.emptyPayloadHash,
            stringToSignHash: "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
            signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
        Vector(
            name: "get-unreserved", path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            stringToSignHash: "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
            signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"),
        Vector(
            name: "get-header-key-duplicate", headers: [("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
            stringToSignHash: "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c", signedHeaders: "host;my-header1;x-amz-date",
            signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"),
        Vector(
            name: "get-header-value-order",
            headers: [("My-Header1", "value4"), ("My-Header1", "value1"), ("My-Header1", "value3"), ("My-Header1", "value2")],
            stringToSignHash: "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86", signedHeaders: "host;my-header1;x-amz-date",
            signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"),
        Vector(
            name: "get-header-value-trim", headers: [("My-Header1", " value1"), ("My-Header2", "\"a   b   c\"")],
            canonical: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n"
                + "host;my-header1;my-header2;x-amz-date\n" + SigV4Signer.emptyPayloadHash,
            stringToSignHash: "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
            signedHeaders: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        Vector(
            name: "post-x-www-form-urlencoded", method: "POST", headers: [("Content-Type", "application/x-www-form-urlencoded")],
            body: "Param1=value1",
            canonical: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                + "content-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            stringToSignHash: "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281", signedHeaders: "content-type;host;x-amz-date",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ]

    @Test(arguments: vectors)
    func theSuiteVector(_ v: Vector) {
        let s = Self.suite
        let headers = [Self.host, Self.amzDate] + v.headers
        let payload = SigV4Signer.payloadHash(Array(v.body.utf8))
        let canonical = s.canonicalRequest(method: v.method, path: v.path, query: v.query, headers: headers, payloadHash: payload)
        if let expected = v.canonical { #expect(canonical == expected) }
        let sts = s.stringToSign(canonicalRequest: canonical, date: Self.suiteDate)
        let lines = sts.split(separator: "\n").map(String.init)
        #expect(Array(lines.prefix(3)) == ["AWS4-HMAC-SHA256", "20150830T123600Z", "20150830/us-east-1/service/aws4_request"])
        if let expected = v.stringToSignHash { #expect(lines.last == expected) }
        #expect(
            s.authorization(method: v.method, path: v.path, query: v.query, headers: headers, payloadHash: payload, date: Self.suiteDate)
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=\(v.signedHeaders), Signature=\(v.signature)"
        )
    }

    /// get-vanilla-with-session-token: the token is sent and signed as x-amz-security-token; `sign` adds the date.
    @Test func theSessionTokenVector() {
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
        var creds = Self.suite.credentials
        creds.sessionToken = token
        let s = SigV4Signer(credentials: creds, region: "us-east-1", service: "service")
        let headers = s.sign(method: "GET", path: "/", headers: [Self.host], payloadHash: SigV4Signer.emptyPayloadHash, date: Self.suiteDate)
        #expect(headers.contains { $0.0 == "x-amz-security-token" && $0.1 == token })
        #expect(headers.contains { $0.0 == "x-amz-date" && $0.1 == "20150830T123600Z" })
        #expect(!headers.contains { $0.0 == "x-amz-content-sha256" }, "only S3 wants the payload hash as a header")
        #expect(
            headers.last?.1
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        )
    }

    static let s3 = SigV4Signer(
        credentials: S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region: "us-east-1")
    static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)  // 20130524T000000Z
    static let bucketHost = ("host", "examplebucket.s3.amazonaws.com")

    /// The S3 documentation's GET Object example: a ranged read; `sign` adds x-amz-content-sha256 and x-amz-date.
    @Test func theS3GetObjectExample() {
        let headers = Self.s3.sign(
            method: "GET", path: "/test.txt", headers: [Self.bucketHost, ("Range", "bytes=0-9")], payloadHash: SigV4Signer.emptyPayloadHash,
            date: Self.s3Date)
        #expect(
            headers.last?.1
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        )
    }

    /// The PUT Object example: a key with `$` (encoded as %24 in the canonical URI), a signed body hash.
    @Test func theS3PutObjectExample() {
        let body = Array("Welcome to Amazon S3.".utf8)
        #expect(SigV4Signer.payloadHash(body) == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        #expect(SigV4Signer.canonicalPath("/test$file.text") == "/test%24file.text")
        let headers = Self.s3.sign(
            method: "PUT", path: "/test$file.text",
            headers: [Self.bucketHost, ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
            payloadHash: SigV4Signer.payloadHash(body), date: Self.s3Date)
        #expect(headers.last?.1.hasSuffix("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd") == true, "\(headers)")
        let canonical = Self.s3.canonicalRequest(
            method: "PUT", path: "/test$file.text", query: [], headers: Array(headers.dropLast()), payloadHash: SigV4Signer.payloadHash(body))
        #expect(canonical.hasPrefix("PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:examplebucket.s3.amazonaws.com\n"))
        #expect(
            Self.s3.stringToSign(canonicalRequest: canonical, date: Self.s3Date).hasSuffix(
                "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"))
    }

    /// The GET Bucket (List Objects) example: query parameters signed and sorted.
    @Test func theS3ListObjectsExample() {
        let headers = Self.s3.sign(
            method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")], headers: [Self.bucketHost],
            payloadHash: SigV4Signer.emptyPayloadHash, date: Self.s3Date)
        #expect(headers.last?.1.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true, "\(headers)")
    }

    @Test func encodingFollowsTheSigV4Rules() {
        #expect(SigV4Signer.uriEncode("a/b c+d=e&f~g", encodeSlash: true) == "a%2Fb%20c%2Bd%3De%26f~g")
        #expect(SigV4Signer.uriEncode("a/b", encodeSlash: false) == "a/b")
        #expect(SigV4Signer.canonicalQuery([("b", ""), ("a", "1"), ("uploads", "")]) == "a=1&b=&uploads=")
        #expect(SigV4Signer.canonicalQuery([("x", "a.b"), ("x", "a/b")]) == "x=a%2Fb&x=a.b", "values sort by their encoded bytes")
        #expect(SigV4Signer.canonicalPath("") == "/")
        #expect(SigV4Signer.amzDate(Date(timeIntervalSince1970: 0)) == "19700101T000000Z")
    }
}
