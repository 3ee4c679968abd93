import Foundation
import Testing

@testable import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Secrets are created with their final mode from the first byte (issue 8: with umask 022 another local user
/// read credentials files and generated passphrases while they were written).
@Suite struct SecretFileTests {
    @Test func secretIsCreatedPrivateUnderAPermissiveUmask() throws {
        let dir = NSTemporaryDirectory() + "secret-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let old = umask(0o022)
        defer { umask(old) }
        try DurableFile.writeSecret(Array("passphrase\n".utf8), to: dir + "/p")
        var st = stat()
        #expect(stat(dir + "/p", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(try String(contentsOfFile: dir + "/p", encoding: .utf8) == "passphrase\n")
        // No temporary file is left beside it.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["p"])
    }

    /// FileManager.createFile writes the bytes first and applies `.posixPermissions` afterwards: a window in
    /// which the file has the umask's mode. No source file may write through it (or through String.write,
    /// which does the same) except the port files, which hold no secret.
    @Test func noFileIsWrittenThroughFoundationsTwoStepCreate() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources").path
        var offenders: [String] = []
        let files = FileManager.default.enumerator(atPath: sources)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        #expect(!files.isEmpty)
        for f in files {
            let text = try String(contentsOfFile: sources + "/" + f, encoding: .utf8)
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if line.contains("createFile(atPath") || (line.contains("write(toFile") && !line.contains("portFile")) {
                    offenders.append("\(f):\(n + 1)")
                }
            }
        }
        #expect(offenders == [])
    }
}
