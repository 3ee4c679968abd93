import Foundation
import OutpostS3
import Testing

/// A throwaway Ceph cluster (mon, memstore osd, radosgw on 127.0.0.1) started by Deploy/ceph.sh for one suite:
/// `@Suite(.ceph)` starts it before the suite's first test and stops every daemon after its last, whatever
/// happened in between. Tests read it from `CephCluster.current`. Without Ceph installed the suite fails with the
/// script's message (run Deploy/install-deps.sh): it is never skipped in silence.
public struct CephCluster: Sendable {
    public let dir: String
    public let endpoint: String
    public let credentials: S3Credentials

    @TaskLocal public static var current: CephCluster?

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Deploy/ceph.sh").path
    }

    /// Runs `bash Deploy/ceph.sh VERB DIR` on a thread of its own (a start takes ~15 s; no test-pool thread waits).
    static func run(_ verb: String, _ dir: String) async -> (status: Int32, stderr: String) {
        await withCheckedContinuation { (done: CheckedContinuation<(status: Int32, stderr: String), Never>) in
            Thread {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/bin/bash")
                p.arguments = [script, verb, dir]
                let log = dir + "-\(verb).log"
                _ = FileManager.default.createFile(atPath: log, contents: nil)
                p.standardError = FileHandle(forWritingAtPath: log)
                p.standardOutput = FileHandle.nullDevice
                do {
                    try p.run()
                    p.waitUntilExit()
                    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                    try? FileManager.default.removeItem(atPath: log)
                    done.resume(returning: (p.terminationStatus, text))
                } catch {
                    done.resume(returning: (-1, "cannot run \(script): \(error)"))
                }
            }.start()
        }
    }

    static func start() async throws -> CephCluster {
        var base = NSTemporaryDirectory()
        while base.hasSuffix("/") { base.removeLast() }
        let dir = base + "/outpost-ceph-\(UUID().uuidString.prefix(8))"
        let r = await run("start", dir)
        guard r.status == 0, let env = try? String(contentsOfFile: dir + "/env", encoding: .utf8) else {
            _ = await run("stop", dir)
            try? FileManager.default.removeItem(atPath: dir)
            throw CephError(
                "Deploy/ceph.sh start failed (\(r.status)); the S3 tests need Ceph (`bash Deploy/install-deps.sh` installs it):\n\(r.stderr)")
        }
        var values: [String: String] = [:]
        for line in env.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let endpoint = values["S3_ENDPOINT"], let id = values["AWS_ACCESS_KEY_ID"], let secret = values["AWS_SECRET_ACCESS_KEY"] else {
            await CephCluster(dir: dir, endpoint: "", credentials: S3Credentials(accessKeyID: "", secretAccessKey: "")).stop()
            throw CephError("\(dir)/env lacks S3_ENDPOINT or the keys: \(env)")
        }
        return CephCluster(dir: dir, endpoint: endpoint, credentials: S3Credentials(accessKeyID: id, secretAccessKey: secret))
    }

    func stop() async {
        _ = await Self.run("stop", dir)
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A bucket name no other test uses.
    public static func freshBucket(_ prefix: String = "t") -> String { "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())" }

    /// A store on a fresh bucket of this cluster (created here), so that tests running at once never see each
    /// other's keys.
    public func freshStore(tuning: S3ObjectStore.Tuning = .init(), bucket: String? = nil) throws -> S3ObjectStore {
        let store = try S3ObjectStore(
            location: S3Location(endpoint: endpoint, bucket: bucket ?? Self.freshBucket()), credentials: credentials, tuning: tuning)
        try store.ensureBucket()
        return store
    }

    /// The cluster's key as a credentials file (mode 0600) at `path`; `secret` overrides the secret.
    public func writeCredentialsFile(_ path: String, secret: String? = nil) throws {
        let text = "[default]\naws_access_key_id = \(credentials.accessKeyID)\naws_secret_access_key = \(secret ?? credentials.secretAccessKey)\n"
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CephError("cannot write \(path)")
        }
    }

    public static func required() throws -> CephCluster {
        guard let c = current else { throw CephError("no Ceph cluster: the suite needs the .ceph trait") }
        return c
    }
}

public struct CephError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Starts a cluster around the whole suite it is applied to (not around each test), stops it in every case.
public struct CephTrait: SuiteTrait, TestScoping {
    public var isRecursive: Bool { false }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> CephTrait? {
        test.isSuite ? self : nil
    }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let cluster = try await CephCluster.start()
        do {
            try await CephCluster.$current.withValue(cluster) { try await function() }
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}

extension Trait where Self == CephTrait {
    /// One Ceph cluster for the suite (Deploy/ceph.sh).
    public static var ceph: CephTrait { CephTrait() }
}
