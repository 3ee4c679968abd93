import Foundation
import OutpostCore

/// JSON bodies of the relay's HTTP API, version 1 (docs/protocol.md, openapi/relay.yaml). Shared by server and client.
public enum RelayAPI {
    public static let version = "v1"
    public static let credentialScheme = "Bearer"

    public struct EnrollRequest: Codable, Sendable {
        public var token: String
        public init(token: String) { self.token = token }
    }

    public struct EnrollResponse: Codable, Sendable {
        public var machine: String
        /// `outpost1:<machine>:<secret>`: what the client sends as `Authorization: Bearer …`.
        public var credential: String
        public init(machine: String, credential: String) { self.machine = machine; self.credential = credential }
    }

    public struct Session: Codable, Sendable {
        public var machine: String
        public var protocolVersion: Int
        public var relayVersion: String
        public var chunker: ChunkerParameters
        public var compressionLevel: Int32
        public var dedupScope: String
        public init(
            machine: String, protocolVersion: Int, relayVersion: String, chunker: ChunkerParameters, compressionLevel: Int32, dedupScope: String
        ) {
            self.machine = machine; self.protocolVersion = protocolVersion; self.relayVersion = relayVersion
            self.chunker = chunker; self.compressionLevel = compressionLevel; self.dedupScope = dedupScope
        }
    }

    public struct UploadResult: Codable, Sendable {
        /// Blobs in the request, all verified.
        public var received: Int
        /// Of those, the ones the relay did not hold yet.
        public var stored: Int
        public var storedBytes: Int64
        public var rawBytes: Int64
        public init(received: Int, stored: Int, storedBytes: Int64, rawBytes: Int64) {
            self.received = received; self.stored = stored; self.storedBytes = storedBytes; self.rawBytes = rawBytes
        }
    }

    public struct PointEntry: Codable, Sendable {
        public var id: String
        public var point: RecoveryPoint
        public init(id: String, point: RecoveryPoint) { self.id = id; self.point = point }
    }

    /// The body of every failure (both servers').
    public typealias ErrorBody = HTTPErrorBody

    public static func credential(machine: String, secret: String) -> String { CredentialText.make("outpost1", machine, secret) }

    /// Splits `outpost1:<machine>:<secret>`.
    public static func parseCredential(_ s: String) -> (machine: String, secret: String)? {
        CredentialText.parse(s, scheme: "outpost1").map { (machine: $0.owner, secret: $0.secret) }
    }

    public static func randomSecret(bytes: Int = 32) -> String { RandomSecret.make(bytes: bytes) }

    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601WithFractions
        e.outputFormatting = [.sortedKeys]
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601WithFractions
        return d
    }
}
