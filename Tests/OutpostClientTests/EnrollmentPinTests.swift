import Foundation
import Hummingbird
import HummingbirdTLS
import HummingbirdTesting
import Logging
import OutpostCore
import OutpostHTTP
import OutpostTLS
import Testing

@testable import OutpostClient

/// Enrollment pins the certificate the TLS handshake proves, never a PEM document the server sends as data.
@Suite struct EnrollmentPinTests {
    /// A TLS server with `identity` whose /v1/certificate answers `certificateBody` and whose /v1/enroll
    /// hands out a credential, as a relay (or a man in the middle imitating one) would.
    func withServer(_ identity: TLSIdentity, certificateBody: String, _ body: @Sendable (Int) async throws -> Void) async throws {
        let router = Router()
        router.get("/v1/certificate") { _, _ in certificateBody }
        router.post("/v1/enroll") { _, _ -> Response in
            let answer = try RelayAPI.encoder().encode(
                RelayAPI.EnrollResponse(machine: "m1", credential: RelayAPI.credential(machine: "m1", secret: "s")))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: answer)))
        }
        let app = Application(
            router: router, server: try .tls(.http1(), tlsConfiguration: try identity.serverConfiguration()),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in try await body(client.port!) }
    }

    /// The reproduction from issue 8: the real certificate, a stray "-----BEGIN " line, then the attacker's.
    @Test func appendedCertificateDoesNotPassThePin() async throws {
        let real = try TLSIdentity.selfSigned(commonName: "relay", hosts: ["localhost"])
        let attacker = try TLSIdentity.selfSigned(commonName: "mitm", hosts: ["localhost"])
        let poisoned = real.certificatePEM + "\n-----BEGIN \n" + attacker.certificatePEM
        try await withServer(attacker, certificateBody: poisoned) { port in
            do {
                _ = try await Enrollment.enroll(
                    relay: "https://127.0.0.1:\(port)", token: "t", expectedFingerprint: try real.fingerprint,
                    logger: Logger(label: "test"))
                Issue.record("enrollment through a man in the middle succeeded")
            } catch let e as ClientError {
                #expect(e.code == .fingerprintMismatch)
            }
        }
    }

    /// The genuine relay: the pin passes and the stored certificate is exactly the leaf, re-encoded.
    @Test func genuineRelayIsPinnedByItsLeaf() async throws {
        let real = try TLSIdentity.selfSigned(commonName: "relay", hosts: ["localhost"])
        let attacker = try TLSIdentity.selfSigned(commonName: "mitm", hosts: ["localhost"])
        // Even a relay that sent junk after its PEM would not get the junk stored.
        try await withServer(real, certificateBody: real.certificatePEM + "\n-----BEGIN \n" + attacker.certificatePEM) { port in
            let (config, fp) = try await Enrollment.enroll(
                relay: "https://127.0.0.1:\(port)", token: "t",
                expectedFingerprint: try real.fingerprint, logger: Logger(label: "test"))
            #expect(fp == (try real.fingerprint))
            let stored = try #require(config.certificate)
            #expect(stored.components(separatedBy: "-----BEGIN").count == 2)
            #expect(try TLSIdentity.fingerprint(ofPEM: stored) == (try real.fingerprint))
        }
    }

    /// A client.toml poisoned by an older version (two certificates) is refused, not trusted.
    @Test func pinnedConfigurationRefusesMoreThanOneCertificate() throws {
        let a = try TLSIdentity.selfSigned(commonName: "a", hosts: ["localhost"])
        let b = try TLSIdentity.selfSigned(commonName: "b", hosts: ["localhost"])
        #expect(throws: TLSIdentity.PinError.self) { try TLSIdentity.pinnedClientConfiguration(certificatePEM: a.certificatePEM + b.certificatePEM) }
        #expect(throws: TLSIdentity.PinError.self) { try TLSIdentity.fingerprint(ofPEM: a.certificatePEM + "\n-----BEGIN \n" + b.certificatePEM) }
        _ = try TLSIdentity.pinnedClientConfiguration(certificatePEM: a.certificatePEM)
    }
}
