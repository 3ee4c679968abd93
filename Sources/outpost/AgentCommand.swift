import ArgumentParser
import Foundation
import Logging
import OutpostAgent
import OutpostClient
import OutpostCore
import ServiceLifecycle
import TOMLKit
import UnixSignals

/// `outpost agent run`: the long-running agent of a protected machine (issue 12).
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "The agent of a protected machine: backs up when its relay's protection group says.",
        subcommands: [Run.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Follow the relay's plan: back up at the group's times, on `relay backup-now`, with the group's hooks.",
            discussion: """
                Runs until stopped (SIGTERM or SIGINT; a backup under way is reported cancelled). The plan comes from the \
                relay this machine enrolled with (client.toml); schedules run in this machine's time zone. Hooks run only \
                when client.toml's [agent] table lists them in allowed_hooks (or --allow-hook). The agent remembers the \
                last plan and the last scheduled run in its state file, so that it keeps its schedule while the relay is \
                down and runs a time that passed meanwhile once. Exit 64: not enrolled or a bad configuration; 19: the \
                relay refused this machine's credential (enroll again).
                """)

        @Option(help: ArgumentHelp("The client configuration (default: ~/.config/outpost/client.toml).", valueName: "file")) var config: String?
        @Option(
            help: ArgumentHelp(
                "The agent's state file (default: $STATE_DIRECTORY/agent-state.json under systemd, else agent-state.json beside the configuration).",
                valueName: "file"))
        var state: String?
        @Option(
            name: .customLong("allow-hook"),
            help: ArgumentHelp("A hook command line this machine runs (repeatable; added to client.toml's allowed_hooks).", valueName: "command"))
        var allowHooks: [String] = []
        @Option(help: "Files read at once during a backup (default: 3 × cores).") var workers: Int?
        @OptionGroup var logging: LoggingOptions

        func validate() throws {
            if let workers, !(1...256).contains(workers) { throw ValidationError("--workers must be 1 to 256") }
        }

        func run() async throws {
            let path = config ?? ClientConfiguration.defaultPath
            let c = try ClientConfiguration.load(path: path)
            let section = try AgentSection.load(path: path)
            var logger = Logger(label: "outpost.agent")
            logger.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["OUTPOST_LOG_LEVEL"] ?? "") ?? .info
            let statePath =
                state
                ?? ProcessInfo.processInfo.environment["STATE_DIRECTORY"].flatMap { $0.isEmpty ? nil : $0 + "/agent-state.json" }
                ?? ((path as NSString).deletingLastPathComponent + "/agent-state.json")
            var options = AgentOptions(statePath: statePath, allowedHooks: (section.allowed_hooks ?? []) + allowHooks)
            options.workers = workers
            if let zone = section.time_zone {
                guard let tz = TimeZone(identifier: zone) else {
                    throw ValidationError("\(path): [agent] time_zone \(zone.debugDescription) is not a time zone (like Europe/Amsterdam)")
                }
                options.timeZone = tz
            }
            if let s = ProcessInfo.processInfo.environment["OUTPOST_TEST_AGENT_MAX_SLEEP"], let v = Double(s) { options.maxSleep = v }
            if let s = ProcessInfo.processInfo.environment["OUTPOST_TEST_AGENT_POLL_WAIT"], let v = Int(s) { options.pollWait = v }
            let client = try RelayClient(configuration: c, logger: logger)
            let clock = WallClock.fromEnvironment()
            if clock.isShifted { logger.warning("the clock is a test's (OUTPOST_TEST_CLOCK_FILE is set)") }
            let agent = try Agent(machine: c.machine, client: client, options: options, clock: clock, logger: logger)
            logger.info(
                "agent started",
                metadata: [
                    "machine": "\(c.machine)", "relay": "\(c.relay)", "time_zone": "\(options.timeZone.identifier)", "state": "\(statePath)",
                ])
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: AgentService(agent: agent), successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            do {
                try await group.run()
                await client.close()
            } catch {
                await client.close()
                throw error
            }
            logger.info("agent stopped")
        }
    }
}

/// The agent as a service of the process: cancelled at SIGTERM/SIGINT.
struct AgentService: Service {
    let agent: Agent
    func run() async throws {
        try await cancelWhenGracefulShutdown { try await agent.run() }
    }
}

/// client.toml's `[agent]` table.
struct AgentSection: Codable {
    var allowed_hooks: [String]?
    var time_zone: String?
    static let keys = ["allowed_hooks", "time_zone"]

    static func load(path: String) throws -> AgentSection {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return AgentSection() }
        struct File: Codable { var agent: AgentSection? }
        if let stray = (try? TOMLTable(string: text))?["agent"]?.table?.keys.first(where: { !keys.contains($0) }) {
            throw ValidationError("\(path): [agent] has no setting \(stray) (it takes \(keys.joined(separator: ", ")))")
        }
        do { return try TOMLDecoder().decode(File.self, from: text).agent ?? AgentSection() } catch {
            throw ValidationError("\(path): the [agent] table is not of the expected shape: \(error)")
        }
    }
}
