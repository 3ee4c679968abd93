import ArgumentParser
import COutpostSystem
import Foundation
import Logging
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Outpost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outpost",
        abstract: "Branch-office backup hub: protected machines → relay → off-site vault.",
        discussion: "Exit codes are listed in docs/exit-codes.md (0 ok, 3 finished with failed files, 10+ errors).",
        version: OutpostVersion.string,
        subcommands: [
            StoreCommand.self, BackupCommand.self, PointsCommand.self, LsCommand.self, FindCommand.self, RestoreCommand.self,
            CheckCommand.self, ForgetCommand.self, RelayCommand.self, EnrollCommand.self, VaultCommand.self, AgentCommand.self,
        ]
    )

    static func main() async {
        raiseFileLimit()
        limitMallocArenas()
        registerIndexMigrations()
        do {
            var command = try parseAsRoot()
            // Logging once the command line says how (`--log-format` of the long-running commands).
            Logs.bootstrap(for: command)
            // Servers stop gracefully on SIGINT/SIGTERM by themselves; every other command says what was kept.
            if !(command is RelayCommand.Serve) && !(command is VaultCommand.Serve) && !(command is AgentCommand.Run) {
                InterruptHandling.install(command: type(of: command).configuration.commandName ?? "command")
            }
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let e as any OperatorFacingError {
            FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
            Foundation.exit(e.exitCode.rawValue)
        } catch let e as CommandExit {
            Foundation.exit(e.code.rawValue)
        } catch {
            exit(withError: error)
        }
    }

    /// glibc gives each thread that allocates its own arena, up to 8 per core, and each keeps what was freed in it:
    /// the relay's blocking pool (4 threads per core) grew from 316 to 424 MiB with 8 machines pushing.
    /// One arena per core (at least 2) brought it back to 312 MiB. `MALLOC_ARENA_MAX` (or a `GLIBC_TUNABLES` arena_max)
    /// in the environment wins.
    static func limitMallocArenas() {
        let env = ProcessInfo.processInfo.environment
        guard env["MALLOC_ARENA_MAX"] == nil, env["GLIBC_TUNABLES"]?.contains("arena_max") != true else { return }
        _ = outpost_limit_malloc_arenas(Int32(max(2, ProcessInfo.processInfo.activeProcessorCount)))
    }

    /// Deep trees keep a directory descriptor per level open during restore.
    static func raiseFileLimit() {
        var lim = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        }
    }
}

/// Ends the process with a given exit code after the command has printed its own report.
struct CommandExit: Error {
    let code: OutpostCore.ExitCode
}

/// Options shared by every command that works on a local store.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store directory.", valueName: "dir"))
    var store: String
}

func printErr(_ s: String) {
    if Logs.isJSON { return Logs.jsonLine(s) }
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

func formatBytes(_ n: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    enc.dateEncodingStrategy = .iso8601
    FileHandle.standardOutput.write(try enc.encode(value))
    FileHandle.standardOutput.write(Data("\n".utf8))
}

let stderrIsTTY = isatty(2) == 1
