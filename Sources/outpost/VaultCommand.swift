import ArgumentParser
import Foundation
import Logging
import OutpostConsole
import OutpostCore
import OutpostHTTP
import OutpostObjects
import OutpostS3
import OutpostTLS
import OutpostVault
import ServiceLifecycle

struct VaultOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The vault's data directory.", valueName: "dir")) var data: String
    var directory: VaultDataDirectory { VaultDataDirectory(data) }
}

struct VaultCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault",
        abstract: "Run and administer the off-site vault (holds relays' encrypted copies).",
        subcommands: [Init.self, Serve.self, Credentials.self, Set.self, Relays.self, RemoveRelay.self, Admin.self, Replica.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a vault: settings, self-signed certificate, object storage.",
            discussion: """
                Objects live under DATA/objects (--storage filesystem, the default) or in an S3 bucket (--storage s3: Ceph \
                RGW, MinIO, AWS S3), created when missing. The S3 key comes from --s3-credentials FILE (the [default] \
                profile of an AWS credentials file, mode 0600) or from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never \
                from the command line; `vault serve` reads it the same way. GRS on S3 writes a second bucket \
                (--secondary-s3-endpoint, --secondary-s3-bucket). Exit 0: created. Exit 10: DATA already holds a vault. \
                Exit 19: the S3 service refused the key. Exit 20: the S3 endpoint cannot be reached. Exit 64: bad options.
                """)
        @OptionGroup var vault: VaultOptions
        @Option(help: "The vault's name.") var name: String
        @Option(help: "The address relays use, https://HOST:PORT (serve listens on its port unless told otherwise).") var url: String
        @Option(help: "grs (a second, independent copy set) or lrs (one). Default grs; with --storage s3, grs only with a secondary bucket.")
        var replication: String?
        @Option(help: "Where GRS keeps its second copy set on the filesystem (default: DATA/secondary; use another disk).") var secondary: String?
        @Option(help: "filesystem (DATA/objects, the default) or s3 (a bucket on an S3 service).") var storage: String = "filesystem"
        @Option(help: ArgumentHelp("The S3 service, such as http://127.0.0.1:7480.", valueName: "url")) var s3Endpoint: String?
        @Option(help: ArgumentHelp("The bucket (created if missing).", valueName: "bucket")) var s3Bucket: String?
        @Option(help: ArgumentHelp("The bucket's region.", valueName: "region")) var s3Region = "us-east-1"
        @Option(help: "path (http://HOST/BUCKET: Ceph, MinIO) or virtual (http://BUCKET.HOST: AWS).") var s3Addressing = "path"
        @Option(help: ArgumentHelp("The S3 key file (default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).", valueName: "file"))
        var s3Credentials: String?
        @Option(help: ArgumentHelp("GRS on S3: the second S3 service.", valueName: "url")) var secondaryS3Endpoint: String?
        @Option(help: ArgumentHelp("GRS on S3: the second bucket (created if missing).", valueName: "bucket")) var secondaryS3Bucket: String?
        @Option(help: ArgumentHelp("GRS on S3: the second bucket's region (default: --s3-region).", valueName: "region")) var secondaryS3Region:
            String?
        @Option(help: ArgumentHelp("GRS on S3: the second service's key file (default: as the first).", valueName: "file"))
        var secondaryS3Credentials: String?

        /// The storage settings the options describe, checked (usage errors, exit 64).
        func storageSettings() throws -> (VaultStorage, Replication, S3Location?, S3Location?) {
            guard let kind = VaultStorage(rawValue: storage) else { throw ValidationError("--storage must be filesystem or s3") }
            let s3Options = [s3Endpoint, s3Bucket, s3Credentials, secondaryS3Endpoint, secondaryS3Bucket, secondaryS3Region, secondaryS3Credentials]
            guard kind == .s3 else {
                if s3Options.contains(where: { $0 != nil }) { throw ValidationError("the --s3-… and --secondary-s3-… options need --storage s3") }
                guard let repl = Replication(rawValue: replication ?? "grs") else { throw ValidationError("--replication must be grs or lrs") }
                return (kind, repl, nil, nil)
            }
            guard let endpoint = s3Endpoint, let bucket = s3Bucket else {
                throw ValidationError("--storage s3 needs --s3-endpoint URL and --s3-bucket BUCKET")
            }
            guard let addressing = S3Addressing(rawValue: s3Addressing) else { throw ValidationError("--s3-addressing must be path or virtual") }
            if secondary != nil {
                throw ValidationError(
                    "--secondary is a directory for filesystem storage; on S3 give --secondary-s3-endpoint and --secondary-s3-bucket")
            }
            let hasSecondary = secondaryS3Endpoint != nil || secondaryS3Bucket != nil
            guard let repl = Replication(rawValue: replication ?? (hasSecondary ? "grs" : "lrs")) else {
                throw ValidationError("--replication must be grs or lrs")
            }
            let primary = S3Location(
                endpoint: endpoint, bucket: bucket, region: s3Region, addressing: addressing, credentialsFile: s3Credentials.map(Self.absolute))
            try Self.check(primary)
            guard repl == .grs else {
                if hasSecondary { throw ValidationError("--secondary-s3-… options need --replication grs") }
                return (kind, repl, primary, nil)
            }
            guard let secondEndpoint = secondaryS3Endpoint, let secondBucket = secondaryS3Bucket else {
                throw ValidationError(
                    "GRS on S3 writes a second bucket: give --secondary-s3-endpoint URL and --secondary-s3-bucket BUCKET, or --replication lrs")
            }
            let second = S3Location(
                endpoint: secondEndpoint, bucket: secondBucket, region: secondaryS3Region ?? s3Region, addressing: addressing,
                credentialsFile: (secondaryS3Credentials ?? s3Credentials).map(Self.absolute))
            try Self.check(second)
            if second.endpoint == primary.endpoint && second.bucket == primary.bucket {
                throw ValidationError("the secondary bucket is the primary one: GRS needs a second, independent bucket")
            }
            return (kind, repl, primary, second)
        }

        static func absolute(_ path: String) -> String {
            path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        }

        /// A store for the location, opened only to check it (endpoint, bucket and region syntax).
        static func check(_ location: S3Location) throws {
            do {
                _ = try S3ObjectStore(location: location, credentials: S3Credentials(accessKeyID: "-", secretAccessKey: "-"))
            } catch let e as OutpostError where e.code == .usage {
                throw ValidationError(e.message)
            }
        }

        func run() async throws {
            let (kind, repl, s3, secondaryS3) = try storageSettings()
            guard url.hasPrefix("https://"), (try? RelayURL.port(url)) != nil else { throw ValidationError("--url must be https://HOST:PORT") }
            let dir = vault.directory
            if FileManager.default.fileExists(atPath: dir.settingsPath) { throw VaultError(.exists, "\(dir.root) already holds a vault") }
            var settings = VaultConfiguration(id: RandomSecret.make(bytes: 8), name: name, url: url, replication: repl, secondary: secondary)
            if kind == .s3 {
                settings.storage = .s3
                settings.s3 = s3
                settings.secondaryS3 = secondaryS3
            }
            // Storage first: an S3 endpoint that cannot be reached, or refuses the key, leaves nothing behind.
            try dir.prepareStorage(settings)
            try FileManager.default.createDirectory(
                atPath: dir.root + "/tls", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let host = URLComponents(string: url)?.host ?? "localhost"
            let identity = try TLSIdentity.selfSigned(commonName: "Outpost vault \(name)", hosts: [host, "localhost"])
            try DurableFile.writeSecret(Array(identity.certificatePEM.utf8), to: dir.certificatePath, mode: 0o644)
            try DurableFile.writeSecret(Array(identity.privateKeyPEM.utf8), to: dir.keyPath)
            try dir.save(settings)
            // vault serve's settings, all commented out (Config/vault.toml); a file the administrator put there stays.
            if !FileManager.default.fileExists(atPath: dir.root + "/vault.toml") {
                try DurableFile.write(Array((VaultServeSettings.sample + "\n").utf8), to: dir.root + "/vault.toml", mode: 0o600)
            }
            let where_ = s3.map { " on S3 \($0)\(secondaryS3.map { " and \($0)" } ?? "")" } ?? ""
            printErr("created vault \(name) (\(repl.rawValue))\(where_) in \(dir.root); start it with `outpost vault serve --data \(dir.root)`")
            printErr("certificate SHA-256 fingerprint:")
            print(try identity.fingerprint)
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the vault until SIGTERM or SIGINT.",
            discussion: """
                Settings come from --config FILE, else DATA/vault.toml when it exists (Config/vault.toml is the sample), then \
                from OUTPOST_VAULT_<KEY> environment variables (OUTPOST_VAULT_LISTEN, OUTPOST_VAULT_MAX_CONNECTIONS, …), \
                then --listen. The fleet view (docs/console.md) listens on console_listen or --console-listen, off unless set. \
                Exit 0: stopped by SIGTERM or SIGINT. Exit 10: DATA is not a vault. Exit 22: an address cannot be \
                listened on. Exit 64: a bad option, setting or OUTPOST_VAULT_ variable (the message names it).
                """)
        @OptionGroup var vault: VaultOptions
        @Option(help: "HOST:PORT to listen on (overrides vault.toml's listen; default: 127.0.0.1 and the port of the vault's URL).")
        var listen: String?
        @Option(help: ArgumentHelp("Settings file (default: DATA/vault.toml when it exists).", valueName: "file")) var config: String?
        @Option(help: ArgumentHelp("Write the port to this file once listening.", valueName: "file")) var portFile: String?
        @Option(help: ArgumentHelp("HOST:PORT of the fleet view (overrides vault.toml's console_listen).", valueName: "host:port"))
        var consoleListen: String?
        @Option(help: ArgumentHelp("Write the console's port to this file once it listens.", valueName: "file")) var consolePortFile: String?

        func run() async throws {
            let dir = vault.directory
            let settings = try dir.settings()
            let serve = try VaultServeSettings.load(
                file: config, defaultFile: dir.root + "/vault.toml", environment: ProcessInfo.processInfo.environment)
            let (host, port): (String, Int)
            if let chosen = listen ?? serve.listen {
                guard let hp = VaultServeSettings.split(chosen) else { throw ValidationError("--listen must be HOST:PORT") }
                (host, port) = hp
            } else {
                (host, port) = ("127.0.0.1", try RelayURL.port(settings.url))
            }
            var logger = Logger(label: "outpost.vault")
            logger.logLevel = serve.logLevel
            printErr(serve.summary)
            let portFile = self.portFile
            let server = try VaultServer(
                directory: dir, host: host, port: port, logger: logger, limits: serve.limits, putBudget: serve.putBudgetBytes
            ) {
                bound in
                printErr("vault \(settings.name) listening on https://\(host):\(bound)")
                if let portFile { try? "\(bound)\n".write(toFile: portFile, atomically: true, encoding: .utf8) }
            }
            // `/metrics` on a listener of its own when --metrics-listen is set (docs/metrics.md).
            let metrics = try vaultMetricsServer(listen: metricsListen, tokenFile: metricsTokenFile, vault: server, logger: logger)
            var services: [any Service] = metrics.map { [$0] } ?? []
            // The fleet view (issue 13) on a listener of its own when console_listen (or --console-listen) is set.
            if let chosen = consoleListen ?? serve.consoleListen {
                guard let hp = VaultServeSettings.split(chosen) else { throw ValidationError("--console-listen must be HOST:PORT") }
                let (consoleHost, consolePort) = hp
                let consolePortFile = self.consolePortFile
                services.append(
                    try VaultConsoleServer(vault: server, logger: logger).service(host: consoleHost, port: consolePort) { bound in
                        printErr("vault console listening on https://\(consoleHost):\(bound)")
                        if let consolePortFile { try? DurableFile.write(Array("\(bound)\n".utf8), to: consolePortFile, mode: 0o644) }
                    })
            }
            do { try await server.run(services: services) } catch {
                throw listenFailure(error, host: host, port: port, setting: "listen in vault.toml")
            }
        }

        @Option(
            help: ArgumentHelp(
                "Serve Prometheus metrics at http://HOST:PORT/metrics, plain HTTP on a listener of its own (off unless set; off loopback only with --metrics-token-file).",
                valueName: "host:port"))
        var metricsListen: String?
        @Option(help: ArgumentHelp("A file holding the bearer token metrics scrapers must send (at least 16 characters).", valueName: "file"))
        var metricsTokenFile: String?
        @OptionGroup var logging: LoggingOptions
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
            try dir.registry(settings).issue(secret: secret, expiresAt: expires, recoverRelay: recover)
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
                if repl == .grs && s.storage == .s3 && s.secondaryS3 == nil {
                    throw VaultError(
                        .refused, "GRS on S3 needs a second bucket, which only `vault init --secondary-s3-endpoint … --secondary-s3-bucket …` sets")
                }
                s.replication = repl
            }
            if immutable && mutable { throw ValidationError("give --immutable or --mutable, not both") }
            if let d = softDeleteDays, d < 14 { throw ValidationError("--soft-delete-days must be at least 14") }
            if let m = maxRelays, m < 1 { throw ValidationError("--max-relays must be at least 1") }
            let change = VaultPolicy.Change(
                immutable: mutable ? false : (immutable ? true : nil), lock: lock, softDeleteDays: softDeleteDays, maxRelays: maxRelays)
            let registry = try dir.registry(s)
            let policy: VaultPolicy
            if registry.sharesPolicy {
                // S3: recorded in the registry log, which every node over the bucket reads (docs/vault.md §2.5);
                // decided on the log's newest policy, not on this node's copy of vault.json.
                policy = change.isEmpty ? registry.policy(default: s) : try registry.setPolicy(change, default: s)
            } else {
                policy = try VaultPolicy(s).applying(change)
            }
            s = policy.applied(to: s)
            try dir.save(s)
            let applies =
                registry.sharesPolicy
                ? "every vault node over the bucket applies the rules within 5 s; restart `vault serve` for the replication"
                : "restart `vault serve` to apply"
            printErr(
                "vault \(s.name): replication \(s.replication.rawValue), immutable \(s.immutable)\(s.locked ? " (locked)" : ""), soft delete \(s.softDeleteDays) days, at most \(s.maxRelays) relays; \(applies)"
            )
        }
    }

    struct Relays: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List registered relays.")
        @OptionGroup var vault: VaultOptions
        func run() async throws {
            let dir = vault.directory
            let settings = try dir.settings()
            for r in try dir.registry(settings).allRelays() {
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
            let r = try dir.registry(s).remove(relay)
            printErr(
                "relay \(RelayName.printable(r.name)) (id \(r.id)) removed; its container is kept for \(s.softDeleteDays) days\(s.immutable ? " (and until retention expires: the vault is immutable)" : "")"
            )
        }
    }
}

