import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 8: names from a recovery point are printed by `ls` and `find` with terminal control characters escaped,
/// so a file name cannot retitle the window, recolour the screen or move the cursor; `--json` keeps them exact.
@Suite(.serialized) struct ListingEscapesEndToEndTests {
    static let title = "evil\u{1b}]0;pwned\u{07}name"
    static let red = "\u{1b}[31mred\u{9b}2J"

    func controlCharacters(_ text: String) -> [UInt32] {
        text.unicodeScalars.map(\.value).filter { ($0 < 0x20 && $0 != 0x0a) || (0x7f...0x9f).contains($0) }
    }

    @Test func lsAndFindEscapeControlCharacters() throws {
        let s = Scratch()
        let store = s.sub("store")
        let data = s.sub("data")
        s.write("data/" + Self.title, Data([1]))
        s.write("data/sub/" + Self.red, Data([2]))
        symlink("target\u{1b}[2J", data + "/link")
        #expect(try CLI.run(["store", "init", "--store", store]).status == 0)
        let b = try CLI.run(["backup", "--store", store, "--machine", "m1", data])
        #expect(b.status == 0, "\(b.stderr)")

        for args in [["ls"], ["ls", "-l"]] {
            let ls = try CLI.run(args + ["--store", store, "latest"])
            #expect(ls.status == 0, "\(ls.stderr)")
            #expect(controlCharacters(ls.stdout) == [], "\(args): \(ls.stdout.debugDescription)")
            #expect(ls.stdout.contains(data + "/evil\\e]0;pwned\\x07name"))
            #expect(ls.stdout.contains(data + "/sub/\\e[31mred\\u{9b}2J"))
        }
        let long = try CLI.run(["ls", "-l", "--store", store, "latest", data + "/link"])
        #expect(long.stdout.contains("-> target\\e[2J"), "\(long.stdout.debugDescription)")

        let find = try CLI.run(["find", "--store", store, "*red*"])
        #expect(find.status == 0, "\(find.stderr)")
        #expect(controlCharacters(find.stdout) == [], "\(find.stdout.debugDescription)")
        #expect(find.stdout.contains(data + "/sub/\\e[31mred\\u{9b}2J"))
        let whole = try CLI.run(["find", "--store", store, data + "/evil*"])
        #expect(controlCharacters(whole.stdout) == [], "\(whole.stdout.debugDescription)")
        #expect(whole.stdout.contains("evil\\e]0;pwned\\x07name"))

        let json = try CLI.run(["find", "--store", store, "--json", "*red*"])
        #expect(json.status == 0)
        let list = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
        #expect(list?.first?["path"] as? String == data + "/sub/" + Self.red, "JSON keeps the exact name")
        #expect(!json.stdout.contains("\u{1b}"), "JSON escapes it as \\u001b")
    }
}
