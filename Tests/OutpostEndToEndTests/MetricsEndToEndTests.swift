import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OutpostClient
import OutpostTLS
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `/metrics` and `--log-format json` through the binary (issue 13): the relay's and the vault's metrics on
/// listeners of their own, scraped and parsed as Prometheus text; a counter that moves with a backup, the
/// per-machine gauges, the token, the machines' port without metrics; JSON log lines with request ids; and
/// Deploy/outpost-alerts.rules.yml naming only metrics that exist.
@Suite struct MetricsEndToEndTests {
    static let token = "metrics-token-0123456789abcdef"
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// One sample of the exposition.
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// Prometheus text exposition 0.0.4, parsed strictly: every line a comment, a `# TYPE`/`# HELP` line or a sample
    /// with well-formed labels; every sample of a family that has one `# TYPE` line.
    struct Exposition {
        var types: [String: String] = [:]
        var samples: [Sample] = []

        init(_ text: String) throws {
            for line in text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
                if line.hasPrefix("# TYPE ") {
                    let parts = line.split(separator: " ").map(String.init)
                    guard parts.count == 4, Self.isName(parts[2]), ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw HarnessError("malformed TYPE line: \(line)")
                    }
                    guard types[parts[2]] == nil else { throw HarnessError("second TYPE line for \(parts[2])") }
                    types[parts[2]] = parts[3]
                } else if line.hasPrefix("#") {
                    continue
                } else {
                    samples.append(try Self.sample(line))
                }
            }
            for s in samples {
                guard types[family(of: s.name)] != nil else { throw HarnessError("\(s.name) has no TYPE line") }
            }
        }

        /// The family a sample belongs to: a histogram's `_bucket`, `_sum` and `_count` are its own.
        func family(of name: String) -> String {
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                let base = String(name.dropLast(suffix.count))
                if types[base] == "histogram" || types[base] == "summary" { return base }
            }
            return name
        }

        static func isName(_ s: String) -> Bool {
            guard let first = s.unicodeScalars.first, first == "_" || first == ":" || CharacterSet.letters.contains(first) else { return false }
            return s.unicodeScalars.allSatisfy { $0.isASCII && ($0 == "_" || $0 == ":" || CharacterSet.alphanumerics.contains($0)) }
        }

        static func sample(_ line: String) throws -> Sample {
            var rest = Substring(line)
            let name = String(rest.prefix { $0 != "{" && $0 != " " })
            guard isName(name) else { throw HarnessError("bad metric name in: \(line)") }
            rest = rest.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let label = String(rest.prefix { $0 != "=" })
                    guard isName(label), !label.contains(":") else { throw HarnessError("bad label name \(label) in: \(line)") }
                    rest = rest.dropFirst(label.count)
                    guard rest.hasPrefix("=\"") else { throw HarnessError("label \(label) without a quoted value in: \(line)") }
                    rest = rest.dropFirst(2)
                    var value = ""
                    while let c = rest.first, c != "\"" {
                        rest = rest.dropFirst()
                        if c == "\\" {
                            guard let e = rest.first else { throw HarnessError("dangling escape in: \(line)") }
                            rest = rest.dropFirst()
                            switch e {
                            case "\\": value.append("\\")
                            case "\"": value.append("\"")
                            case "n": value.append("\n")
                            default: throw HarnessError("bad escape \\\(e) in: \(line)")
                            }
                        } else {
                            value.append(c)
                        }
                    }
                    guard rest.first == "\"" else { throw HarnessError("unterminated label value in: \(line)") }
                    rest = rest.dropFirst()
                    guard labels.updateValue(value, forKey: label) == nil else { throw HarnessError("label \(label) twice in: \(line)") }
                    if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { throw HarnessError("bad label list in: \(line)") }
                }
                rest = rest.dropFirst()
            }
            let fields = rest.split(separator: " ")
            guard rest.first == " ", (1...2).contains(fields.count) else { throw HarnessError("bad value in: \(line)") }
            let text = String(fields[0])
            guard let value = Double(text) ?? ["+Inf": Double.infinity, "-Inf": -Double.infinity, "NaN": Double.nan][text] else {
                throw HarnessError("bad value \(text) in: \(line)")
            }
            return Sample(name: name, labels: labels, value: value)
        }

        func values(_ name: String, _ labels: [String: String] = [:]) -> [Double] {
            samples.filter { s in s.name == name && labels.allSatisfy { k, v in s.labels[k] == v } }.map(\.value)
        }

        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            let v = values(name, labels)
            return v.count == 1 ? v[0] : nil
        }
    }

    /// A GET; `configuration` pins a server's certificate for HTTPS.
    func get(_ url: String, token: String? = nil, configuration: HTTPClient.Configuration = .init()) async throws -> (status: Int, body: String) {
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            var request = HTTPClientRequest(url: url)
            if let token { request.headers.add(name: "Authorization", value: "Bearer " + token) }
            let response = try await http.execute(request, timeout: TimeAmount.seconds(30))
            let body = try await response.body.collect(upTo: 16 << 20)
            try await http.shutdown()
            return (Int(response.status.code), String(buffer: body))
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    func scrape(_ port: Int) async throws -> Exposition {
        let (status, body) = try await get("http://127.0.0.1:\(port)/metrics", token: Self.token)
        #expect(status == 200, "\(body)")
        return try Exposition(body)
    }

    /// The port a server printed for its metrics listener (`… metrics on http://127.0.0.1:PORT/metrics`).
    func metricsPort(_ log: () -> String, _ what: String) throws -> Int {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let text = log()
            if let r = text.range(of: #"metrics on http://127\.0\.0\.1:[0-9]+/metrics"#, options: .regularExpression) {
                let digits = text[r].split(separator: ":").last!.prefix { $0.isNumber }
                return Int(digits)!
            }
            usleep(10_000)
        }
        throw HarnessError("\(what) printed no metrics address within 30 s: \(log())")
    }

    /// Metric names Deploy/outpost-alerts.rules.yml uses.
    static func alertRuleNames() throws -> Set<String> {
        let text = try String(contentsOfFile: root + "/Deploy/outpost-alerts.rules.yml", encoding: .utf8)
        let regex = try NSRegularExpression(pattern: "outpost_[a-z_]+")
        return Set(regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range, in: text)!]) })
    }

    /// Names as Prometheus conventions want them.
    func checkConventions(_ e: Exposition) {
        for (name, type) in e.types {
            #expect(name.hasPrefix("outpost_"), "\(name)")
            #expect((type == "counter") == name.hasSuffix("_total"), "\(name) is a \(type)")
        }
        for s in e.samples {
            if let route = s.labels["route"] {
                #expect(route == "unmatched" || (route.hasPrefix("/") && !route.contains("?")), "route label \(route)")
            }
        }
    }

    @Test func relayMetricsMoveWithABackupNeedTheTokenAndStayOffTheMachinesPort() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let relay = try RelayHarness(s)
        try vault.register(relay, as: "branch", in: s)
        s.write("metrics.token", Data((Self.token + "\n").utf8), mode: 0o600)
        let toml = try String(contentsOfFile: relay.data + "/relay.toml", encoding: .utf8)
        try (toml + "\nmetrics_listen = \"127.0.0.1:0\"\nmetrics_token_file = \"\(s.sub("metrics.token"))\"\n")
            .write(toFile: relay.data + "/relay.toml", atomically: true, encoding: .utf8)
        try relay.start(extra: ["--log-format", "json"])
        let port = try metricsPort({ relay.log }, "the relay")
        let cfg = try relay.enroll("web1")

        let before = try await scrape(port)
        checkConventions(before)
        let received = try #require(before.value("outpost_relay_received_bytes_total"), "the counters exist before the first upload")
        #expect(before.value("outpost_relay_recovery_points", ["machine": "web1"]) == 0)
        #expect(before.value("outpost_relay_machine_last_good_backup_age_seconds", ["machine": "web1"]) != nil, "counted from enrollment")
        #expect(before.value("outpost_relay_machine_last_good_backup_timestamp_seconds", ["machine": "web1"]) == nil)

        s.write("data/a.bin", randomData(300_000))
        let backup = try CLI.run(["backup", "--config", cfg, s.sub("data")])
        #expect(backup.status == 0, "\(backup.stderr)")

        let after = try await scrape(port)
        checkConventions(after)
        #expect(try #require(after.value("outpost_relay_received_bytes_total")) >= received + 300_000)
        #expect(try #require(after.value("outpost_relay_stored_bytes_total")) >= 300_000)
        #expect(try #require(after.value("outpost_relay_stored_chunks_total")) >= 2, "a data chunk and a tree at least")
        #expect(after.types["outpost_relay_received_bytes_total"] == "counter")
        #expect(after.value("outpost_relay_recovery_points", ["machine": "web1"]) == 1)
        #expect(after.types["outpost_relay_recovery_points"] == "gauge")
        let age = try #require(after.value("outpost_relay_machine_last_good_backup_age_seconds", ["machine": "web1"]))
        #expect(age >= 0 && age < 600, "\(age)")
        let stamp = try #require(after.value("outpost_relay_machine_last_good_backup_timestamp_seconds", ["machine": "web1"]))
        #expect(abs(stamp - Date().timeIntervalSince1970) < 600)
        #expect(after.value("outpost_relay_machines") == 1)
        #expect(after.value("outpost_relay_jobs_total", ["kind": "backup", "outcome": "completed"]) == 1)
        #expect(after.types["outpost_relay_job_duration_seconds"] == "histogram")
        #expect(after.value("outpost_relay_job_duration_seconds_count", ["kind": "backup", "outcome": "completed"]) == 1)
        #expect(try #require(after.value("outpost_relay_store_bytes")) >= 300_000)
        let free = try #require(after.value("outpost_relay_disk_free_bytes")), size = try #require(after.value("outpost_relay_disk_size_bytes"))
        #expect(free > 0 && size >= free)
        // Requests by route pattern: the uploads, and the machine's session.
        #expect(after.values("outpost_http_requests_total", ["route": "/v1/chunks", "method": "POST", "status": "200"]).first ?? 0 >= 1)
        #expect(after.types["outpost_http_request_duration_seconds"] == "histogram")
        // A registered relay: the forwarder's backlog, lag and the vault's reachability.
        for name in ["outpost_relay_forwarding_backlog_points", "outpost_relay_forwarding_backlog_bytes", "outpost_relay_vault_lag_seconds"] {
            #expect(after.value(name) != nil, "\(name)")
        }
        #expect(after.value("outpost_relay_vault_up") == 1)
        #expect(after.value("outpost_relay_alerts_open", ["kind": "vault-unreachable"]) == 0)

        // Every metric the sample alert rules use is one the relay or the vault exports (the vault's are checked
        // in the vault's test: here only the request counter, which both serve).
        var exported = Set(after.types.keys)
        for (name, type) in after.types where type == "histogram" { exported.formUnion([name + "_bucket", name + "_sum", name + "_count"]) }
        let missing = try Self.alertRuleNames().filter { !$0.hasPrefix("outpost_vault_") }.subtracting(exported)
        #expect(missing.isEmpty, "Deploy/outpost-alerts.rules.yml names metrics nobody exports: \(missing.sorted())")

        // The token: none or a wrong one is refused.
        #expect(try await get("http://127.0.0.1:\(port)/metrics").status == 401)
        #expect(try await get("http://127.0.0.1:\(port)/metrics", token: "metrics-token-0123456789abcdeF").status == 401)
        // The machines' port serves no metrics, with or without a machine's credential.
        let client = try ClientConfiguration.load(path: cfg)
        let pinned = HTTPClient.Configuration(
            tlsConfiguration: try TLSIdentity.pinnedClientConfiguration(certificatePEM: try #require(client.certificate)))
        #expect(try await get(relay.url + "/metrics", configuration: pinned).status == 404)
        #expect(try await get(relay.url + "/metrics", token: client.credential, configuration: pinned).status == 404)

        // --log-format json: every line of the relay's log is one JSON object, enrollment with its request's id.
        #expect(relay.stop() == 0)
        let lines = relay.log.split(separator: "\n").map(String.init)
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!lines.isEmpty && objects.count == lines.count, "not JSON: \(lines.filter { !$0.hasPrefix("{") })")
        #expect(objects.allSatisfy { Set($0.keys) == ["time", "level", "label", "message", "metadata"] })
        let enrolled = try #require(objects.first { $0["message"] as? String == "machine enrolled" })
        let metadata = try #require(enrolled["metadata"] as? [String: Any])
        #expect((metadata["request_id"] as? String)?.isEmpty == false && metadata["machine"] as? String == "web1", "\(enrolled)")
        #expect(vault.stop() == 0)
    }

    @Test func vaultMetricsCountRequestsByRouteAndRelays() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        s.write("metrics.token", Data(Self.token.utf8), mode: 0o600)
        // Off loopback without a token: refused before anything listens.
        let open = try CLI.run(["vault", "serve", "--data", vault.data, "--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0"])
        #expect(open.status == 64 && open.stderr.contains("not a loopback address"), "\(open.stderr)")

        let portFile = s.sub("vault.port"), logPath = s.sub("vault-metrics.log")
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = [
            "vault", "serve", "--data", vault.data, "--listen", "127.0.0.1:0", "--port-file", portFile, "--metrics-listen", "127.0.0.1:0",
            "--metrics-token-file", s.sub("metrics.token"), "--log-format", "json",
        ]
        p.standardError = FileHandle(forWritingAtPath: logPath)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let log = { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        let metrics = try metricsPort(log, "the vault")
        let deadline = Date().addingTimeInterval(30)
        var vaultPort = 0
        while vaultPort == 0 && Date() < deadline {
            vaultPort = Int(((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            if vaultPort == 0 { usleep(10_000) }
        }
        #expect(vaultPort > 0, "\(log())")

        let cert = try String(contentsOfFile: vault.data + "/tls/cert.pem", encoding: .utf8)
        let pinned = HTTPClient.Configuration(tlsConfiguration: try TLSIdentity.pinnedClientConfiguration(certificatePEM: cert))
        #expect(try await get("https://127.0.0.1:\(vaultPort)/healthz", configuration: pinned).status == 200)
        #expect(try await get("https://127.0.0.1:\(vaultPort)/metrics", configuration: pinned).status == 404, "the relays' port serves no metrics")

        let e = try await scrape(metrics)
        checkConventions(e)
        #expect(e.value("outpost_vault_relays", ["state": "active"]) == 0)
        #expect(e.value("outpost_build_info", ["role": "vault"]) == 1)
        #expect(e.value("outpost_http_requests_total", ["route": "/healthz", "method": "GET", "status": "200"]) == 1, "\(e.samples.map(\.name))")
        #expect(e.value("outpost_http_requests_total", ["route": "unmatched", "method": "GET", "status": "404"]) == 1)
        var exported = Set(e.types.keys)
        for (name, type) in e.types where type == "histogram" { exported.formUnion([name + "_bucket", name + "_sum", name + "_count"]) }
        let vaultRules = try Self.alertRuleNames().filter { !$0.hasPrefix("outpost_relay_") }
        #expect(vaultRules.subtracting(exported).isEmpty, "\(vaultRules.subtracting(exported))")
        #expect(try await get("http://127.0.0.1:\(metrics)/metrics", token: "wrong-token-0123456789abcdef").status == 401)

        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let lines = log().split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) is [String: Any] }, "\(log())")
    }
}
