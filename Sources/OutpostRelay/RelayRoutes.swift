import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostStore

/// Enrollment and the routes a machine's credential opens (docs/protocol.md, docs/openapi/relay.yaml).
struct RelayRoutes: Sendable {
    let relay: Relay

    func addRoutes(to router: Router<RelayRequestContext>) {
        router.post("/v1/enroll", use: enroll)
        let catalog = relay.catalog
        let machine = router.group().add(
            middleware: BearerAuthentication<RelayRequestContext>(
                malformed: "missing or malformed credential: enroll this machine with `outpost enroll` and use its config file"
            ) { token in
                guard let credential = RelayAPI.parseCredential(token) else { return nil }
                guard let id = try catalog.authenticate(machine: credential.machine, credential: credential.secret) else {
                    throw HTTPFailure(
                        .unauthorized,
                        "the credential for machine \(credential.machine) is not valid (wrong, or the machine was removed); enroll again with a new token"
                    )
                }
                return AuthenticatedMachine(id: id, name: credential.machine)
            })
        machine.get("/v1/session", use: session)
        machine.post("/v1/chunks/missing", use: missing)
        machine.post("/v1/chunks", use: upload)
        machine.post("/v1/points", use: commit)
        machine.get("/v1/points", use: points)
        machine.post("/v1/blobs", use: fetch)
        AgentRoutes(relay: relay).addRoutes(to: machine)
    }

    @Sendable func enroll(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let body = try await relay.limits.body.collect(request.body, upTo: 64 << 10, what: "enrollment request")
        let req = try decode(RelayAPI.EnrollRequest.self, body)
        let secret = RelayAPI.randomSecret()
        switch try relay.catalog.enroll(token: req.token, credential: secret) {
        case .success(let name):
            relay.logger.info("machine enrolled", metadata: ["machine": "\(name)"])
            return try .json(RelayAPI.EnrollResponse(machine: name, credential: RelayAPI.credential(machine: name, secret: secret)))
        case .failure(let why):
            let text =
                switch why {
                case .unknown: "this enrollment token is not known to the relay; ask the relay's operator for a new one (`outpost relay add-machine`)"
                case .used: "this enrollment token was already used; ask the relay's operator for a new one"
                case .expired: "this enrollment token has expired; ask the relay's operator for a new one"
                case .taken: "the machine name is taken"
                }
            throw HTTPFailure(.unauthorized, text)
        }
    }

    @Sendable func session(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        return try .json(
            RelayAPI.Session(
                machine: machine.name, protocolVersion: WireFormat.protocolVersion, relayVersion: OutpostVersion.string,
                chunker: relay.store.config.chunker,
                compressionLevel: relay.configuration.pushCompressionLevel ?? relay.store.config.compressionLevel,
                dedupScope: relay.configuration.dedupScope.rawValue))
    }

    @Sendable func missing(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        let body = try await relay.limits.body.collect(request.body, upTo: WireFormat.maxIDsPerRequest * 32, what: "id list")
        let ids = try WireFormat.decodeIDs(Array(buffer: body), max: WireFormat.maxIDsPerRequest)
        let relay = self.relay
        return .binary(try await relay.offload { WireFormat.encodeIDs(try relay.missing(machine: machine.id, ids)) })
    }

    @Sendable func upload(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        let relay = self.relay
        // Wait for a slot (the machine's, then the relay's) before reading the body: queued uploads stay in the
        // kernel's buffers.
        return try await relay.limits.withUploadSlot(machine: machine.id) {
            let body = try await relay.limits.body.collect(
                request.body, upTo: WireFormat.maxUploadBytes + WireFormat.maxFetchBlobs * PackFormat.blobHeaderSize,
                expected: request.headers[.contentLength].flatMap { Int($0) }, what: "upload")
            return try await relay.offload {
                try .json(try body.withUnsafeReadableBytes { try relay.upload(machine: machine.id, name: machine.name, body: $0) })
            }
        }
    }

    @Sendable func commit(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        let body = try await relay.limits.body.collect(request.body, upTo: 1 << 20, what: "recovery point")
        let point = try decode(RecoveryPoint.self, body)
        let job = try request.headers[Self.jobField].map { value in
            guard let id = Int64(value) else {
                throw HTTPFailure(.badRequest, "the \(AgentAPI.jobHeader) header is \(value.debugDescription), not a job id")
            }
            return id
        }
        let relay = self.relay
        return try await relay.offload {
            let info = try relay.commit(machine: machine.id, name: machine.name, point: point, job: job)
            return try .json(RelayAPI.PointEntry(id: info.id.hex, point: info.point), status: .created)
        }
    }

    @Sendable func points(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        let relay = self.relay
        return try await relay.offload {
            try .json(try relay.tieredPoints(name: machine.name).map { RelayAPI.PointEntry(id: $0.info.id.hex, point: $0.info.point, tier: $0.tier) })
        }
    }

    static let tierField = HTTPField.Name(RelayAPI.tierHeader)!
    static let jobField = HTTPField.Name(AgentAPI.jobHeader)!
    static let vaultBytesField = HTTPField.Name(RelayAPI.vaultBytesHeader)!

    @Sendable func fetch(_ request: Request, context: RelayRequestContext) async throws -> Response {
        let machine = try context.authenticated()
        let tier =
            try request.headers[Self.tierField].map { value in
                guard let t = RelayAPI.FetchTier(rawValue: value.lowercased()) else {
                    throw HTTPFailure(.badRequest, "the \(RelayAPI.tierHeader) header is \(value.debugDescription); it takes auto, relay or vault")
                }
                return t
            } ?? .auto
        let body = try await relay.limits.body.collect(request.body, upTo: WireFormat.maxFetchBlobs * 32, what: "blob list")
        let ids = try WireFormat.decodeIDs(Array(buffer: body), max: WireFormat.maxFetchBlobs)
        let relay = self.relay
        // Each answer of bounded size (a prefix of the list), and a machine's answers in flight within its budget.
        let (n, bytes, locations) = try await relay.offload { try relay.fetchablePrefix(ids) }
        return try await relay.limits.withFetchBudget(machine: machine.id, bytes: bytes) {
            let answer = try await relay.fetch(machine: machine.id, name: machine.name, Array(ids.prefix(n)), locations: locations, tier: tier)
            var response = Response.binary(answer.frames)
            response.headers[Self.vaultBytesField] = String(answer.vaultBytes)
            return response
        }
    }

    /// A JSON body; one that does not decode is the client's mistake (400), named by the type it should be.
    private func decode<T: Decodable>(_ type: T.Type, _ buffer: ByteBuffer) throws -> T {
        do { return try RelayAPI.decoder().decode(type, from: Data(buffer.readableBytesView)) } catch {
            throw HTTPFailure(.badRequest, "the request body is not a valid \(T.self): \(error)")
        }
    }
}
