import Foundation
import Logging
import OutpostCore
import OutpostHTTP
import OutpostVault
import TOMLKit

/// `vault serve`'s own settings: DATA/vault.toml (or `--config FILE`; Config/vault.toml is the sample `vault init`
/// writes), then `OUTPOST_VAULT_<KEY>` environment variables, then `--listen`; each later source wins. The vault's
/// identity and policies (replication, storage, immutability and its lock, soft delete, max relays) stay in
/// vault.json, which only `vault set` changes: neither a text file nor the environment can weaken them.
struct VaultServeSettings: Equatable {
    /// HOST:PORT; nil: 127.0.0.1 and the port of the vault's url.
    var listen: String?
    /// HOST:PORT of the fleet view (the vault's console); nil: off.
    var consoleListen: String?
    var maxConnections = VaultServer.defaultLimits.maxConnections
    /// Bytes per second a request body must arrive at (0: no minimum).
    var minimumBodyRate = VaultServer.defaultLimits.minimumBodyRate
    var putBudgetBytes = VaultServer.defaultPutBudget
    var logLevel = Logger.Level.info
    /// The file and the environment variables the values came from, for the start-up line.
    var sources: [String] = []

    static let keys = ["listen", "console_listen", "max_connections", "min_upload_kbps", "put_memory_mib", "log_level"]
    static let environmentPrefix = "OUTPOST_VAULT_"
    static func environmentName(_ key: String) -> String { environmentPrefix + key.uppercased() }
    /// vault.json's settings under the names an administrator might try here: refused with a pointer to `vault set`.
    static let policyKeys: Set<String> = [
        "name", "url", "id", "replication", "secondary", "storage", "s3", "immutable", "mutable", "locked", "lock",
        "soft_delete_days", "softDeleteDays", "max_relays", "maxRelays",
    ]

    var limits: ConnectionLimits {
        var l = VaultServer.defaultLimits
        l.maxConnections = maxConnections
        l.minimumBodyRate = minimumBodyRate
        return l
    }

    /// One line for the log: what `vault serve` runs with, and where it came from.
    var summary: String {
        let from = sources.isEmpty ? "defaults" : sources.joined(separator: ", ")
        return
            "vault settings: max_connections \(maxConnections), min_upload \(minimumBodyRate) B/s, put_memory_mib \(putBudgetBytes >> 20), log_level \(logLevel.rawValue) (from \(from))"
    }

    /// A value as found: TOML-typed in the file, text in the environment.
    private enum Found {
        case file(any TOMLValueConvertible)
        case environment(String)

        var shown: String {
            switch self {
            case .file(let v): v.string.map { "\"\($0)\"" } ?? v.debugDescription
            case .environment(let t): "\"\(t)\""
            }
        }
    }

