import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostStore
import Testing

@testable import OutpostRelay

/// The relay's routes in-process: authentication, body limits and the shape of error bodies (docs/protocol.md §7).
@Suite struct RelayRoutesTests {
    @Test func aRequestWithoutACredentialIs401WithAJSONBody() async throws {
        let relay = try TestRelay()
        try await relay.test { client in
            let r = try await client.execute(uri: "/v1/session", method: .get)
            #expect(r.status == .unauthorized)
            #expect(r.headers[.contentType] == "application/json")
            #expect(r.failure?.error == "unauthorized")
            #expect(r.failure?.message.contains("enroll this machine with `outpost enroll`") == true)
        }
    }

    @Test func aWrongCredentialIs401NamingTheMachine() async throws {
        let relay = try TestRelay()
        try await relay.test { client in
            let wrong = "Bearer " + RelayAPI.credential(machine: "m1", secret: String(repeating: "0", count: 64))
            let r = try await client.execute(uri: "/v1/points", method: .get, headers: [.authorization: wrong])
            #expect(r.status == .unauthorized)
            #expect(r.failure?.message.contains("the credential for machine m1 is not valid") == true)
            let malformed = try await client.execute(uri: "/v1/points", method: .get, headers: [.authorization: "Bearer outpost1:m1:short"])
            #expect(malformed.failure?.message.contains("missing or malformed credential") == true)
        }
    }

    @Test func theMachinesCredentialOpensItsSession() async throws {
        let relay = try TestRelay()
        try await relay.test { client in
            let r = try await client.execute(uri: "/v1/session", method: .get, headers: [.authorization: relay.bearer])
            #expect(r.status == .ok)
            let session = try RelayAPI.decoder().decode(RelayAPI.Session.self, from: Data(r.body.readableBytesView))
            #expect(session.machine == "m1")
            #expect(session.protocolVersion == WireFormat.protocolVersion)
        }
    }

    @Test func enrollmentTradesATokenOnce() async throws {
        let relay = try TestRelay()
        try relay.relay.catalog.addMachine("m2", token: "token-m2", expiresAt: Date().addingTimeInterval(3600))
        let body = ByteBuffer(bytes: try RelayAPI.encoder().encode(RelayAPI.EnrollRequest(token: "token-m2")))
        try await relay.test { client in
            let first = try await client.execute(uri: "/v1/enroll", method: .post, body: body)
            #expect(first.status == .ok)
            let answer = try RelayAPI.decoder().decode(RelayAPI.EnrollResponse.self, from: Data(first.body.readableBytesView))
            #expect(answer.machine == "m2")
            let again = try await client.execute(uri: "/v1/enroll", method: .post, body: body)
            #expect(again.status == .unauthorized)
            #expect(again.failure?.message.contains("already used") == true)
        }
    }

    @Test func aBodyOverItsCapIs413() async throws {
        let relay = try TestRelay()
        try await relay.test { client in
            let big = ByteBuffer(repeating: UInt8(ascii: "a"), count: (64 << 10) + 1)
            let r = try await client.execute(uri: "/v1/enroll", method: .post, body: big)
            #expect(r.status == .contentTooLarge)
            #expect(r.failure?.error == "tooLarge")
            #expect(r.failure?.message.contains("enrollment request is larger than this endpoint accepts (65536 bytes") == true)
        }
    }

    @Test func aMalformedBodyIs400() async throws {
        let relay = try TestRelay()
        try await relay.test { client in
            let json = try await client.execute(uri: "/v1/enroll", method: .post, body: ByteBuffer(string: "{not json"))
            #expect(json.status == .badRequest)
            #expect(json.failure?.error == "badRequest")
            #expect(json.failure?.message.contains("not a valid EnrollRequest") == true)
            // A FormatError (an id list that is not a whole number of ids) is the client's mistake too.
            let ids = try await client.execute(
                uri: "/v1/chunks/missing", method: .post, headers: [.authorization: relay.bearer],
                body: ByteBuffer(repeating: 1, count: 31))
            #expect(ids.status == .badRequest)
            #expect(ids.failure?.error == "badRequest")
        }
    }

    @Test func unknownRoutesAndTheMissingCertificateAre404() async throws {
        let relay = try TestRelay()
        try await relay.test { client in
            let nowhere = try await client.execute(uri: "/v1/nowhere", method: .get)
            #expect(nowhere.status == .notFound)
            #expect(nowhere.failure?.error == "http")
            #expect(nowhere.failure?.message == "Not Found")
            let certificate = try await client.execute(uri: "/v1/certificate", method: .get)
            #expect(certificate.status == .notFound)
            #expect(certificate.failure?.message == "this relay serves plain HTTP and has no certificate")
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
            #expect(String(buffer: health.body) == "ok\n")
        }
    }

    /// Store errors keep their code and status; a full disk is 507 with the relay's advice; another layer's
    /// error is "internal", without its text.
    @Test func storeErrorsMapToTheirStatus() {
        let errors = RelayServer.errors(logger: Logger(label: "relay-test"))
        let full = errors.failure(for: StoreError(.diskFull, "ENOSPC"))
        #expect(full.status.code == 507 && full.code == "diskFull")
        #expect(full.message.hasPrefix("the relay's disk is full; nothing of this request was committed"))
        let taken = errors.failure(for: StoreError(.taken, "taken"))
        #expect(taken.status == .conflict && taken.code == "taken")
        let locked = errors.failure(for: StoreError(.locked, "locked"))
        #expect(locked.status == .internalServerError && locked.code == "locked")
        let vault = errors.failure(for: OutpostError(.vault, "the vault is away"))
        #expect(vault.status == .internalServerError && vault.code == "internal" && !vault.message.contains("away"), "logged, not answered")
        let format = errors.failure(for: FormatError(.truncated, "short"))
        #expect(format.status == .badRequest && format.code == "badRequest")
    }
}
