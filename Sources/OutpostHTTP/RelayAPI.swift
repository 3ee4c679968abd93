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
        /// Where the point is (optional: relays before tiered restore leave it out, and older clients ignore it).
        public var tier: PointTier?
        public init(id: String, point: RecoveryPoint, tier: PointTier? = nil) { self.id = id; self.point = point; self.tier = tier }

        enum CodingKeys: String, CodingKey { case id, point, tier }

        /// A tier this client does not know (a later relay's) reads as absent, rather than failing the whole list.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(String.self, forKey: .id)
            point = try c.decode(RecoveryPoint.self, forKey: .point)
            tier = try c.decodeIfPresent(String.self, forKey: .tier).flatMap(PointTier.init(rawValue:))
        }
    }

    /// Where a recovery point is: `relay` (in the relay's catalog, not in the vault), `vault` (pruned from the
    /// relay, still in the vault), or `both` (in the catalog and forwarded). A relay without a vault says `relay`.
    public enum PointTier: String, Codable, Sendable, CaseIterable {
        case relay, vault, both

        /// Whether the relay's catalog lists it (so its data is read through the relay).
        public var onRelay: Bool { self != .vault }
    }

    /// Which tier `POST /v1/blobs` reads from (request header `Outpost-Tier`): `auto` (the default) serves what
    /// the relay holds from the relay and fetches the rest from the vault; `relay` never asks the vault; `vault`
    /// fetches every blob from the vault, even those the relay holds (to test the off-site copy).
    public enum FetchTier: String, Codable, Sendable, CaseIterable {
        case auto, relay, vault
    }

    /// Request header of `POST /v1/blobs`: a `FetchTier` (absent: `auto`).
    public static let tierHeader = "Outpost-Tier"
    /// Response header of `POST /v1/blobs`: the stored bytes of the answer's frames that came from the vault.
    public static let vaultBytesHeader = "Outpost-Vault-Bytes"

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
