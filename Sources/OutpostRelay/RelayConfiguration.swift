import Foundation
import OutpostCore
import OutpostHTTP
import TOMLKit

/// Whom the answer to "which chunks are new?" is computed for.
public enum DedupScope: String, Codable, Sendable {
    /// From the asking machine's own history only: no machine learns what another holds (the default).
    case machine
    /// From everything the relay holds: a first backup of a machine with the same files as another sends
    /// less, but any machine can test whether the relay holds a chunk it can hash, and read it by reference.
    case relay
}

/// The relay's settings: `DATA/relay.toml`, written commented at `relay init` (Config/relay.toml is the sample).
public struct RelayConfiguration: Sendable, Equatable {
    public var listen = "127.0.0.1:8440"
    public var tlsCertificate: String?
    public var tlsPrivateKey: String?
    public var dedupScope = DedupScope.machine
    public var tokenValidHours = 24
    /// Uploads verified at once; further uploads wait with their bodies unread (backpressure, bounded memory).
    public var maxConcurrentUploads = 2 * ProcessInfo.processInfo.activeProcessorCount
    /// Of those, how many one machine may hold: a slow or greedy machine never blocks the others.
    public var maxUploadsPerMachine = max(1, ProcessInfo.processInfo.activeProcessorCount)
    public var requestTimeoutSeconds = 300
    /// A request body slower than this (after 10 s) is cut off with 408: a stalled upload frees its slot.
    public var minimumBodyRateBytes = 32 << 10
    /// Open connections at most; more wait in the kernel's accept queue. Idle ones close after `idleTimeoutSeconds`.
    public var maxConnections = 512
    /// Also how long a body may wait unread for an upload slot (the kernel holds it meanwhile).
    public var idleTimeoutSeconds = 120
    /// Forward each recovery point as soon as it is committed.
    public var forwardAfterEachPoint = true
    /// Up to three times of day ("HH:MM") at which the forwarder also runs.
    public var forwardTimes: [String] = []
    public var throttle = ThrottleSchedule()
    public var proxy: ProxyConfiguration?
    /// Where `/metrics` is served (plain HTTP, a listener of its own; docs/metrics.md); nil: no metrics.
    public var metricsListen: String?
    /// A file holding the bearer token scrapers must send; required when `metricsListen` is not loopback.
    public var metricsTokenFile: String?
    /// The zstd level protected machines compress new chunks at (negative: zstd's fast levels). Nil: the
    /// store's own level. A push is bound by the client's compression and the relay's mandatory re-hash on the
    /// same hardware; a cheaper level buys throughput for a slightly larger store (docs/benchmarks.md).
    public var pushCompressionLevel: Int32? = RelayConfiguration.defaultPushCompressionLevel
    public static let defaultPushCompressionLevel: Int32 = 2
    public static let pushCompressionLevels: ClosedRange<Int32> = -7...19
    /// The relay's default retention policy (`[retention]`); the relay's index can override it, for the relay
    /// and per machine (`outpost relay retention`). No rule: nothing is ever pruned.
    public var retention = RetentionPolicy()
    /// The time of day ("HH:MM", local time) at which `relay serve` prunes the relay tier.
    public var pruneTime = "03:00"
    /// Where the web console listens (HTTPS, the relay's certificate); nil: no console.
    public var consoleListen: String?
    /// `[jobs]`: deadlines of agents' jobs.
    public var jobs = JobSettings()
    /// `[alerts]`: what is watched, and where alerts go.
    public var alerts = AlertSettings()
    public var backupDeadlineHours: Int { jobs.backupDeadlineHours }

    public init() {}

    /// relay.toml's `[retention]` table.
    struct RetentionFile: Codable {
        var relay_days: Int?
        var relay_last: Int?
        var vault_daily: Int?
        var vault_weekly: Int?
        var vault_monthly: Int?
        var vault_yearly: Int?
        var prune_time: String?
        static let keys = ["relay_days", "relay_last", "vault_daily", "vault_weekly", "vault_monthly", "vault_yearly", "prune_time"]
    }

