import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The local backup path driven through the real binary, as an operator's script would.
@Suite(.serialized) struct LocalBackupEndToEndTests {
    func corpus(_ s: Scratch) -> String {
        s.write("data/docs/report.txt", Data(String(repeating: "quarterly numbers\n", count: 20_000).utf8))
        s.write("data/bin/blob", randomData(3_000_000))
        s.write("data/bin/run.sh", Data("#!/bin/sh\n".utf8), mode: 0o755)
        s.write("data/empty", Data())
        symlink("docs/report.txt", s.sub("data/latest"))
        return s.sub("data")
    }

    @Test func backupListRestoreCheck() throws {
        let s = Scratch()
        let store = s.sub("store")
        let data = corpus(s)
        #expect(try CLI.run(["store", "init", "--store", store]).status == 0)
        let b = try CLI.run(["backup", "--store", store, "--machine", "web1", data])
        #expect(b.status == 0, "\(b.stderr)")
        #expect(b.stdout.contains("recovery point"))
        #expect(b.stdout.contains("4 new"))

        let points = try CLI.run(["points", "--store", store, "--json"])
        #expect(points.status == 0)
        let list = try JSONSerialization.jsonObject(with: Data(points.stdout.utf8)) as? [[String: Any]]
        let id = try #require(list?.first?["id"] as? String)
        #expect(id.count == 64)
        #expect(list?.first?["machine"] as? String == "web1")

        let ls = try CLI.run(["ls", "--store", store, String(id.prefix(8)), data + "/docs"])
        #expect(ls.status == 0)
        #expect(ls.stdout.contains(data + "/docs/report.txt"))

        let target = s.sub("restore")
        let r = try CLI.run(["restore", "--store", store, "--machine", "web1", "latest", "--target", target])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(treesDiffer(data, target + data) == [])

        let again = try CLI.run(["restore", "--store", store, "--machine", "web1", "latest", "--target", target])
        #expect(again.status == 15)
        #expect(again.stderr.contains("--overwrite"))

        let check = try CLI.run(["check", "--store", store, "--read-data"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")

        let second = try CLI.run(["backup", "--store", store, "--machine", "web1", "--json", data])
        #expect(second.status == 0)
        let summary = (try JSONSerialization.jsonObject(with: Data(second.stdout.utf8)) as? [String: Any])?["summary"] as? [String: Any]
        #expect(summary?["bytesRead"] as? Int == 0, "unchanged files are not read again")
        #expect(summary?["filesUnchanged"] as? Int == 4)
    }

    @Test func errorsHaveDistinctExitCodesAndSayWhatToDo() throws {
        let s = Scratch()
        let notStore = s.sub("plain")
        try FileManager.default.createDirectory(atPath: notStore, withIntermediateDirectories: true)
        let r1 = try CLI.run(["points", "--store", notStore])
        #expect(r1.status == 10)
        #expect(r1.stderr.contains("not an Outpost store"))
        #expect(!r1.stderr.contains("Fatal error"))

        let store = s.sub("store")
        try CLI.run(["store", "init", "--store", store])
        let missing = try CLI.run(["restore", "--store", store, "--machine", "x", "latest", "--target", s.sub("t")])
        #expect(missing.status == 14)
        #expect(missing.stderr.contains("run a backup first"))

        let usage = try CLI.run(["backup", "--store", store, s.path])
        #expect(usage.status == 64, "a missing --machine is a usage error")

        let nothing = try CLI.run(["backup", "--store", store, "--machine", "m", s.sub("does-not-exist")])
        #expect(nothing.status == 64)
        #expect(nothing.stderr.contains("does-not-exist"))

        let configPath = store + "/config"
        let config = try String(contentsOfFile: configPath, encoding: .utf8).replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 7")
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        let newer = try CLI.run(["points", "--store", store])
        #expect(newer.status == 11)
        #expect(newer.stderr.contains("upgrade outpost"))
    }

    @Test func checkNamesDamageAndExits13() throws {
        let s = Scratch()
        let store = s.sub("store")
        s.write("data/a", randomData(500_000))
        try CLI.run(["store", "init", "--store", store])
        #expect(try CLI.run(["backup", "--store", store, "--machine", "m", s.sub("data")]).status == 0)
        let packs = try FileManager.default.subpathsOfDirectory(atPath: store + "/packs").filter { $0.hasSuffix(".pack") }
        let pack = try #require(packs.first)
        let fd = open(store + "/packs/" + pack, O_RDWR)
        var b: UInt8 = 0
        pread(fd, &b, 1, 200)
        b ^= 0x55
        pwrite(fd, &b, 1, 200)
        close(fd)
        let check = try CLI.run(["check", "--store", store, "--read-data"])
        #expect(check.status == 13)
        #expect(check.stdout.contains("damaged: pack"))
        #expect(check.stdout.contains("/a needs chunk"))
    }

    static let canDropPrivileges = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")

    @Test(.enabled(if: canDropPrivileges, "needs root and setpriv to run the backup as an unprivileged user"))
    func unreadableFilesAreListedAndTheBackupExits3() throws {
        let s = Scratch()
        chmod(s.path, 0o755)
        let store = s.sub("store")
        s.write("data/readable", Data("fine".utf8))
        s.write("data/secret", Data("no".utf8), mode: 0o000)
        chmod(s.sub("data"), 0o755)
        try CLI.run(["store", "init", "--store", store])
        #expect(try CLI.system("/bin/chown", ["-R", "65534:65534", store]) == 0)
        let r = try CLI.run(
            ["backup", "--store", store, "--machine", "m", s.sub("data")],
            prefix: ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        #expect(r.status == 3, "\(r.stderr)")
        #expect(r.stderr.contains(s.sub("data/secret")))
        #expect(r.stderr.contains("Permission denied"))
        let points = try CLI.run(["points", "--store", store, "--json"])
        #expect(points.stdout.contains("\"machine\" : \"m\""), "the recovery point is committed")
    }

    /// kill -9 in the middle of a backup: the store stays clean, nothing half-committed is listed, the next
    /// backup reuses what was sealed, and gc removes the rest.
    @Test func aKilledBackupLeavesACleanStoreAndTheNextOneResumes() throws {
        let s = Scratch()
        let store = s.sub("store")
        for i in 0..<12 { s.write("data/f\(i)", randomData(25_000_000)) }
        try CLI.run(["store", "init", "--store", store, "--pack-size-mib", "4"])
        let job = try CLI.start(["backup", "--store", store, "--machine", "m", s.sub("data")])
        // Wait (bounded) until at least two packs are sealed, then kill.
        let deadline = Date().addingTimeInterval(60)
        var sealed = 0
        while Date() < deadline && job.isRunning {
            sealed = ((try? FileManager.default.subpathsOfDirectory(atPath: store + "/packs")) ?? []).filter { $0.hasSuffix(".pack") }.count
            if sealed >= 2 { break }
            usleep(2000)
        }
        #expect(job.isRunning, "the backup finished before it could be killed; make the corpus larger")
        kill(job.processIdentifier, SIGKILL)
        job.waitUntilExit()
        #expect(sealed >= 2)

        let check = try CLI.run(["check", "--store", store, "--read-data"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let points = try CLI.run(["points", "--store", store, "--json"])
        let listed = try JSONSerialization.jsonObject(with: Data(points.stdout.utf8)) as? [Any]
        #expect(listed?.count == 0, "no recovery point of the killed job is listed")

        let resumed = try CLI.run(["backup", "--store", store, "--machine", "m", "--json", s.sub("data")])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let summary = (try JSONSerialization.jsonObject(with: Data(resumed.stdout.utf8)) as? [String: Any])?["summary"] as? [String: Any]
        let added = try #require(summary?["bytesAddedRaw"] as? Int)
        #expect(added < 300_000_000 - 4_000_000, "chunks sealed before the kill are not stored again")

        #expect(try CLI.run(["store", "gc", "--store", store]).status == 0)
        #expect(try CLI.run(["check", "--store", store, "--read-data"]).status == 0)
        let target = s.sub("out")
        #expect(try CLI.run(["restore", "--store", store, "--machine", "m", "latest", "--target", target]).status == 0)
        #expect(treesDiffer(s.sub("data"), target + s.sub("data")) == [])
    }
}
