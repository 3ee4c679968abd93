import Foundation
import Hummingbird
import NIOCore

extension Response {
    /// `value` as JSON; the relay's encoder unless a server says otherwise.
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok, encoder: JSONEncoder = RelayAPI.encoder()) throws -> Response
    {
        json(bytes: Array(try encoder.encode(value)), status: status)
    }

    /// A JSON document already encoded (a stored one).
    public static func json(bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    public static func binary(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    public static func binary(_ buffer: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: buffer))
    }

    public static func text(_ text: String, contentType: String = "text/plain") -> Response {
        Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// The open routes both servers have: `GET /healthz` and `GET /v1/certificate` (the PEM a person compares with
/// the fingerprint; clients pin the certificate of the handshake itself).
public struct ServiceRoutes<Context: RequestContext>: Sendable {
    let certificatePEM: String?
    let noCertificate: String

    /// `noCertificate` is the 404's message on a server without TLS.
    public init(certificatePEM: String?, noCertificate: String = "this server serves plain HTTP and has no certificate") {
        self.certificatePEM = certificatePEM
        self.noCertificate = noCertificate
    }

    public func addRoutes(to router: Router<Context>) {
        let pem = certificatePEM, noCertificate = self.noCertificate
        router.get("/healthz") { _, _ in Response.text("ok\n") }
        router.get("/v1/certificate") { _, _ in
            guard let pem else { throw HTTPFailure(.notFound, noCertificate) }
            return Response.text(pem, contentType: "application/x-pem-file")
        }
    }
}
