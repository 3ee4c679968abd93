import Foundation
import OutpostCore
import OutpostRelay
import OutpostStore
import Testing

/// `relay prune` applies the history retention of `[jobs] keep_days` (as `relay serve` does every hour), and
/// reports it; `--dry-run` deletes nothing.
@Suite struct HistoryRetentionEndToEndTests {
    @Test func relayPruneDeletesTheHistoryOlderThanKeepDays() throws {
        let s = Scratch()
        let data = s.sub("relay")
        #expect(try CLI.run(["relay", "init", "--data", data]).status == 0)
        try String(contentsOfFile: data + "/relay.toml", encoding: .utf8).appending("\n[jobs]\nkeep_days = 30\n")
            .write(toFile: data + "/relay.toml", atomically: true, encoding: .utf8)
        do {
            let log = JobLog(store: try openStoreAsTheBinaryDoes(data + "/store"))
            let old = Date().addingTimeInterval(-40 * 86400)
            for state in [Job.State.failed, .completed, .failed] {
                _ = try log.record(.backup, machine: "pc1", state: state, startedAt: old, endedAt: old + 60, bytes: 0, files: 0, detail: nil)
            }
            _ = try log.record(.backup, machine: "pc1", state: .completed, startedAt: Date(), endedAt: Date(), bytes: 0, files: 0, detail: nil)
        }
        let dry = try CLI.run(["relay", "prune", "--data", data, "--dry-run"])
        #expect(dry.status == 0 && !dry.stdout.contains("history:"), "\(dry.stdout)")

        let prune = try CLI.run(["relay", "prune", "--data", data, "--json"])
        #expect(prune.status == 0, "\(prune.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(prune.stdout.utf8)) as? [String: Any])
        let history = try #require(json["history"] as? [String: Any], "\(prune.stdout)")
        #expect(history["jobs"] as? Int == 3 && history["alerts"] as? Int == 0 && history["keepDays"] as? Int == 30, "\(history)")

        let text = try CLI.run(["relay", "prune", "--data", data])
        #expect(text.stdout.contains("history: 0 jobs and 0 alerts older than [jobs] keep_days 30 deleted"), "\(text.stdout)")
        let jobs = try CLI.run(["relay", "jobs", "--data", data, "--json"])
        let left = try #require(try JSONSerialization.jsonObject(with: Data(jobs.stdout.utf8)) as? [[String: Any]])
        #expect(left.compactMap { $0["kind"] as? String } == ["prune", "prune", "backup"], "the recent backup and the prunes: \(jobs.stdout)")
    }
}