extension VaultCommand {
    struct Replica: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show how far GRS's secondary copy set is behind, and replay what it missed.",
            discussion: """
                GRS writes every object to the primary copy set, which answers, then to the secondary. A write or delete \
                the secondary did not take is kept as pending in the primary; `vault serve` replays them every 30 s and \
                warns in its log beyond 15 minutes (docs/vault.md §3.1). This command reads the pending writes from the \
                storage (beside a running vault, which it does not disturb). Exit 0: read (and, with --catch-up, replayed \
                what the secondary takes now). Exit 10: DATA is not a vault. Exit 15: the vault is LRS (no secondary).
                """)
        @OptionGroup var vault: VaultOptions
        @Flag(help: "Replay the pending writes on the secondary now (what still fails stays pending).") var catchUp = false
        @Flag(help: "Also compare every object of the two copy sets and copy what the secondary lacks (two full listings).")
        var reconcile = false
        @Flag(help: "Print JSON: objects, oldest (ISO 8601 or null), lag_seconds, copied.") var json = false

        func run() async throws {
            let dir = vault.directory
            let settings = try dir.settings()
            guard let store = try dir.objectStore(settings) as? ReplicatedObjectStore else {
                throw OutpostError(
                    .refused, "vault \(settings.name) is LRS: it has no secondary copy set (replication is chosen at `vault init --replication grs`)")
            }
            let copied = reconcile ? try store.reconcile() : 0
            let backlog = catchUp ? try store.catchUp() : try store.backlog()
            let now = Date()
            let lag = Int(backlog.lagSeconds(now: now).rounded())
            if json {
                struct Out: Encodable {
                    var objects: Int
                    var oldest: String?
                    var lag_seconds: Int
                    var copied: Int
                }
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                let out = Out(objects: backlog.objects, oldest: backlog.oldest?.formatted(.iso8601), lag_seconds: lag, copied: copied)
                print(String(decoding: try e.encode(out), as: UTF8.self))
                return
            }
            if reconcile { print("copied \(copied) objects the secondary lacked") }
            if backlog.objects == 0 {
                print("secondary copy set: up to date")
            } else {
                print(
                    "secondary copy set: \(backlog.objects) writes pending, the oldest since \(backlog.oldest?.formatted(.iso8601) ?? "?") (\(lag) s behind)"
                )
                for entry in try store.pending().prefix(10) {
                    print("  \(entry.op.rawValue) \(entry.key) since \(entry.since.formatted(.iso8601)): \(entry.error)")
                }
            }
        }
    }
}

enum RelayURL {
    static func port(_ url: String) throws -> Int {
        guard let c = URLComponents(string: url), let p = c.port else { throw ValidationError("\(url) has no port; write https://HOST:PORT") }
        return p
    }
}
