import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import OutpostClient
import OutpostCore
import OutpostTLS
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 8's reproductions against a running relay: each request that broke it is answered with a clear error,
/// and the relay goes on serving the other machines.
@Suite(.serialized) struct RelayHardeningEndToEndTests {
    func client(_ configPath: String) throws -> RelayClient {
        try RelayClient(configuration: try ClientConfiguration.load(path: configPath))
    }

    /// Runs `body` with a client for the machine and closes it whatever happens.
    func withClient<T>(_ configPath: String, _ body: (RelayClient) async throws -> T) async throws -> T {
        let c = try client(configPath)
        do { let r = try await body(c); await c.close(); return r } catch { await c.close(); throw error }
    }

    func setting(_ relay: RelayHarness, _ lines: String) throws {
        let toml = relay.data + "/relay.toml"
        try (try String(contentsOfFile: toml, encoding: .utf8) + "\n" + lines + "\n").write(toFile: toml, atomically: true, encoding: .utf8)
    }

    /// One 4 MiB chunk asked for 64 times in one request used to be answered whole (256 MiB, and 4 GB with a
    /// larger blob); now an answer holds at most 64 MiB and the client asks again for the rest.
    @Test func aFetchAnswerIsBounded() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("greedy")
        try await withClient(cfg) { c in
            let chunk = [UInt8](randomData(4 << 20))
            let blob = chunk.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: nil) }
            _ = try await c.call(.POST, "/v1/chunks", body: WireFormat.encodeFrames([blob]))
            // A graceful stop seals the open pack, so the blob is in the store's index when served.
            #expect(relay.stop() == 0)
            try relay.start()
            let answer = try await c.call(
                .POST, "/v1/blobs", body: WireFormat.encodeIDs(Array(repeating: blob.id, count: 64)), maxResponse: 512 << 20)
            let frames = try WireFormat.decodeFrames(answer)
            #expect(answer.count <= WireFormat.maxFetchAnswerBytes, "answer of \(answer.count) bytes")
            #expect(!frames.isEmpty && frames.count < 64 && frames.allSatisfy { $0.id == blob.id })
            // The client's restore path still gets all 64, in rounds.
            let repo = try await RemoteRepository(client: c)
            let all = try await repo.loadMany(Array(repeating: blob.id, count: 64))
            #expect(all.count == 64 && all.allSatisfy { $0 == chunk })
        }
    }

    /// A frame of a few KB that claims to expand to far more than a chunk may be is refused before anything is
    /// decompressed; so is a request whose frames expand to more than 64 MiB together.
    @Test func decompressionBombsAreRefused() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        try await withClient(try relay.enroll("bomber")) { c in
            let z = ZstdCompressor(level: 3)
            func bomb(_ byte: UInt8, _ count: Int, _ kind: BlobKind) -> PreparedBlob {
                [UInt8](repeating: byte, count: count).withUnsafeBytes { PreparedBlob.make(kind: kind, plaintext: $0, compressor: z) }
            }
            let big = bomb(0, 16 << 20, .data)
            #expect(big.stored.count < 64 << 10)
            let e1 = await #expect(throws: ClientError.self) { _ = try await c.call(.POST, "/v1/chunks", body: WireFormat.encodeFrames([big])) }
            #expect(e1?.message.contains("chunks of this relay are at most") == true, "\(e1?.message ?? "accepted")")
            let trees = [bomb(1, 40 << 20, .tree), bomb(2, 40 << 20, .tree)]
            let e2 = await #expect(throws: ClientError.self) { _ = try await c.call(.POST, "/v1/chunks", body: WireFormat.encodeFrames(trees)) }
            #expect(e2?.message.contains("expands to") == true, "\(e2?.message ?? "accepted")")
            let missing = try await c.call(.POST, "/v1/chunks/missing", body: WireFormat.encodeIDs([big.id] + trees.map(\.id)))
            #expect(try WireFormat.decodeIDs(missing, max: 10).count == 3, "nothing of the refused requests was stored")
        }
    }

    /// A machine that holds uploads open and sends nothing used to take every upload slot; now it holds at
    /// most its own share, another machine's upload goes through meanwhile, and the stalled body is cut off.
    @Test func aStalledUploadDoesNotBlockOtherMachines() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try setting(relay, "max_concurrent_uploads = 2\nmax_uploads_per_machine = 1")
        try relay.start()
        let slowCfg = try ClientConfiguration.load(path: try relay.enroll("slow"))
        let fastCfg = try relay.enroll("fast")
        let tls = try TLSIdentity.pinnedClientConfiguration(certificatePEM: slowCfg.certificate!)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        let finished = Counter()
        // Two uploads that send one byte of a 1 MiB body, then nothing.
        let holds = (0..<2).map { _ in AsyncStream<ByteBuffer>.makeStream() }
        for h in holds { h.continuation.yield(ByteBuffer(bytes: [0])) }
        let url = relay.url, credential = slowCfg.credential
        let stalled = holds.map { (stream, _) in
            Task { () -> String in
                var req = HTTPClientRequest(url: url + "/v1/chunks")
                req.method = .POST
                req.headers.add(name: "Authorization", value: "Bearer " + credential)
                req.body = .stream(stream, length: .known(Int64(1 << 20)))
                defer { finished.n.withLock { $0 += 1 } }
                do { return "\(try await http.execute(req, timeout: .seconds(120)).status.code)" } catch { return "\(error)" }
            }
        }
        let honest = [UInt8](randomData(100_000)).withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: nil) }
        var sent = "ok"
        do { _ = try await withClient(fastCfg) { try await $0.call(.POST, "/v1/chunks", body: WireFormat.encodeFrames([honest])) } } catch {
            sent = "\(error)"
        }
        #expect(sent == "ok", "the other machine's upload went through")
        #expect(finished.n.withLock { $0 } == 0, "while the stalled ones were still open")
        let first = await stalled[0].value
        #expect(first == "408" || first.contains("remoteConnectionClosed") || first.contains("closed"), "\(first)")
        stalled[1].cancel()
        for h in holds { h.continuation.finish() }
        _ = await stalled[1].value
        try await http.shutdown()
    }

    @Test func namesHoursAndTokensAreChecked() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        for bad in [".", "..", "-rf", "a b", "\u{1b}[2Jevil", String(repeating: "x", count: 65)] {
            let r = try CLI.run(["relay", "add-machine", "--data", relay.data, "--", bad])
            #expect(r.status == 64, "\(bad.debugDescription): \(r.stderr)")
            #expect(!r.stderr.contains("\u{1b}"), "the name is printed escaped")
        }
        for hours in ["-1", "0", "721", "100000000"] {
            let r = try CLI.run(["relay", "add-machine", "--data", relay.data, "--valid-hours=\(hours)", "ok1"])
            #expect(r.status == 64 && r.stderr.contains("1 to 720"), "\(hours): \(r.stderr)")
        }
        let toml = relay.data + "/relay.toml"
        let original = try String(contentsOfFile: toml, encoding: .utf8)
        try original.replacingOccurrences(of: "token_valid_hours = 24", with: "token_valid_hours = -5").write(
            toFile: toml, atomically: true, encoding: .utf8)
        let cfgBad = try CLI.run(["relay", "add-machine", "--data", relay.data, "ok2"])
        #expect(cfgBad.status == 64 && cfgBad.stderr.contains("token_valid_hours must be 1 to 720"), "\(cfgBad.stderr)")
        try original.write(toFile: toml, atomically: true, encoding: .utf8)
        try relay.start()
        // A token from a file, never on the command line.
        let add = try CLI.run(["relay", "add-machine", "--data", relay.data, "filer"])
        s.write("token", Data(add.stdout.utf8), mode: 0o600)
        let e = try CLI.run([
            "enroll", "--relay", relay.url, "--token-file", s.sub("token"), "--fingerprint", relay.fingerprint, "--config", s.sub("f.toml"),
        ])
        #expect(e.status == 0, "\(e.stderr)")
        let dup = try CLI.run(["relay", "add-machine", "--data", relay.data, "filer"])
        #expect(dup.status == 15 && dup.stderr.contains("already enrolled"), "\(dup.stderr)")
        // From a pipe, as `--token-file <(…)` passes it (a FIFO has no size; the token used to read as empty).
        let piped = try CLI.run(["relay", "add-machine", "--data", relay.data, "piper"])
        let fifo = s.sub("token.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let token = Array(piped.stdout.utf8)
        let writer = Thread {
            let fd = open(fifo, O_WRONLY)  // waits for the reader: the pipe itself orders the two
            if fd >= 0 {
                _ = token.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
        }
        writer.start()
        let fromPipe = try CLI.run([
            "enroll", "--relay", relay.url, "--token-file", fifo, "--fingerprint", relay.fingerprint, "--config", s.sub("p.toml"),
        ])
        #expect(fromPipe.status == 0, "\(fromPipe.stderr)")
        let neither = try CLI.run(["enroll", "--relay", relay.url, "--config", s.sub("g.toml")])
        #expect(neither.status == 64)
    }

    /// A second relay on the same data directory, or a local backup into a served store, is refused.
    @Test func aServedDataDirectoryIsLocked() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let twice = try CLI.run(["relay", "serve", "--data", relay.data, "--listen", "127.0.0.1:0"])
        #expect(twice.status == 12 && twice.stderr.contains("already serves it"), "\(twice.stderr)")
        s.write("data/f", randomData(1000))
        let local = try CLI.run(["backup", "--store", relay.data + "/store", "--machine", "sneaky", s.sub("data")])
        #expect(local.status == 12 && local.stderr.contains("served by a running relay"), "\(local.stderr)")
        #expect(relay.stop() == 0)
        #expect(
            try CLI.run(["backup", "--store", relay.data + "/store", "--machine", "sneaky", s.sub("data")]).status == 0,
            "with the relay stopped the store is usable locally")
    }

    /// A busy port names the address and the fix, with its own exit code.
    @Test func aBusyPortIsExplained() async throws {
        let s = Scratch()
        let a = try RelayHarness(s, name: "a")
        try a.start()
        let b = try RelayHarness(s, name: "b")
        let r = try CLI.run(["relay", "serve", "--data", b.data, "--listen", "127.0.0.1:\(a.port)"])
        #expect(r.status == 22, "\(r.stderr)")
        #expect(r.stderr.contains("127.0.0.1:\(a.port)") && r.stderr.contains("already in use"), "\(r.stderr)")
    }

    /// A client whose relay is down says what it waits for, then ends with exit 20.
    @Test func aDownRelayIsAnnounced() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("patient")
        relay.stop()
        let r = try CLI.run(["points", "--config", cfg])
        #expect(r.status == 20, "\(r.stderr)")
        #expect(r.stderr.contains("waiting for the relay at"), "\(r.stderr)")
    }

    /// Ctrl-C ends a command with 130 and one line saying what was kept.
    @Test func ctrlCIsReported() async throws {
        let s = Scratch()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["enroll", "--relay", "https://127.0.0.1:1", "--token-file", "-", "--config", s.sub("c.toml")]
        let input = Pipe()
        p.standardInput = input
        FileManager.default.createFile(atPath: s.sub("err"), contents: nil)
        p.standardError = FileHandle(forWritingAtPath: s.sub("err"))
        try p.run()
        // It says when it reads the token: from then on it waits on standard input with its handler installed.
        while !((try? String(contentsOfFile: s.sub("err"), encoding: .utf8)) ?? "").contains("reading the enrollment token") && p.isRunning {
            usleep(10_000)
        }
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationReason == .exit && p.terminationStatus == 130)
        #expect(((try? String(contentsOfFile: s.sub("err"), encoding: .utf8)) ?? "").contains("interrupted (Ctrl-C)"))
        try? input.fileHandleForWriting.close()
    }
}

final class Counter: Sendable {
    let n = Mutex(0)
}
