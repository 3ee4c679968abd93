import OutpostTestSupport
import Testing

@testable import OutpostArchive

@Suite struct GlobPatternTests {
    @Test func aPatternWithASlashMatchesThePathOtherwiseTheName() {
        let name = GlobPattern("*.tmp")
        #expect(!name.matchesWholePath)
        #expect(name.matches(path: bytes("/srv/a/x.tmp"), name: bytes("x.tmp")))
        #expect(!name.matches(path: bytes("/srv/x.tmp/y"), name: bytes("y")))
        let path = GlobPattern("/srv/*/cache")
        #expect(path.matchesWholePath)
        #expect(path.matches(path: bytes("/srv/a/cache"), name: bytes("cache")))
        #expect(path.matches(path: bytes("/srv/a/b/cache"), name: bytes("cache")), "no FNM_PATHNAME: * crosses '/'")
        #expect(!path.matches(path: bytes("/other/a/cache"), name: bytes("cache")))
    }

    @Test func exclusionsUseTheSameRule() {
        let list = ExclusionList(["*.tmp", "/data/cache"])
        #expect(list.patterns == ["*.tmp", "/data/cache"])
        #expect(list.excludes(path: bytes("/data/sub/x.tmp"), name: bytes("x.tmp")))
        #expect(list.excludes(path: bytes("/data/cache"), name: bytes("cache")))
        #expect(!list.excludes(path: bytes("/data/sub/cache"), name: bytes("cache")))
        #expect(!ExclusionList([]).excludes(path: bytes("/a"), name: bytes("a")))
    }
}
