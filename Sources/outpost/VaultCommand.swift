import ArgumentParser
import Foundation
import Logging
import OutpostCore
import OutpostHTTP
import OutpostObjects
import OutpostTLS
import OutpostVault

struct VaultOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The vault's data directory.", valueName: "dir")) var data: String
    var directory: VaultDataDirectory { VaultDataDirectory(data) }
}

struct VaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault",
        abstract: "Run and administer the off-site vault (holds relays' encrypted copies).",
        subcommands: [Init.self, Serve.self, Credentials.self, Set.self, Relays.self, RemoveRelay.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a vault: settings, self-signed certificate, object storage.")
        @OptionGroup var vault: VaultOptions
        @Option(help: "The vault's name.") var name: String
        @Option(help: "The address relays use, https://HOST:PORT (serve listens on its port unless told otherwise).") var url: String
        @Option(help: "grs (a second, independent copy set; the default) or lrs (one).") var replication: String = "grs"
        @Option(help: "Where GRS keeps its second copy set (default: DATA/secondary; use another disk).") var secondary: String?

        func run() async throws {
            guard let repl = Replication(rawValue: replication) else { throw ValidationError("--replication must be grs or lrs") }
            guard url.hasPrefix("https://"), (try? RelayURL.port(url)) != nil else { throw ValidationError("--url must be https://HOST:PORT") }
            let dir = vault.directory
            if FileManager.default.fileExists(atPath: dir.settingsPath) { throw VaultError(.exists, "\(dir.root) already holds a vault") }
            try FileManager.default.createDirectory(
                atPath: dir.root + "/tls", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let host = URLComponents(string: url)?.host ?? "localhost"
            let identity = try TLSIdentity.selfSigned(commonName: "Outpost vault \(name)", hosts: [host, "localhost"])
            try DurableFile.writeSecret(Array(identity.certificatePEM.utf8), to: dir.certificatePath, mode: 0o644)
            try DurableFile.writeSecret(Array(identity.privateKeyPEM.utf8), to: dir.keyPath)
            let settings = VaultConfiguration(id: RandomSecret.make(bytes: 8), name: name, url: url, replication: repl, secondary: secondary)
            try dir.save(settings)
            _ = try dir.objectStore(settings)
            printErr("created vault \(name) (\(repl.rawValue)) in \(dir.root); start it with `outpost vault serve --data \(dir.root)`")
            printErr("certificate SHA-256 fingerprint:")
            print(try identity.fingerprint)
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the vault until SIGTERM or SIGINT.")
        @OptionGroup var vault: VaultOptions
        @Option(help: "HOST:PORT to listen on (default: 127.0.0.1 and the port of the vault's URL).") var listen: String?
        @Option(help: ArgumentHelp("Write the port to this file once listening.", valueName: "file")) var portFile: String?

        func run() async throws {
            let dir = vault.directory
            let settings = try dir.settings()
            let (host, port): (String, Int)
            if let listen {
                guard let c = listen.lastIndex(of: ":"), let p = Int(listen[listen.index(after: c)...]) else {
                    throw ValidationError("--listen must be HOST:PORT")
                }
                (host, port) = (String(listen[..<c]), p)
            } else {
                (host, port) = ("127.0.0.1", try RelayURL.port(settings.url))
            }
            var logger = Logger(label: "outpost.vault")
            logger.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["OUTPOST_LOG_LEVEL"] ?? "") ?? .info
            let portFile = self.portFile
            let server = try VaultServer(directory: dir, host: host, port: port, logger: logger) { bound in
                printErr("vault \(settings.name) listening on https://\(host):\(bound)")
                if let portFile { try? "\(bound)\n".write(toFile: portFile, atomically: true, encoding: .utf8) }
            }
            do { try await server.run() } catch { throw listenFailure(error, host: host, port: port, setting: "the port of the vault's url") }
        }
    }

    struct Credentials: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a vault credentials file a relay registers with once.")
        @OptionGroup var vault: VaultOptions
        @Option(help: "Where to write it (mode 0600).") var out: String
        @Option(help: "Days it stays valid.") var validDays = 10
        @Option(help: "Re-attach this registered relay's container (to rebuild a lost relay) instead of making a new one.") var recover: String?
        @Option(help: "The URL written into the file (default: the vault's).") var url: String?

        func run() async throws {
            let dir = vault.directory
            let settings = try dir.settings()
            guard (1...365).contains(validDays) else { throw ValidationError("--valid-days must be 1 to 365") }
            let secret = RandomSecret.make()
            let expires = Date().addingTimeInterval(Double(validDays) * 86400)
            try VaultRegistry(path: dir.registryPath).issue(secret: secret, expiresAt: expires, recoverRelay: recover)
            let cert = try String(contentsOfFile: dir.certificatePath, encoding: .utf8)
            let file = VaultCredentialsFile(
                vaultID: settings.id, vaultName: settings.name, url: url ?? settings.url,
                fingerprint: try TLSIdentity.fingerprint(ofPEM: cert), certificate: cert,
                secret: secret, expiresAt: expires, recoverRelay: recover)
            try DurableFile.writeSecret(file.encoded(), to: out)
            printErr("vault credentials file written to \(out); valid until \(expires.formatted(.iso8601)), usable once")
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change vault settings (replication, immutability).")
        @OptionGroup var vault: VaultOptions
        @Option(help: "grs or lrs; refused once the vault holds backup items.") var replication: String?
        @Flag(help: "Make the vault immutable: nothing is deleted before its retention expires.") var immutable = false
        @Flag(help: "Turn immutability off (refused once locked).") var mutable = false
        @Flag(help: "Lock immutability: irreversible.") var lock = false
        @Option(help: "Days deleted data is kept (at least 14).") var softDeleteDays: Int?
        @Option(help: "Relays the vault accepts (Azure: 50).") var maxRelays: Int?

        func run() async throws {
            let dir = vault.directory
            var s = try dir.settings()
            if let r = replication {
                guard let repl = Replication(rawValue: r) else { throw ValidationError("--replication must be grs or lrs") }
                if repl != s.replication, try dir.holdsBackupItems(s) {
                    throw VaultError(
                        .refused,
                        "the replication type cannot change once the vault holds backup items (as in Azure): create a new vault with --replication \(r) and register relays there"
                    )
                }
                s.replication = repl
            }
            if let d = softDeleteDays {
                guard d >= 14 else { throw ValidationError("--soft-delete-days must be at least 14") }
                s.softDeleteDays = d
            }
            if let m = maxRelays {
                guard m >= 1 else { throw ValidationError("--max-relays must be at least 1") }
                s.maxRelays = m
            }
            if mutable {
                if s.locked { throw VaultError(.refused, "this vault's immutability is locked and cannot be turned off") }
                s.immutable = false
            }
            if immutable || lock { s.immutable = true }
            if lock { s.locked = true }
            try dir.save(s)
            printErr(
                "vault \(s.name): replication \(s.replication.rawValue), immutable \(s.immutable)\(s.locked ? " (locked)" : ""), soft delete \(s.softDeleteDays) days; restart `vault serve` to apply"
            )
        }
    }

    struct Relays: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List registered relays.")
        @OptionGroup var vault: VaultOptions
        func run() async throws {
            for r in try VaultRegistry(path: vault.directory.registryPath).relays {
                print(
                    "\(r.id)  \(RelayName.printable(r.name))  registered \(r.registeredAt.formatted(.iso8601))\(r.removedAt.map { "  removed \($0.formatted(.iso8601))" } ?? "")"
                )
            }
        }
    }

    struct RemoveRelay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-relay", abstract: "Remove a relay; its container is kept in soft delete, then purged.")
        @OptionGroup var vault: VaultOptions
        @Argument(help: "Relay id or name.") var relay: String
        func run() async throws {
            let dir = vault.directory
            let s = try dir.settings()
            let r = try VaultRegistry(path: dir.registryPath).remove(relay)
            printErr(
                "relay \(RelayName.printable(r.name)) (id \(r.id)) removed; its container is kept for \(s.softDeleteDays) days\(s.immutable ? " (and until retention expires: the vault is immutable)" : "")"
            )
        }
    }
}

enum RelayURL {
    static func port(_ url: String) throws -> Int {
        guard let c = URLComponents(string: url), let p = c.port else { throw ValidationError("\(url) has no port; write https://HOST:PORT") }
        return p
    }
}