    struct File: Codable {
        var listen: String?
        var tls_certificate: String?
        var tls_private_key: String?
        var dedup_scope: String?
        var token_valid_hours: Int?
        var max_concurrent_uploads: Int?
        var request_timeout_seconds: Int?
        var max_uploads_per_machine: Int?
        var min_upload_kbps: Int?
        var max_connections: Int?
        var idle_timeout_seconds: Int?
        var forward_after_each_point: Bool?
        var forward_times: [String]?
        var throttle_work_kbps: Int?
        var throttle_other_kbps: Int?
        var work_days: [Int]?
        var work_hours: String?
        var proxy: String?
        var proxy_user: String?
        var proxy_password: String?
        var metrics_listen: String?
        var metrics_token_file: String?
        var push_compression_level: Int?
        var retention: RetentionFile?
        var console_listen: String?
    }

    public static func load(path: String) throws -> RelayConfiguration {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RelayError(.config, "cannot read the relay configuration \(path); check the path (`outpost relay init` writes DATA/relay.toml)")
        }
        let file: File
        do { file = try TOMLDecoder().decode(File.self, from: text) } catch {
            throw RelayError(.config, "the relay configuration \(path) is not valid TOML of the expected shape: \(error)")
        }
        var c = RelayConfiguration()
        if let v = file.listen { c.listen = v }
        c.tlsCertificate = file.tls_certificate
        c.tlsPrivateKey = file.tls_private_key
        if let v = file.dedup_scope {
            guard let scope = DedupScope(rawValue: v) else {
                throw RelayError(.config, "\(path): dedup_scope must be \"machine\" or \"relay\", not \(v.debugDescription)")
            }
            c.dedupScope = scope
        }
        func ranged(_ v: Int?, _ key: String, _ range: ClosedRange<Int>, _ unit: String) throws -> Int? {
            guard let v else { return nil }
            guard range.contains(v) else {
                throw RelayError(.config, "\(path): \(key) must be \(range.lowerBound) to \(range.upperBound) \(unit), not \(v)")
            }
            return v
        }
        if let v = try ranged(file.token_valid_hours, "token_valid_hours", EnrollmentToken.validHours, "hours") { c.tokenValidHours = v }
        if let v = try ranged(file.max_concurrent_uploads, "max_concurrent_uploads", 1...256, "uploads") { c.maxConcurrentUploads = v }
        if let v = try ranged(file.request_timeout_seconds, "request_timeout_seconds", 10...3600, "seconds") { c.requestTimeoutSeconds = v }
        if let v = try ranged(file.max_uploads_per_machine, "max_uploads_per_machine", 1...256, "uploads") { c.maxUploadsPerMachine = v }
        c.maxUploadsPerMachine = min(c.maxUploadsPerMachine, c.maxConcurrentUploads)
        if let v = try ranged(file.min_upload_kbps, "min_upload_kbps", 0...1_000_000, "Kbit/s (0: no minimum)") {
            c.minimumBodyRateBytes = v * 1000 / 8
        }
        if let v = try ranged(file.max_connections, "max_connections", 16...65536, "connections") { c.maxConnections = v }
        if let v = try ranged(file.idle_timeout_seconds, "idle_timeout_seconds", 5...3600, "seconds") { c.idleTimeoutSeconds = v }
        if let v = file.forward_after_each_point { c.forwardAfterEachPoint = v }
        if let v = file.forward_times {
            guard v.count <= 3, v.allSatisfy({ RelayConfiguration.parseClock($0) != nil }) else {
                throw RelayError(.config, "\(path): forward_times takes at most 3 times of day as \"HH:MM\"")
            }
            c.forwardTimes = v
        }
        func rate(_ kbps: Int?, _ key: String) throws -> Int? {
            guard let kbps, kbps > 0 else { return nil }
            let r = kbps * 1000 / 8
            guard r >= ThrottleSchedule.minimumRate, r <= ThrottleSchedule.maximumRate else {
                throw RelayError(.config, "\(path): \(key) must be 512 to 1023000 Kbit/s (512 Kbit/s to 1023 Mbit/s), or 0 for no limit")
            }
            return r
        }
        c.throttle.workRate = try rate(file.throttle_work_kbps, "throttle_work_kbps")
        c.throttle.otherRate = try rate(file.throttle_other_kbps, "throttle_other_kbps")
        if let d = file.work_days {
            guard d.allSatisfy({ (1...7).contains($0) }) else { throw RelayError(.config, "\(path): work_days are 1 (Monday) to 7 (Sunday)") }
            c.throttle.workDays = Set(d)
        }
        if let h = file.work_hours {
            let parts = h.split(separator: "-").map(String.init)
            guard parts.count == 2, let a = RelayConfiguration.parseClock(parts[0]), let b = RelayConfiguration.parseClock(parts[1]), a < b else {
                throw RelayError(.config, "\(path): work_hours must look like \"08:00-18:00\"")
            }
            (c.throttle.workStart, c.throttle.workEnd) = (a, b)
        }
        if let p = file.proxy, !p.isEmpty {
            guard let u = URLComponents(string: p), let host = u.host, let port = u.port else {
                throw RelayError(.config, "\(path): proxy must look like \"http://proxy.example:3128\"")
            }
            c.proxy = ProxyConfiguration(host: host, port: port, user: file.proxy_user, password: file.proxy_password)
        }
        if let v = file.push_compression_level {
            guard v == 0 || RelayConfiguration.pushCompressionLevels.contains(Int32(clamping: v)) else {
                throw RelayError(
                    .config, "\(path): push_compression_level must be -7 to 19 (negative: zstd's fast levels), or 0 for the store's own level")
            }
            c.pushCompressionLevel = v == 0 ? nil : Int32(v)
        }
        if let v = file.metrics_token_file, !v.isEmpty {
            guard file.metrics_listen?.isEmpty == false else {
                throw RelayError(
                    .config,
                    "\(path): metrics_token_file is set but metrics_listen is not: set metrics_listen = \"127.0.0.1:9440\" too, or remove it"
                )
            }
            c.metricsTokenFile = v
        }
        if let v = file.metrics_listen, !v.isEmpty {
            do { _ = try MetricsServer.checkListen(v, hasToken: c.metricsTokenFile != nil, what: "metrics_listen") } catch let e as OutpostError {
                throw RelayError(.config, "\(path): \(e.message)")
            }
            if v == c.listen { throw RelayError(.config, "\(path): metrics_listen must differ from listen (\(v)): metrics have a port of their own") }
            c.metricsListen = v
        }
        // A key added at the end of the file after a `[retention]` line belongs to that table and would be
        // ignored without a word: say so instead.
        let table = try? TOMLTable(string: text)
        try Self.refuseStrayKeys(table, [("retention", RetentionFile.keys)], path: path)
        if let r = file.retention {
            let policy = RetentionPolicy(
                relayDays: r.relay_days, relayLast: r.relay_last, vaultDaily: r.vault_daily, vaultWeekly: r.vault_weekly,
                vaultMonthly: r.vault_monthly, vaultYearly: r.vault_yearly)
            // The same check and message as `outpost relay retention`, with the keys' names.
            do { try policy.validate(naming: .keys) } catch let e as OutpostError {
                throw RelayError(.config, "\(path): [retention] \(e.message)")
            }
            c.retention = policy
            if let t = r.prune_time {
                guard RelayConfiguration.parseClock(t) != nil else {
                    throw RelayError(
                        .config, "\(path): [retention] prune_time must be a time of day as \"HH:MM\", e.g. \"03:00\", not \(t.debugDescription)")
                }
                c.pruneTime = t
            }
        }
        (c.alerts, c.jobs) = try AlertSettings.load(text, table: table, path: path)
        if let v = file.console_listen, !v.isEmpty {
            _ = try parseListen(v)
            c.consoleListen = v
        }
        if (c.tlsCertificate == nil) != (c.tlsPrivateKey == nil) {
            throw RelayError(.config, "\(path): set both tls_certificate and tls_private_key, or neither (then the certificate made at init is used)")
        }
        _ = try parseListen(c.listen)
        return c
    }

    /// A key added at the end of the file after a `[table]` line belongs to that table and would be ignored
    /// without a word: refused instead, naming the key, what the table takes, and the fix.
    static func refuseStrayKeys(_ table: TOMLTable?, _ tables: [(name: String, keys: [String])], path: String) throws {
        for (name, keys) in tables {
            if let stray = table?[name]?.table?.keys.first(where: { !keys.contains($0) }) {
                throw RelayError(
                    .config,
                    "\(path): [\(name)] has no setting \(stray) (it takes \(keys.joined(separator: ", "))); keys below the [\(name)] line belong to it: move \(stray) above that line"
                )
            }
        }
    }

    /// "HH:MM" → minutes since midnight.
    public static func parseClock(_ s: String) -> Int? {
        let p = s.split(separator: ":")
        guard p.count == 2, let h = Int(p[0]), let m = Int(p[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
        return h * 60 + m
    }

    /// "HOST:PORT" → (host, port).
    public static func parseListen(_ s: String) throws -> (host: String, port: Int) {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else {
            throw RelayError(.config, "listen address \(s.debugDescription) must be HOST:PORT, e.g. 127.0.0.1:8440")
        }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    public static let sample = """
        # Outpost relay configuration (TOML). Written by `outpost relay init`; edit and restart `outpost relay serve`.

        # Address the relay listens on (HTTPS). Protected machines connect here.
        listen = "127.0.0.1:8440"

        # An operator-provided certificate and key (PEM). Without them the self-signed certificate made at init
        # (DATA/tls/) is used; clients pin its SHA-256 fingerprint (`outpost relay fingerprint`).
        # tls_certificate = "/etc/outpost/relay.crt"
        # tls_private_key = "/etc/outpost/relay.key"

        # Which chunks a machine is told are new: "machine" answers from the asking machine's own history only,
        # so no machine can learn what another holds (the store still keeps each chunk once). "relay" answers
        # from the whole store: faster first backups of similar machines, but any machine can then probe for
        # and read any chunk whose SHA-256 it knows. Keep "machine" unless all machines trust each other.
        dedup_scope = "machine"

        # Hours an enrollment token from `outpost relay add-machine` stays valid.
        token_valid_hours = 24

        # Uploads verified at the same time; more wait unread (bounded memory under many machines).
        # max_concurrent_uploads = 4

        # Of those, how many one machine may hold (default: the number of cores), so that one slow or greedy
        # machine never blocks the others.
        # max_uploads_per_machine = 2

        # A request whose body takes longer than this is cut off (408).
        request_timeout_seconds = 300

        # A request body that arrives slower than this, after its first 10 s, is cut off (408) and its upload
        # slot freed. 0 disables the check.
        # min_upload_kbps = 256

        # Open connections at most (more wait to be accepted), and seconds after which an idle one is closed.
        # max_connections = 512
        # idle_timeout_seconds = 120

        # zstd level protected machines compress new chunks at: -7 to 19 (negative = zstd's fast levels), 0 = the
        # store's own level (3). Level 2 pushes faster than 3 for a store about 3 % larger (docs/benchmarks.md).
        push_compression_level = 2

        # --- Metrics (docs/metrics.md): Prometheus text at http://METRICS_LISTEN/metrics, on a listener of its own
        # (plain HTTP; off unless set); the machines' port never serves it. Off loopback, metrics_token_file is
        # required, and scrapers send "Authorization: Bearer <the file's content>".
        # metrics_listen = "127.0.0.1:9440"
        # metrics_token_file = "/etc/outpost/metrics.token"    # e.g. `openssl rand -hex 32 > FILE`, mode 0600

        # --- Forwarding to the vault (after `outpost relay register`) ---
        # Send each recovery point off-site as soon as it is committed.
        forward_after_each_point = true
        # And/or at up to three times of day.
        # forward_times = ["01:00", "13:00"]
        # Bandwidth limits in Kbit/s (512 to 1023000; 0 = none) for work hours and for other hours.
        throttle_work_kbps = 0
        throttle_other_kbps = 0
        work_days = [1, 2, 3, 4, 5]      # 1 = Monday … 7 = Sunday
        work_hours = "08:00-18:00"
        # Reach the vault through an HTTP proxy, with optional credentials.
        # proxy = "http://proxy.branch.lan:3128"
        # proxy_user = "backup"
        # proxy_password = "…"

        # The web console (HTTPS, this relay's certificate), off unless set. Administrators: `outpost relay admin add`.
        # console_listen = "0.0.0.0:8442"

        # --- Retention: uncomment the [retention] line and the values you want. Keep the table at the end of
        # the file: every key below the [retention] line belongs to it. No rule for a tier keeps everything on it.
        # `outpost relay retention` overrides these values for the relay and per machine (kept in the relay's
        # index); `outpost relay prune --dry-run` shows what they would remove.
        # [retention]
        # The relay (short term): keep points younger than N days (1 to 9999) and/or the newest N (1 to 9999).
        # A point leaves the relay only once it is forwarded (when the relay is registered with a vault), and a
        # machine's newest point always stays.
        # relay_days = 14
        # relay_last = 10
        # The vault (long term): the newest point of each of the last N days (7 to 9999), weeks (4 to 5163),
        # months (3 to 1188) and years (1 to 99); at most 9999 points in all. Computed and shown by
        # `outpost relay prune`; not yet applied in the vault.
        # vault_daily = 30
        # vault_weekly = 8
        # vault_monthly = 12
        # vault_yearly = 7
        # When `relay serve` prunes the relay tier, once a day (local time; default 03:00).
        # prune_time = "03:00"

        # --- Agents' jobs: uncomment the [jobs] line to change these defaults. Keys below it belong to it.
        # [jobs]
        # A backup still running this long after it started is failed (1 to 168).
        # backup_deadline_hours = 12
        # A running backup whose agent said nothing for this long is failed (agents report every 30 s).
        # agent_silence_minutes = 10
        # A `relay backup-now` no agent took within this long is failed.
        # backup_now_minutes = 60
        # Jobs that ended, and alerts cleared, more than this many days ago are deleted (30 to 3650); each
        # machine's newest good backup, open alerts and the jobs of points still held stay (docs/alerts.md).
        # keep_days = 400

        # --- Alerts (docs/alerts.md): `relay serve` raises and clears them by itself; `outpost relay alerts` lists
        # them. Uncomment the [alerts] line and what you need; keys below it belong to it. Each alert is sent once
        # when it opens and once when it clears, to the webhook and/or by mail; `outpost relay alerts --test` sends a
        # test to each.
        # [alerts]
        # check_interval_seconds = 60
        # A machine of a protection group misses its backup when it has no good backup this long after a planned time.
        # missed_grace_minutes = 60
        # Forwarding lags when a point waits longer than this to be forwarded to the vault.
        # forwarding_lag_hours = 24
        # The relay's disk is low below this share of free space (0: not watched).
        # min_free_percent = 10
        # Attempts per notification (retried 30 s, 1 min, 2 min … at most 1 h apart).
        # delivery_attempts = 8
        # A webhook: JSON POSTed with X-Outpost-Signature = sha256=HMAC-SHA256(secret, timestamp + "." + body).
        # webhook_url = "https://alerts.example.org/outpost"
        # webhook_secret_file = "/etc/outpost/webhook.secret"    # e.g. `openssl rand -hex 32 > FILE`, mode 0600
        # webhook_ca_file = "/etc/outpost/webhook-ca.pem"          # an extra CA to trust for an https webhook
        # Email over SMTP: STARTTLS on 587 by default ("tls": implicit TLS on 465; "none" only to a loopback relay).
        # smtp_host = "mail.branch.lan"
        # smtp_port = 587
        # smtp_security = "starttls"
        # smtp_user = "outpost"
        # smtp_password_file = "/etc/outpost/smtp.password"
        # smtp_from = "outpost@branch.example.org"
        # smtp_to = ["backup-admins@example.org"]
        # smtp_ca_file = "/etc/outpost/mail-ca.pem"
        """
}

/// The relay layer's name for its errors (one type for every layer: `OutpostError`).
public typealias RelayError = OutpostError
