import Testing

@testable import OutpostConsole

/// A machine's page shows its recovery points a page at a time, newest first (issue 13's target: every page under
/// 100 ms with 100 machines and 10,000 points, docs/benchmarks.md), with links to newer and older pages.
@Suite struct MachinePageTests {
    static func render(_ page: Int, shown: Int, total: Int) throws -> String {
        var values = ConsoleRoutes.pointsPage(page, shown: shown, total: total)
        values["name"] = "pc1"
        values["points"] = [[String: Any]]()
        values["jobs"] = [[String: Any]]()
        return try ConsoleLayoutTests.pages().render("pc1", "machine", values, session: nil)
    }

    @Test func theFirstPageLinksToOlderOnesOnly() throws {
        let per = ConsoleRoutes.pointsPerPage
        let html = try Self.render(1, shown: per, total: 2 * per + 5)
        #expect(html.contains("1–\(per) of \(2 * per + 5), newest first"), "\(html)")
        #expect(html.contains("href=\"/machines/pc1?page=2\">older</a>") && !html.contains(">newer</a>"))
    }

    @Test func aMiddlePageLinksBothWaysAndTheLastOnlyToNewer() throws {
        let per = ConsoleRoutes.pointsPerPage
        let middle = try Self.render(2, shown: per, total: 2 * per + 5)
        #expect(middle.contains("\(per + 1)–\(2 * per) of \(2 * per + 5)"))
        #expect(middle.contains("href=\"/machines/pc1?page=1\">newer</a>") && middle.contains("href=\"/machines/pc1?page=3\">older</a>"))
        let last = try Self.render(3, shown: 5, total: 2 * per + 5)
        #expect(last.contains("\(2 * per + 1)–\(2 * per + 5) of \(2 * per + 5)"))
        #expect(last.contains("?page=2\">newer</a>") && !last.contains(">older</a>"))
    }

    @Test func aPagePastTheLastLinksBackToTheLastAndAMachineWithoutPointsSaysNone() throws {
        let past = try Self.render(9, shown: 0, total: 150)
        #expect(past.contains("none on page 9 (150 in all)") && past.contains("?page=2\">newer</a>") && !past.contains(">older</a>"), "\(past)")
        let none = try Self.render(1, shown: 0, total: 0)
        #expect(none.contains("<p>none") && !none.contains(">newer</a>") && !none.contains(">older</a>"))
    }
}
