import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import Testing

/// A context with a principal, for the bearer middleware.
struct TestContext: BearerContext {
    var coreContext: CoreRequestContextStorage
    var principal: String?
    init(source: Source) { coreContext = .init(source: source) }
    static let credentialRequired = "this request needs a test credential"
}

/// The server-side parts both servers are made of: error bodies, bearer authentication, service routes.
@Suite struct ServerPartsTests {
    static let wording = ErrorMiddleware<TestContext>.Wording(tooLarge: "too large here", malformedBody: "malformed here")

    /// A router with the shared middlewares and a few routes that fail in each way the middleware knows.
    func router(certificate: String? = nil) -> Router<TestContext> {
        let router = Router(context: TestContext.self)
        router.add(
            middleware: ErrorMiddleware(logger: Logger(label: "test"), wording: Self.wording) { error in
                (error as? OutpostError).map { HTTPFailure($0) }
            })
        ServiceRoutes(certificatePEM: certificate).addRoutes(to: router)
        router.post("/small") { request, _ -> Response in
            _ = try await request.body.collect(upTo: 4)
            return Response(status: .noContent)
        }
        router.post("/json") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1024)
            return try .json(try JSONDecoder().decode([String: Int].self, from: Data(body.readableBytesView)))
        }
        router.get("/store") { _, _ -> Response in throw OutpostError(.taken, "the name is taken") }
        router.get("/surprise") { _, _ -> Response in throw CocoaError(.fileNoSuchFile) }
        let authed = router.group().add(
            middleware: BearerAuthentication<TestContext>(malformed: "no credential here") { token in
                guard token.hasPrefix("t:") else { return nil }
                guard token == "t:good" else { throw HTTPFailure(.unauthorized, "not valid here") }
                return "alice"
            })
        authed.get("/who") { _, context -> Response in .text(try context.authenticated()) }
        return router
    }

    func test(certificate: String? = nil, _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await Application(router: router(certificate: certificate)).test(.router, body)
    }

    @Test func everyFailureIsAJSONBodyWithItsCodeAndStatus() async throws {
        try await test { client in
            let tooLarge = try await client.execute(uri: "/small", method: .post, body: ByteBuffer(string: "12345"))
            #expect(tooLarge.status == .contentTooLarge)
            #expect(tooLarge.headers[.contentType] == "application/json")
            #expect(String(buffer: tooLarge.body) == #"{"error":"tooLarge","message":"too large here"}"#)
            let malformed = try await client.execute(uri: "/json", method: .post, body: ByteBuffer(string: "[1]"))
            #expect(malformed.status == .badRequest)
            #expect(malformed.failure?.error == "badRequest" && malformed.failure?.message.hasPrefix("malformed here: ") == true)
            let store = try await client.execute(uri: "/store", method: .get)
            #expect(store.status == .conflict && store.failure?.error == "taken" && store.failure?.message == "the name is taken")
            let surprise = try await client.execute(uri: "/surprise", method: .get)
            #expect(surprise.status == .internalServerError && surprise.failure?.error == "internal")
            #expect(surprise.failure?.message == ErrorMiddleware<TestContext>.internalMessage, "the error's text stays in the log")
            let nowhere = try await client.execute(uri: "/nowhere", method: .get)
            #expect(nowhere.status == .notFound && nowhere.failure?.error == "http" && nowhere.failure?.message == "Not Found")
        }
    }

    @Test func theBearerMiddlewareTellsMissingFromInvalidCredentials() async throws {
        try await test { client in
            let none = try await client.execute(uri: "/who", method: .get)
            #expect(none.status == .unauthorized && none.failure?.message == "no credential here")
            let basic = try await client.execute(uri: "/who", method: .get, headers: [.authorization: "Basic t:good"])
            #expect(basic.failure?.message == "no credential here")
            let wrong = try await client.execute(uri: "/who", method: .get, headers: [.authorization: "Bearer t:bad"])
            #expect(wrong.status == .unauthorized && wrong.failure?.message == "not valid here")
            let good = try await client.execute(uri: "/who", method: .get, headers: [.authorization: "Bearer t:good"])
            #expect(good.status == .ok && String(buffer: good.body) == "alice")
        }
    }

    @Test func healthAndCertificate() async throws {
        try await test(certificate: "PEM") { client in
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok && String(buffer: health.body) == "ok\n" && health.headers[.contentType] == "text/plain")
            let pem = try await client.execute(uri: "/v1/certificate", method: .get)
            #expect(String(buffer: pem.body) == "PEM" && pem.headers[.contentType] == "application/x-pem-file")
        }
        try await test { client in
            let none = try await client.execute(uri: "/v1/certificate", method: .get)
            #expect(none.status == .notFound && none.failure?.error == "notFound")
        }
    }

    /// OutpostError's own status and reason phrase; 507 has one too.
    @Test func operatorErrorsKeepTheirStatus() {
        let full = HTTPFailure(OutpostError(.diskFull, "full"))
        #expect(full.status.code == 507 && full.status.reasonPhrase == "Insufficient Storage" && full.code == "diskFull")
        let key = HTTPFailure(OutpostError(.invalidKey, "bad key"), message: "worded")
        #expect(key.status == .badRequest && key.code == "invalidKey" && key.message == "worded")
        #expect(HTTPFailure(.timeout, "late").status == .requestTimeout)
    }

    /// A body past its limit is 413 at once; one that never comes is 408 once its deadline has passed.
    @Test func bodiesAreBoundedInSizeAndTime() async throws {
        let reader = BodyReader(deadline: .zero, minimumRate: 0, server: "test server", deadlineSetting: "some_setting")
        await #expect(throws: HTTPFailure.self) {
            _ = try await reader.collect(RequestBody(buffer: ByteBuffer(string: "12345")), upTo: 4, what: "thing")
        }
        let (stalled, continuation) = AsyncStream.makeStream(of: ByteBuffer.self)
        do {
            _ = try await reader.collect(RequestBody(asyncSequence: stalled), upTo: 4, what: "thing")
            Issue.record("a body that never came was accepted")
        } catch let f as HTTPFailure {
            #expect(f.status == .requestTimeout && f.message.contains("(some_setting)"))
        }
        continuation.finish()
    }
}

extension TestResponse {
    var failure: HTTPErrorBody? { try? JSONDecoder().decode(HTTPErrorBody.self, from: Data(body.readableBytesView)) }
}
