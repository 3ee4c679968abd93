import Foundation
import FuzzSupport
import OutpostCore
import OutpostCrypto
import OutpostHTTP

/// Recovery point records and the other JSON the relay and the vault read: a point as the store and rebuild read
/// it (`RecoveryPoint.decode`) and as the relay reads a commit (`RelayAPI.decoder()`), the relay API's bodies
/// as either side reads them, a vault credentials file and a key file. A point the relay accepts is stored with
/// `encoded()` (which traps if encoding fails) and must decode again, or the catalog could not be rebuilt.
///
/// Input: one selector byte, then the JSON. Selector % 8: 0 point (store), 1 point (relay commit), 2 point list
/// (client), 3 session, 4 enroll request and response, 5 upload result and error body, 6 vault credentials file,
/// 7 key file.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Fuzz.bytes(data, size)
    guard let selector = input.first else { return 0 }
    let body = Array(input.dropFirst())
    let json = Data(body)
    let decoder = RelayAPI.decoder()
    let encoder = RelayAPI.encoder()
    switch selector % 8 {
    case 0:
        guard let p = try? RecoveryPoint.decode(body, what: "fuzzed point") else { return 0 }
        stored(p)
    case 1:
        guard let p = try? decoder.decode(RecoveryPoint.self, from: json) else { return 0 }
        // The relay refuses other versions before it stores anything (Relay.commit).
        if p.version >= 1 && p.version <= RecoveryPoint.formatVersion { stored(p) }
    case 2:
        if let list = try? decoder.decode([RelayAPI.PointEntry].self, from: json) { _ = try? encoder.encode(list) }
    case 3:
        if let s = try? decoder.decode(RelayAPI.Session.self, from: json) { _ = try? encoder.encode(s) }
    case 4:
        if let r = try? decoder.decode(RelayAPI.EnrollRequest.self, from: json) { _ = try? encoder.encode(r) }
        if let r = try? decoder.decode(RelayAPI.EnrollResponse.self, from: json) {
            _ = try? encoder.encode(r)
            _ = RelayAPI.parseCredential(r.credential)
        }
    case 5:
        if let r = try? decoder.decode(RelayAPI.UploadResult.self, from: json) { _ = try? encoder.encode(r) }
        if let r = try? decoder.decode(RelayAPI.ErrorBody.self, from: json) { _ = try? encoder.encode(r) }
    case 6:
        guard let f = try? VaultCredentialsFile.decode(body, path: "fuzzed credentials file") else { return 0 }
        Fuzz.expect(
            (try? VaultCredentialsFile.decode(f.encoded(), path: "re-encoded credentials file")) != nil,
            "an accepted vault credentials file does not decode after encoded()")
    default:
        guard let k = try? KeyFile.decode(body) else { return 0 }
        Fuzz.expect((try? KeyFile.decode(k.encoded())) == k, "an accepted key file does not survive encoded() + decode")
    }
    return 0
}

/// What the store does with an accepted point: `encoded()` (a trap if it cannot be encoded), then reads it back.
private func stored(_ p: RecoveryPoint) {
    let bytes = p.encoded()
    Fuzz.expect(
        (try? RecoveryPoint.decode(bytes, what: "stored point")) != nil,
        "an accepted recovery point does not decode after encoded(): \(String(decoding: bytes, as: UTF8.self))")
    _ = p.root
}

@_cdecl("FuzzPoint_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    Fuzz.main(argc, argv, fuzzPoint)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?)
    -> CInt
{
    Fuzz.writeSeedsIfAsked {
        var summary = BackupSummary()
        summary.filesNew = 3; summary.bytesRead = 12345; summary.bytesTotal = 99999; summary.durationSeconds = 1.25
        let start = Date(timeIntervalSince1970: 1_700_000_000.125)
        var point = RecoveryPoint(
            machine: "web-1", hostname: "web-1.example", paths: ["/etc", "/home"], startedAt: start,
            finishedAt: start.addingTimeInterval(42), rootTree: BlobID.hash(Array("root".utf8)),
            parent: BlobID.hash(Array("parent".utf8)).hex, summary: summary)
        point.tags = ["daily"]
        let enc = RelayAPI.encoder()
        let session = RelayAPI.Session(
            machine: "web-1", protocolVersion: 1, relayVersion: "1.0.0", chunker: .default,
            compressionLevel: 3, dedupScope: "relay")
        let creds = VaultCredentialsFile(
            vaultID: "v1", vaultName: "vault", url: "https://127.0.0.1:8443", fingerprint: String(repeating: "ab", count: 32),
            certificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            secret: String(repeating: "cd", count: 32), expiresAt: start, recoverRelay: nil)
        let keyFile =
            #"{"createdAt":"2023-11-14T22:13:20Z","kdf":"scrypt","salt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","scrypt":{"n":1024,"p":1,"r":8},"version":1,"wrappedKey":"AAAA"}"#
        return [
            ("point-store", [0] + point.encoded()),
            ("point-commit", [1] + point.encoded()),
            ("point-list", [2] + Array(try enc.encode([RelayAPI.PointEntry(id: BlobID.hash(point.encoded()).hex, point: point)]))),
            ("session", [3] + Array(try enc.encode(session))),
            (
                "enroll",
                [4]
                    + Array(
                        try enc.encode(
                            RelayAPI.EnrollResponse(
                                machine: "web-1", credential: RelayAPI.credential(machine: "web-1", secret: String(repeating: "0", count: 64)))))
            ),
            ("upload", [5] + Array(try enc.encode(RelayAPI.UploadResult(received: 3, stored: 2, storedBytes: 100, rawBytes: 300)))),
            ("credentials", [6] + creds.encoded()),
            ("keyfile", [7] + Array(keyFile.utf8)),
        ]
    }
    return 0
}
