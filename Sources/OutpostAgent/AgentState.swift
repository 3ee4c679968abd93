import Foundation
import OutpostCore
import OutpostHTTP

/// What the agent remembers across restarts (a small JSON file, written atomically): the last plan (so that a
/// relay that is down at start does not stop the schedule), when the schedule began, and the start of the last
/// scheduled backup (so that a time passed while the agent or the relay was down runs once, not once per slot).
struct AgentState: Codable, Sendable, Equatable {
    var version = 1
    var plan: AgentAPI.Plan?
    /// The plan's schedule as it was when `scheduleSince` was set.
    var schedule: String?
    /// When the agent first followed this schedule: a slot before it is not due (a new or changed schedule
    /// does not start with a backup of a time that already passed).
    var scheduleSince: Date?
    /// The start of the last scheduled backup that reached the relay.
    var lastRun: Date?

    static func load(path: String) throws -> AgentState {
        guard FileManager.default.fileExists(atPath: path) else { return AgentState() }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try JSONDecoder().decode(AgentState.self, from: data)
        } catch {
            throw OutpostError(
                .config, "the agent's state file \(path) cannot be read (\(error)); remove it (the next scheduled time then counts from now)")
        }
    }

    func save(path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .deferredToDate
        try DurableFile.write(Array(try encoder.encode(self)), to: path, mode: 0o600)
    }
}
