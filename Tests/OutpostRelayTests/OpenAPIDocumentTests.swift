import Foundation
import OutpostRelay
import Testing

/// docs/openapi/relay.yaml must describe exactly the routes the server registers (RelayServer.routes).
@Suite struct OpenAPIDocumentTests {
    static func documentedRoutes() throws -> Set<String> {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi/relay.yaml"), encoding: .utf8)
        var routes = Set<String>()
        var inPaths = false
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            if inPaths, let first = line.first, first != " ", first != "#" { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /") && line.hasSuffix(":") && !line.hasPrefix("   ") {
                current = String(line.dropFirst(2).dropLast())
            } else if let path = current, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                if ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"].contains(method) { routes.insert("\(method) \(path)") }
            }
        }
        return routes
    }

    @Test func theDocumentListsExactlyTheServersRoutes() throws {
        let served = Set(RelayServer.routes.map { "\($0.method) \($0.path)" })
        let documented = try Self.documentedRoutes()
        #expect(documented == served, "undocumented: \(served.subtracting(documented)); documented but not served: \(documented.subtracting(served))")
    }

    @Test func authenticatedRoutesAreMarkedSo() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/openapi/relay.yaml"), encoding: .utf8)
        #expect(text.contains("bearerAuth") || text.contains("bearer"))
        #expect(RelayServer.routes.filter(\.authenticated).count == 6)
    }
}
