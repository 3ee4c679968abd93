import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import OutpostCore

/// A request's failure as both servers answer it: a status, a stable code for scripts and a message for people,
/// sent as the JSON body `{"error": code, "message": …}` (docs/protocol.md §7, docs/vault.md §7.4).
public struct HTTPFailure: HTTPResponseError, CustomStringConvertible, Sendable {
    /// The failures handlers throw; the code is the case's name.
    public enum Kind: String, Sendable {
        case badRequest, unauthorized, forbidden, notFound, conflict, unprocessable, tooLarge, timeout, rangeNotSatisfiable, diskFull
        case internalError

        public var status: HTTPResponse.Status {
            switch self {
            case .badRequest: .badRequest
            case .unauthorized: .unauthorized
            case .forbidden: .forbidden
            case .notFound: .notFound
            case .conflict: .conflict
            case .unprocessable: .unprocessableContent
            case .tooLarge: .contentTooLarge
            case .timeout: .requestTimeout
            case .rangeNotSatisfiable: .rangeNotSatisfiable
            case .diskFull: .insufficientStorage
            case .internalError: .internalServerError
            }
        }
    }

    public let status: HTTPResponse.Status
    public let code: String
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.init(status: kind.status, code: kind.rawValue, message: message)
    }

    public init(status: HTTPResponse.Status, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    /// An operator-facing error answered with its own status (`OutpostError.httpStatus`) and code; `message`
    /// replaces its text where a server words it for the client.
    public init(_ error: OutpostError, message: String? = nil) {
        self.init(status: .outpost(error.httpStatus), code: error.code.rawValue, message: message ?? error.message)
    }

    public var description: String { message }

    public func response(from request: Request, context: some RequestContext) throws -> Response { response() }

    func response() -> Response {
        let body = (try? RelayAPI.encoder().encode(HTTPErrorBody(error: code, message: message))) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// The JSON body of every failure.
public struct HTTPErrorBody: Codable, Sendable {
    public var error: String
    public var message: String
    public init(error: String, message: String) { self.error = error; self.message = message }
}

extension HTTPResponse.Status {
    /// 507, which HTTPTypes does not name.
    public static let insufficientStorage = HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")

    /// The status of `OutpostError.httpStatus`, with its reason phrase.
    static func outpost(_ code: Int) -> HTTPResponse.Status {
        switch code {
        case 400: .badRequest
        case 401: .unauthorized
        case 403: .forbidden
        case 404: .notFound
        case 409: .conflict
        case 507: .insufficientStorage
        default: .internalServerError
        }
    }
}
