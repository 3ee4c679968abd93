import Foundation
import GRDB
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// gc through the binary while `relay serve` runs (docs/format.md §13): `relay gc` and `store gc` take no
/// exclusive lock, reclaim what no point needs, and the next backup and restore work as if nothing happened.
@Suite struct OnlineGCEndToEndTests {
    /// Moves every time gc reads back two days (what a day of waiting would do), and drops the first recovery
    /// point as a prune would, straight in the index the running relay uses.
    func ageAndDropFirstPoint(_ store: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(30)
        let db = try DatabaseQueue(path: store + "/index.sqlite", configuration: config)
        try db.write { db in
            try db.execute(sql: "DELETE FROM recovery_points WHERE id = (SELECT id FROM recovery_points ORDER BY finished_at LIMIT 1)")
            try db.execute(sql: "UPDATE blobs SET touched_at = touched_at - 172800")
            try db.execute(sql: "UPDATE packs SET created_at = created_at - 172800")
            try db.execute(sql: "UPDATE forgotten_points SET forgotten_at = forgotten_at - 172800")
        }
    }

    @Test func gcRunsWhileTheRelayServes() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let config = try relay.enroll("alpha")
        let data = s.sub("data")
        s.write("data/gone.bin", randomData(1_500_000))
        s.write("data/kept.bin", randomData(700_000))
        #expect(try CLI.run(["backup", "--config", config, data]).status == 0)
        unlink(data + "/gone.bin")
        #expect(try CLI.run(["backup", "--config", config, data]).status == 0)
        let store = relay.data + "/store"
        try ageAndDropFirstPoint(store)

        let dry = try CLI.run(["relay", "gc", "--data", relay.data, "--dry-run", "--json"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let planned = json(dry.stdout) as? [String: Any]
        #expect(planned?["dryRun"] as? Bool == true)
        #expect((planned?["deadBlobs"] as? Int ?? 0) > 0)

        let gc = try CLI.run(["relay", "gc", "--data", relay.data, "--json"])
        #expect(gc.status == 0, "the relay's lock does not stop an online gc: \(gc.stderr)")
        let done = json(gc.stdout) as? [String: Any]
        #expect((done?["bytesFreed"] as? Int ?? 0) > 1_000_000, "the dropped point's file is reclaimed")
        #expect(try CLI.run(["store", "gc", "--store", store]).status == 0)

        // Below an hour of grace, gc needs the store to itself: refused while the relay serves.
        let alone = try CLI.run(["store", "gc", "--store", store, "--grace-hours", "0"])
        #expect(alone.status == 12, "\(alone.stderr)")
        #expect(alone.stderr.contains("locked"))

        s.write("data/new.bin", randomData(300_000))
        #expect(try CLI.run(["backup", "--config", config, data]).status == 0)
        let target = s.sub("out")
        let restore = try CLI.run(["restore", "--config", config, "latest", "--target", target])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(treesDiffer(data, target + data) == [])
        #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0)
        #expect(relay.stop() == 0)
    }
}