    /// Reads `file`, else `defaultFile` when it exists, then the environment. Every mistake names the file or the
    /// variable, the key and the fix (exit 64).
    static func load(file: String?, defaultFile: String, environment: [String: String]) throws -> VaultServeSettings {
        var s = VaultServeSettings()
        let path = file ?? (FileManager.default.fileExists(atPath: defaultFile) ? defaultFile : nil)
        if let path {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw OutpostError(
                    .config,
                    "cannot read the vault configuration \(path); check the path and its permissions (`outpost vault init` writes DATA/vault.toml; Config/vault.toml is the sample)"
                )
            }
            let table: TOMLTable
            do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
                throw OutpostError(.config, "\(path): line \(e.source.begin.line): \(e.description); the file must be TOML, as Config/vault.toml")
            }
            if let stray = table.keys.sorted().first(where: { !keys.contains($0) }) {
                let hint =
                    policyKeys.contains(stray)
                    ? "\(stray) is kept in vault.json: change it with `outpost vault set`"
                    : "remove it or correct its name"
                throw OutpostError(.config, "\(path): vault.toml has no setting \(stray) (it takes \(keys.joined(separator: ", "))); \(hint)")
            }
            for key in keys { if let v = table[key] { try s.set(key, .file(v), named: "\(path): \(key)") } }
            s.sources.append(path)
        }
        if let level = environment["OUTPOST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) { s.logLevel = level }
        let known = Set(keys.map(environmentName))
        if let stray = environment.keys.sorted().first(where: { $0.hasPrefix(environmentPrefix) && !known.contains($0) }) {
            throw OutpostError(
                .config,
                "environment variable \(stray) is not a vault setting (the vault reads \(known.sorted().joined(separator: ", "))); unset it or correct its name"
            )
        }
        for key in keys {
            let name = environmentName(key)
            guard let v = environment[name], !v.isEmpty else { continue }
            try s.set(key, .environment(v), named: "environment variable \(name)")
            s.sources.append(name)
        }
        return s
    }

    private mutating func set(_ key: String, _ found: Found, named name: String) throws {
        func text() throws -> String {
            switch found {
            case .environment(let t): return t
            case .file(let v):
                guard let t = v.string else { throw OutpostError(.config, "\(name) must be a quoted string, not \(found.shown)") }
                return t
            }
        }
        func number(_ range: ClosedRange<Int>, _ unit: String) throws -> Int {
            let n: Int?
            switch found {
            case .environment(let t): n = Int(t)
            case .file(let v): n = v.int
            }
            guard let n, range.contains(n) else {
                throw OutpostError(
                    .config, "\(name) must be a whole number of \(unit) from \(range.lowerBound) to \(range.upperBound), not \(found.shown)")
            }
            return n
        }
        switch key {
        case "listen", "console_listen":
            let v = try text()
            guard let colon = v.lastIndex(of: ":"), let port = Int(v[v.index(after: colon)...]), (0...65535).contains(port), colon > v.startIndex
            else {
                throw OutpostError(.config, "\(name) must be HOST:PORT, such as \"0.0.0.0:8441\" or \"[::]:8441\", not \(found.shown)")
            }
            if key == "listen" { listen = v } else { consoleListen = v }
        case "max_connections": maxConnections = try number(16...65536, "connections")
        case "min_upload_kbps": minimumBodyRate = try number(0...1_000_000, "Kbit/s (0: no minimum)") * 1000 / 8
        case "put_memory_mib": putBudgetBytes = try number(64...65536, "MiB") << 20
        case "log_level":
            let v = try text()
            guard let level = Logger.Level(rawValue: v) else {
                throw OutpostError(
                    .config, "\(name) must be trace, debug, info, notice, warning, error or critical, not \(found.shown)")
            }
            logLevel = level
        default: preconditionFailure("unknown vault setting \(key)")
        }
    }

    /// "HOST:PORT" (checked by `load`; IPv6 in brackets) → (host, port).
    static func split(_ listen: String) -> (host: String, port: Int)? {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else { return nil }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    /// Config/vault.toml: `vault init` writes it to DATA/vault.toml, every setting commented out (the defaults).
    static let sample = """
        # Outpost vault configuration (TOML), read once by `outpost vault serve` at start: DATA/vault.toml, or the file
        # given with --config FILE. Written by `outpost vault init`; edit it and restart the vault. Without the file,
        # and for every setting left commented out, the default applies.
        #
        # Environment variables override this file: OUTPOST_VAULT_ followed by the key in capitals, for example
        # OUTPOST_VAULT_LISTEN=0.0.0.0:8441 or OUTPOST_VAULT_MAX_CONNECTIONS=512 (an empty one counts as unset).
        # `vault serve --listen HOST:PORT` overrides both. A key or an OUTPOST_VAULT_ variable the vault does not
        # know, or a value of the wrong type or out of range, stops `vault serve` with exit code 64 and a message
        # naming it.
        #
        # Not here: the vault's name, url, replication, storage (files or S3), immutability and its lock, soft delete
        # days and max relays. They live in DATA/vault.json and change only with `outpost vault set`, so that neither
        # this file nor the environment can weaken immutability. The certificate is DATA/tls/cert.pem, made at init;
        # relays pin it through their credentials file (Deploy/README.md).

        # Address the vault listens on (HTTPS), HOST:PORT; relays connect here. Default: 127.0.0.1 and the port of
        # the vault's url. "0.0.0.0:8441" (or "[::]:8441") serves relays on other machines; port 0 picks a free one.
        # listen = "127.0.0.1:8441"

        # The fleet view (docs/console.md): a read-only page of every relay, HTTPS with the vault's certificate, on
        # its own address, for the administrators of `outpost vault admin add`. Off unless set (or `vault serve
        # --console-listen HOST:PORT`).
        # console_listen = "127.0.0.1:8443"

        # Open connections at most (16 to 65536); more wait in the kernel's listen backlog, unaccepted. A relay's
        # forwarder keeps a few open at a time.
        # max_connections = 256

        # A request body that arrives slower than this, measured over a minute, is cut off and its connection
        # closed: 0 to 1000000 Kbit/s, 0 = no minimum. Default: about 8 (1024 bytes/s), far below what the slowest
        # throttle a relay can set gives each upload.
        # min_upload_kbps = 8

        # MiB of PUT bodies held in memory at once (64 to 65536; an object is at most 64 MiB). Further uploads wait,
        # unread, first come first served.
        # put_memory_mib = 128

        # Log level: "trace", "debug", "info", "notice", "warning", "error" or "critical". OUTPOST_LOG_LEVEL also
        # sets it (OUTPOST_VAULT_LOG_LEVEL wins over both).
        # log_level = "info"
        """
}
