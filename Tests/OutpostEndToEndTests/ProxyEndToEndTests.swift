import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The forwarder reaches the vault through an HTTP proxy with credentials (MARS's proxy setting).
@Suite(.serialized) struct ProxyEndToEndTests {
    /// A minimal CONNECT proxy that demands Basic credentials and logs what it tunnels.
    static let proxyScript = #"""
        import asyncio, base64, sys
        port_file, log_file, user, password = sys.argv[1:5]
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        log = open(log_file, "a", buffering=1)
        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data); await w.drain()
            except Exception:
                pass
            finally:
                w.close()
        async def handle(r, w):
            head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {h.split(":", 1)[0].strip().lower(): h.split(":", 1)[1].strip() for h in head[1:] if ":" in h}
            if headers.get("proxy-authorization") != expected:
                log.write(f"DENIED {method} {target}\n")
                w.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n"); await w.drain(); w.close(); return
            if method != "CONNECT":
                w.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"); await w.drain(); w.close(); return
            host, port = target.rsplit(":", 1)
            ur, uw = await asyncio.open_connection(host, int(port))
            log.write(f"CONNECT {target}\n")
            w.write(b"HTTP/1.1 200 Connection Established\r\n\r\n"); await w.drain()
            await asyncio.gather(pipe(r, uw), pipe(ur, w))
        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            open(port_file, "w").write(str(server.sockets[0].getsockname()[1]))
            async with server:
                await server.serve_forever()
        asyncio.run(main())
        """#

    @Test func forwardingGoesThroughAnAuthenticatedProxy() async throws {
        let s = Scratch()
        let script = s.sub("proxy.py")
        try Self.proxyScript.write(toFile: script, atomically: true, encoding: .utf8)
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        proxy.arguments = ["python3", script, s.sub("proxy.port"), s.sub("proxy.log"), "backup", "s3cret pass"]
        proxy.standardError = FileHandle.nullDevice
        try proxy.run()
        defer { kill(proxy.processIdentifier, SIGKILL); proxy.waitUntilExit() }
        var port = ""
        for _ in 0..<1000 where port.isEmpty {
            port = ((try? String(contentsOfFile: s.sub("proxy.port"), encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            if port.isEmpty { usleep(10_000) }
        }
        #expect(!port.isEmpty, "the test proxy started")

        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("viaproxy")
        s.write("data/a", randomData(300_000))
        #expect(try CLI.run(["backup", "--config", cfg, s.sub("data")]).status == 0)
        #expect(
            try CLI.run([
                "relay", "register", "--data", relay.data, "--vault-credentials", try vault.credentials("r"),
                "--passphrase-file", s.sub("p"), "--generate-passphrase", "--fast-kdf-for-tests",
            ]).status == 0)

        let toml = relay.data + "/relay.toml"
        let base = try String(contentsOfFile: toml, encoding: .utf8)
        try (base + "\nproxy = \"http://127.0.0.1:\(port)\"\nproxy_user = \"backup\"\nproxy_password = \"s3cret pass\"\n").write(
            toFile: toml, atomically: true, encoding: .utf8)
        let ok = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(ok.status == 0, "\(ok.stderr)")
        let log = (try? String(contentsOfFile: s.sub("proxy.log"), encoding: .utf8)) ?? ""
        #expect(log.contains("CONNECT 127.0.0.1:\(vault.port)"), "the vault was reached through the proxy: \(log)")
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0)
    }
}
