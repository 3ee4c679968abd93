import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import OutpostRelay
import Testing

/// docs/openapi/relay.yaml must describe exactly the routes the server registers, with the same
/// authentication on each: the router's own list of routes, and a request without a credential to each.
@Suite struct OpenAPIDocumentTests {
    /// "METHOD /path" → whether the operation requires the bearer credential (`security: []` means open).
    static func documentedRoutes() throws -> [String: Bool] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi/relay.yaml"), encoding: .utf8)
        var routes: [String: Bool] = [:]
        var inPaths = false
        var path: String?
        var operation: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            if inPaths, let first = line.first, first != " ", first != "#" { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /") && line.hasSuffix(":") && !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if let p = path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                if ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"].contains(method) {
                    operation = "\(method) \(p)"
                    routes[operation!] = true
                }
            } else if let op = operation, line.hasPrefix("      security:") {
                routes[op] = !line.hasSuffix("[]")
            }
        }
        return routes
    }

    @Test func theDocumentListsExactlyTheServersRoutes() throws {
        let relay = try TestRelay()
        let served = Set(relay.server.buildRouter().routes.map { "\($0.method) \($0.path)" })
        let documented = Set(try Self.documentedRoutes().keys)
        #expect(documented == served, "undocumented: \(served.subtracting(documented)); documented but not served: \(documented.subtracting(served))")
    }

    /// A route that needs the credential answers 401 without one; an open route never does.
    @Test func eachRouteIsDocumentedWithItsAuthentication() async throws {
        let relay = try TestRelay()
        let documented = try Self.documentedRoutes()
        let routes = relay.server.buildRouter().routes.map { ($0.method, "\($0.path)") }
        #expect(routes.count == documented.count)
        try await relay.test { client in
            for (method, path) in routes {
                let status = try await client.execute(uri: path, method: method).status
                #expect((status == .unauthorized) == documented["\(method) \(path)"], "\(method) \(path) answers \(status) without a credential")
            }
        }
    }
}
