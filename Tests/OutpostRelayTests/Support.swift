import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostRelay
import OutpostStore
import OutpostTLS

/// A relay over a fresh store in a scratch directory, with one enrolled machine, served in-process
/// (HummingbirdTesting's `.router`: requests go straight to the router, no socket).
final class TestRelay: Sendable {
    let root: String
    let relay: Relay
    let server: RelayServer
    /// `Authorization` value of the enrolled machine "m1".
    let bearer: String

    init(configuration: RelayConfiguration = RelayConfiguration(), identity: TLSIdentity? = nil) throws {
        root = NSTemporaryDirectory() + "/outpost-relay-routes-\(UUID().uuidString.prefix(8))"
        StoreIndex.registerMigrations(MachineCatalog.migrations)
        let store = try Store.initialize(at: root + "/store")
        relay = Relay(store: store, configuration: configuration, logger: Logger(label: "relay-test"))
        server = RelayServer(relay: relay, identity: identity, host: "127.0.0.1", port: 0, logger: Logger(label: "relay-test"))
        try relay.catalog.addMachine("m1", token: "token-m1", expiresAt: Date().addingTimeInterval(3600))
        let secret = RelayAPI.randomSecret()
        guard case .success = try relay.catalog.enroll(token: "token-m1", credential: secret) else {
            throw StoreError(.invalid, "the test machine was not enrolled")
        }
        bearer = "Bearer " + RelayAPI.credential(machine: "m1", secret: secret)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await Application(router: server.buildRouter()).test(.router, body)
    }
}

extension TestResponse {
    /// The JSON error body every failure has.
    var failure: HTTPErrorBody? { try? JSONDecoder().decode(HTTPErrorBody.self, from: Data(body.readableBytesView)) }
}
