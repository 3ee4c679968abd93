import Hummingbird
import Logging
import NIOCore

/// Turns every failure of a request into a JSON body `{"error": code, "message": …}` (`HTTPFailure`). One for
/// both servers: what differs is their wording and how they answer their own layers' errors (`translate`).
public struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// A server's words for the failures the HTTP layer itself finds.
    public struct Wording: Sendable {
        /// The message of a 413 for a body past a limit of `collect(upTo:)`.
        public var tooLarge: String
        /// What precedes the decoder's own words in a 400 for a JSON body that does not decode.
        public var malformedBody: String

        public init(tooLarge: String, malformedBody: String) {
            self.tooLarge = tooLarge
            self.malformedBody = malformedBody
        }
    }

    let logger: Logger
    let wording: Wording
    /// The server's answer to an error of its own layers (its store, its object store); nil leaves it `internal`.
    let translate: @Sendable (any Error) -> HTTPFailure?

    public init(logger: Logger, wording: Wording, translate: @escaping @Sendable (any Error) -> HTTPFailure? = { _ in nil }) {
        self.logger = logger
        self.wording = wording
        self.translate = translate
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return failure(for: error).response()
        }
    }

    /// What a caller reads for a failure no layer expected.
    public static var internalMessage: String { "the server could not serve this request; its operator finds the reason in its log" }

    /// The answer to `error`. Anything no layer expects is logged and answered as 500 `internal`.
    public func failure(for error: any Error) -> HTTPFailure {
        switch error {
        case let f as HTTPFailure:
            return f
        case let e as HTTPError:
            // Hummingbird's own: no route (404), a wrong method, a refused upload.
            return HTTPFailure(status: e.status, code: "http", message: e.body ?? e.status.reasonPhrase)
        case let e as DecodingError:
            return HTTPFailure(.badRequest, "\(wording.malformedBody): \(e)")
        case is NIOTooManyBytesError:
            return HTTPFailure(.tooLarge, wording.tooLarge)
        default:
            if let f = translate(error) { return f }
            // Logged in full, answered without its text: it can name the server's paths, its vault's address or
            // its storage's credentials, which the caller has no need of (docs/threat_model.md).
            logger.error("unexpected failure", metadata: ["error": "\(error)"])
            return HTTPFailure(status: .internalServerError, code: "internal", message: Self.internalMessage)
        }
    }
}
