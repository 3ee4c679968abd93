import Testing

@testable import OutpostConsole

/// The layout around every page of both consoles, rendered without a server.
@Suite struct ConsoleLayoutTests {
    static func pages() throws -> ConsolePages {
        ConsolePages(library: try ConsoleTemplates.library(), site: "branch", nav: [("/", "Overview"), ("/alerts", "Alerts")])
    }

    /// Found in a real browser (ConsoleBrowserEndToEndTests): the login page's header showed the links and a
    /// "Log out nil" button to a visitor without a session.
    @Test func withoutASessionTheHeaderHasNoLinksAndNoLogOut() throws {
        let html = try Self.pages().render("Log in", "login", [:], session: nil)
        #expect(html.contains("<h1>Log in</h1>"))
        #expect(!html.contains("Log out") && !html.contains("nil") && !html.contains("href=\"/alerts\""), "\(html)")
    }

    @Test func withASessionTheHeaderHasTheLinksAndTheAdministratorsLogOut() throws {
        let session = ConsoleSession(admin: "alice", token: String(repeating: "a", count: 64), csrf: String(repeating: "c", count: 64))
        let html = try Self.pages().render("Alerts", "alerts", ["alerts": [[String: Any]]()], session: session)
        #expect(html.contains("href=\"/alerts\"") && html.contains("Log out alice"))
        #expect(html.contains("name=\"csrf\" value=\"\(session.csrf)\""))
    }

    /// A point's 64-digit id or a long path wraps instead of widening the page past a phone (checked at 390 px
    /// in ConsoleBrowserEndToEndTests).
    @Test func longWordsWrap() throws {
        #expect(ConsoleTemplates.layout.contains("overflow-wrap:break-word"))
    }
}
