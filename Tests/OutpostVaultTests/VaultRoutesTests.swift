import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostObjects
import Testing

@testable import OutpostVault

/// The vault's routes in-process: authentication, body limits and the shape of error bodies (docs/vault.md §7).
@Suite struct VaultRoutesTests {
    @Test func aRequestWithoutAValidCredentialIs401() async throws {
        let vault = try VaultFixture("routes")
        let relayID = try #require(VaultAPI.parseCredential(vault.credential)?.relayID)
        try await vault.test { client in
            let none = try await client.execute(uri: "/v1/list", method: .get)
            #expect(none.status == .unauthorized)
            #expect(none.headers[.contentType] == "application/json")
            #expect(none.failure?.error == "unauthorized")
            #expect(none.failure?.message.contains("register the relay with `outpost relay register`") == true)
            let wrong = "Bearer " + VaultAPI.credential(relayID: relayID, secret: String(repeating: "0", count: 64))
            let bad = try await client.execute(uri: "/v1/objects/packs/a", method: .get, headers: [.authorization: wrong])
            #expect(bad.status == .unauthorized)
            #expect(bad.failure?.message == "the relay credential is not valid (wrong, or the relay was removed from the vault)")
        }
    }

    @Test func anObjectIsStoredOnceReadWholeOrByRangeListedAndSoftDeleted() async throws {
        let vault = try VaultFixture("routes")
        let auth: HTTPFields = [.authorization: "Bearer " + vault.credential]
        try await vault.test { client in
            let bytes = ByteBuffer(string: "0123456789")
            #expect(try await client.execute(uri: "/v1/objects/packs/a", method: .put, headers: auth, body: bytes).status == .created)
            #expect(try await client.execute(uri: "/v1/objects/packs/a", method: .put, headers: auth, body: bytes).status == .ok)
            let whole = try await client.execute(uri: "/v1/objects/packs/a", method: .get, headers: auth)
            #expect(whole.status == .ok && whole.body == bytes)
            var ranged = auth
            ranged[.range] = "bytes=2-4"
            let part = try await client.execute(uri: "/v1/objects/packs/a", method: .get, headers: ranged)
            #expect(part.status == .partialContent && String(buffer: part.body) == "234")
            ranged[.range] = "bytes=10-12"
            let beyond = try await client.execute(uri: "/v1/objects/packs/a", method: .get, headers: ranged)
            #expect(beyond.status == .rangeNotSatisfiable && beyond.failure?.error == "rangeNotSatisfiable")
            ranged[.range] = "bytes=-5"
            #expect(try await client.execute(uri: "/v1/objects/packs/a", method: .get, headers: ranged).failure?.error == "badRequest")
            let list = try await client.execute(uri: "/v1/list?prefix=packs/", method: .get, headers: auth)
            #expect(
                try JSONDecoder().decode([VaultAPI.ObjectEntry].self, from: Data(list.body.readableBytesView)) == [.init(key: "packs/a", size: 10)])
            #expect(try await client.execute(uri: "/v1/objects/packs/a", method: .delete, headers: auth).status == .noContent)
            let gone = try await client.execute(uri: "/v1/objects/packs/a", method: .get, headers: auth)
            #expect(gone.status == .notFound && gone.failure?.error == "notFound")
        }
    }

    @Test func badKeysAndBodiesAre400() async throws {
        let vault = try VaultFixture("routes")
        try await vault.test { client in
            let key = try await client.execute(
                uri: "/v1/objects/packs/a~b", method: .put, headers: [.authorization: "Bearer " + vault.credential],
                body: ByteBuffer(string: "x"))
            #expect(key.status == .badRequest && key.failure?.error == "invalidKey")
            let json = try await client.execute(uri: "/v1/register", method: .post, body: ByteBuffer(string: "{not json"))
            #expect(json.status == .badRequest && json.failure?.error == "badRequest")
            #expect(json.failure?.message.hasPrefix("malformed request body: ") == true)
        }
    }

    @Test func bodiesOverTheirCapAre413() async throws {
        let vault = try VaultFixture("routes")
        try await vault.test { client in
            // Refused on its declared length, before the body is read.
            let declared: HTTPFields = [.authorization: "Bearer " + vault.credential, .contentLength: "\((64 << 20) + 1)"]
            let object = try await client.execute(uri: "/v1/objects/packs/big", method: .put, headers: declared)
            #expect(object.status == .contentTooLarge && object.failure?.error == "http")
            #expect(object.failure?.message.contains("more than the vault accepts (64 MiB per object)") == true)
            // Cut off while read: a registration body is at most 64 KiB.
            let big = ByteBuffer(repeating: UInt8(ascii: " "), count: (64 << 10) + 1)
            let registration = try await client.execute(uri: "/v1/register", method: .post, body: big)
            #expect(registration.status == .contentTooLarge)
            #expect(registration.failure?.error == "tooLarge")
            #expect(registration.failure?.message == "the request body is larger than the vault accepts (64 MiB per object)")
        }
    }

    @Test func registrationAnswersACredentialAndAnImmutableVaultRefusesDeletes() async throws {
        let vault = try VaultFixture("routes") { $0.immutable = true }
        try await vault.test { client in
            let request = ByteBuffer(bytes: try JSONEncoder().encode(VaultAPI.RegisterRequest(secret: "spare", relayName: "r2")))
            let registered = try await client.execute(uri: "/v1/register", method: .post, body: request)
            #expect(registered.status == .ok)
            let answer = try JSONDecoder().decode(VaultAPI.RegisterResponse.self, from: Data(registered.body.readableBytesView))
            #expect(VaultAPI.parseCredential(answer.credential)?.relayID == answer.relayID)
            let delete = try await client.execute(
                uri: "/v1/objects/packs/a", method: .delete, headers: [.authorization: "Bearer " + answer.credential])
            #expect(delete.status == .forbidden && delete.failure?.error == "forbidden")
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(String(buffer: health.body) == "ok\n")
            let certificate = try await client.execute(uri: "/v1/certificate", method: .get)
            #expect(String(buffer: certificate.body) == vault.certificatePEM)
        }
    }

    /// The object store's errors keep their code with the vault's words; another layer's error is "internal",
    /// answered without its text (an S3 backend's names its endpoint and access key id).
    @Test func objectStoreErrorsMapToTheirStatus() {
        let errors = VaultServer.errors(logger: Logger(label: "vault-test"))
        let full = errors.failure(for: ObjectStoreError(.diskFull, "ENOSPC on /srv"))
        #expect(full.status.code == 507 && full.code == "diskFull" && full.message == "the vault's disk is full")
        let io = errors.failure(for: ObjectStoreError(.io, "EIO"))
        #expect(io.status == .internalServerError && io.code == "io" && io.message == "the vault could not store or read the object")
        let other = errors.failure(for: VaultError(.notAVault, "no settings"))
        #expect(other.status == .internalServerError && other.code == "internal" && !other.message.contains("no settings"))
        let s3 = errors.failure(
            for: ObjectStoreError(
                .unauthorized, "S3 PUT bucket b key k at http://10.0.0.5:7480 refused access key AKIAEXAMPLE (403): check the access key and secret"))
        #expect(s3.status == .internalServerError && !s3.message.contains("AKIAEXAMPLE") && !s3.message.contains("10.0.0.5"))
    }
}
