import ArgumentParser
import Foundation
import OutpostCore
import OutpostRelay
import OutpostStore

extension RelayCommand {
    /// `outpost relay group create|edit|show|list|delete` (issue 12).
    struct Group: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Protection groups: which machines are backed up, which paths, when, and kept how long.",
            discussion: """
                A machine belongs to at most one group. Schedules: `daily 12:00,21:00`, `mon-fri 22:30`, `sat,sun 08:00` \
                (at most 3 times a day), or `every 15m|30m|1h|2h|4h|6h|12h|24h`, in each machine's local time. A group's \
                retention applies to its machines below their own values (`relay retention --machine`) and above the \
                relay's default. Exit 64: a malformed value (schedule, path, retention out of its range); 14: an \
                unknown machine or group; 15: a name taken, or a machine already in another group. Nothing is changed \
                when a command is refused.
                """,
            subcommands: [Create.self, Edit.self, Show.self, List.self, Delete.self])
    }
}

/// The options `create` and `edit` share.
struct GroupOptions: ParsableArguments {
    @Option(name: .customLong("machine"), help: "A machine of the group (repeatable; with edit, the whole new list).") var machines: [String] = []
    @Option(name: .customLong("path"), help: "An absolute path to protect on each machine (repeatable; with edit, the whole new list).")
    var paths: [String] = []
    @Option(name: .customLong("exclude"), help: "A glob to skip (repeatable; with edit, the whole new list).") var excludes: [String] = []
    @Option(help: "When to back up, e.g. `daily 21:00`, `mon-fri 22:30`, `every 4h`.") var schedule: String?
    @OptionGroup var retention: RetentionValues
    @Option(
        help: ArgumentHelp(
            "A command each agent runs before each backup (`/bin/sh -c`; e.g. a database dump); a failure fails the job. Runs only on machines whose client.toml allows it (`allowed_hooks`). \"\" removes it.",
            valueName: "command"))
    var preHook: String?
    @Option(help: ArgumentHelp("A command each agent runs after each backup, whatever its outcome. \"\" removes it.", valueName: "command"))
    var postHook: String?
    @Option(help: ArgumentHelp("Seconds a hook may run before it is killed and fails (default 600).", valueName: "seconds"))
    var hookTimeout: Int?

    func changes(editing: Bool, clearRetention: Bool = false) -> ProtectionGroups.Changes {
        ProtectionGroups.Changes(
            machines: editing && machines.isEmpty ? nil : machines, paths: editing && paths.isEmpty ? nil : paths,
            excludes: editing && excludes.isEmpty ? nil : excludes, schedule: schedule, retention: retention.policy, clearRetention: clearRetention,
            preHook: preHook, postHook: postHook, hookTimeout: hookTimeout)
    }
}

/// A group in lines: schedule, machines, paths, excludes, retention.
func describe(_ g: ProtectionGroup) -> [String] {
    let r = RetentionPolicy.Setting.allCases.compactMap { s in g.retention[s].map { "\(s.key) \($0)" } }
    return [
        "group \(g.name): \(g.schedule)",
        "  machines: \(g.machines.isEmpty ? "-" : g.machines.joined(separator: ", "))",
        "  paths: \(g.paths.joined(separator: ", "))",
        "  excludes: \(g.excludes.isEmpty ? "-" : g.excludes.joined(separator: ", "))",
        "  retention: \(r.isEmpty ? "- (the machines' own values, the relay's default, relay.toml)" : r.joined(separator: ", "))",
        "  hooks: before \(g.preHook.map(Terminal.quoted) ?? "-"), after \(g.postHook.map(Terminal.quoted) ?? "-"), time-out \(g.hookTimeout) s",
    ]
}

extension RelayCommand.Group {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a protection group.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The group's name (letters, digits, '.', '-', '_').") var name: String
        @OptionGroup var options: GroupOptions

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay group create`")
            try ProtectionGroups(store: store).create(name, options.changes(editing: false), file: try dir.configuration().retention)
            for line in describe(try ProtectionGroups(store: store).show(name)) { print(line) }
        }
    }

    struct Edit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a protection group: what is given replaces what it had.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The group's name.") var name: String
        @OptionGroup var options: GroupOptions
        @Flag(help: "Remove the group's retention values, then set those given.") var clearRetention = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay group edit`")
            try ProtectionGroups(store: store).edit(
                name, options.changes(editing: true, clearRetention: clearRetention), file: try dir.configuration().retention)
            for line in describe(try ProtectionGroups(store: store).show(name)) { print(line) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a protection group.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The group's name.") var name: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let g = try ProtectionGroups(store: try Store.open(at: dir.storePath, purpose: "`outpost relay group show`")).show(name)
            if json { try printJSON(g); return }
            for line in describe(g) { print(line) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the protection groups.")
        @OptionGroup var relay: RelayOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let groups = try ProtectionGroups(store: try Store.open(at: dir.storePath, purpose: "`outpost relay group list`")).list()
            if json { try printJSON(groups); return }
            if groups.isEmpty { print("no protection groups; create one with `outpost relay group create`") }
            for g in groups { for line in describe(g) { print(line) } }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a protection group: its machines then belong to none; their recovery points stay.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The group's name.") var name: String

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            try ProtectionGroups(store: try Store.open(at: dir.storePath, purpose: "`outpost relay group delete`")).delete(name)
            print("deleted protection group \(name)")
        }
    }
}
