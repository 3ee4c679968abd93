import Hummingbird

/// A request context that carries whom the request's bearer credential belongs to, once it is checked.
public protocol BearerContext: RequestContext {
    associatedtype Principal: Sendable
    var principal: Principal? { get set }
    /// The 401's message for a route reached without a credential.
    static var credentialRequired: String { get }
}

extension BearerContext {
    /// The credential's owner; 401 when the request has none.
    public func authenticated() throws -> Principal {
        guard let principal else { throw HTTPFailure(.unauthorized, Self.credentialRequired) }
        return principal
    }
}

/// Checks `Authorization: Bearer <credential>` and records its owner in the context. One for both servers:
/// `check` knows their credentials.
public struct BearerAuthentication<Context: BearerContext>: RouterMiddleware {
    let malformed: String
    let check: @Sendable (String) throws -> Context.Principal?

    /// `check` returns the credential's owner, nil when the text is no credential at all (answered with
    /// `malformed`), and throws an `HTTPFailure` when it is a credential that is not valid.
    public init(malformed: String, check: @escaping @Sendable (String) throws -> Context.Principal?) {
        self.malformed = malformed
        self.check = check
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let scheme = "Bearer "
        guard let header = request.headers[.authorization], header.hasPrefix(scheme),
            let principal = try check(String(header.dropFirst(scheme.count)))
        else {
            throw HTTPFailure(.unauthorized, malformed)
        }
        var context = context
        context.principal = principal
        return try await next(request, context)
    }
}
