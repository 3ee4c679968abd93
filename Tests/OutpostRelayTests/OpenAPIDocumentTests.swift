import Foundation
import OutpostRelay
import Testing

/// docs/openapi/relay.yaml must describe exactly the routes the server registers (RelayServer.routes), with the
/// same authentication on each.
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
        let served = Set(RelayServer.routes.map { "\($0.method) \($0.path)" })
        let documented = Set(try Self.documentedRoutes().keys)
        #expect(documented == served, "undocumented: \(served.subtracting(documented)); documented but not served: \(documented.subtracting(served))")
    }

    @Test func eachRouteIsDocumentedWithItsAuthentication() throws {
        let documented = try Self.documentedRoutes()
        for r in RelayServer.routes {
            #expect(documented["\(r.method) \(r.path)"] == r.authenticated, "\(r.method) \(r.path): authenticated \(r.authenticated) in the server")
        }
    }
}
