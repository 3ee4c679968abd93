import Foundation
import Hummingbird
import NIOCore
import OutpostHTTP
import OutpostObjects

/// A registered relay's own container (`containers/<relay id>/…`): put-if-absent, read (whole or one range),
/// soft delete, list (docs/vault.md §7). Deletes are refused on an immutable vault.
struct VaultObjectRoutes: Sendable {
    let settings: VaultConfiguration
    /// The rules in force (on S3 shared by every node through the registry, §2.5).
    let registry: VaultRegistry
    let objects: any ObjectStore
    /// Bytes of PUT bodies held in memory at once.
    let putBudget: ByteBudget

    /// `group` is the part of the router behind the relay credential, at `/v1`.
    func addRoutes(to group: RouterGroup<VaultRequestContext>) {
        group.put("objects/**", use: put)
        group.get("objects/**", use: get)
        group.delete("objects/**", use: delete)
        group.get("list", use: list)
    }

    /// The container key the request's path names, checked against the key rules.
    private func key(_ context: VaultRequestContext) throws -> String {
        let relay = try context.authenticated()
        let rel = context.parameters.getCatchAll().joined(separator: "/")
        try ObjectKey.validate(rel)
        return "containers/\(relay.id)/\(rel)"
    }

    @Sendable func put(_ request: Request, context: VaultRequestContext) async throws -> Response {
        let k = try key(context)
        let relay = try context.authenticated().id
        let max = VaultServer.maxObjectBytes
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        if let declared, declared > max {
            throw HTTPError(.contentTooLarge, message: "the object is \(declared) bytes, more than the vault accepts (\(max >> 20) MiB per object)")
        }
        // The body is read only once its bytes fit the budget: uploads beyond it wait, unread, so memory stays
        // bounded however many relays upload at once.
        let objects = self.objects
        let created = try await putBudget.withReservation(declared ?? max) {
            let body: ByteBuffer
            do { body = try await request.body.collect(upTo: max) } catch  where !(error is NIOTooManyBytesError) {
                // Cut off by the client or by the connection limits: the client's problem, not the vault's.
                throw HTTPFailure(.badRequest, "the request body was cut off (\(error))")
            }
            let created = try objects.putIfAbsent(k, Array(buffer: body))
            if created { VaultMetrics.recordStored(relay: relay, bytes: body.readableBytes) }
            return created
        }
        return Response(status: created ? .created : .ok)
    }

    @Sendable func get(_ request: Request, context: VaultRequestContext) async throws -> Response {
        let k = try key(context)
        guard let header = request.headers[.range] else {
            guard let bytes = try objects.get(k) else { throw HTTPFailure(.notFound, "no such object in this relay's container") }
            return .binary(bytes)
        }
        // One range, "bytes=FIRST-LAST" (what the relay's tier-2 restore and rebuild ask for).
        guard let range = Self.parseRange(header) else {
            throw HTTPFailure(.badRequest, "unsupported Range header \"\(header.prefix(80))\": only a single \"bytes=FIRST-LAST\" range is served")
        }
        guard let bytes = try objects.get(k, range: range) else { throw HTTPFailure(.notFound, "no such object in this relay's container") }
        if bytes.isEmpty {
            throw HTTPFailure(.rangeNotSatisfiable, "the range \(range.lowerBound)-\(range.upperBound - 1) starts beyond the end of the object")
        }
        return .binary(bytes, status: .partialContent)
    }

    @Sendable func delete(_ request: Request, context: VaultRequestContext) async throws -> Response {
        if registry.policy(default: settings).immutable {
            throw HTTPFailure(.forbidden, "this vault is immutable: nothing is deleted before its retention expires, whoever asks")
        }
        let k = try key(context)
        guard let bytes = try objects.get(k) else { return Response(status: .noContent) }
        // Soft delete: kept under trash/ with the deletion time for softDeleteDays, then purged.
        let stamp = Int(Date().timeIntervalSince1970)
        _ = try objects.putIfAbsent("trash/\(stamp)/\(k)", bytes)
        try objects.delete(k)
        return Response(status: .noContent)
    }

    @Sendable func list(_ request: Request, context: VaultRequestContext) async throws -> Response {
        let relay = try context.authenticated()
        let prefix = request.uri.queryParameters.get("prefix") ?? ""
        let base = "containers/\(relay.id)/"
        let list = try objects.list(prefix: base + prefix).map { VaultAPI.ObjectEntry(key: String($0.key.dropFirst(base.count)), size: $0.size) }
        return try .json(list, encoder: VaultAPI.encoder())
    }

    /// "bytes=FIRST-LAST" as a range; nil for anything else. Both bounds are plain decimal digits (no sign, no
    /// space) that fit an Int, and LAST + 1 cannot overflow: a request never traps the vault (issue 8).
    static func parseRange(_ header: String) -> Range<Int>? {
        guard header.hasPrefix("bytes=") else { return nil }
        let parts = header.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 19 && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }),
            let first = Int(parts[0]), let last = Int(parts[1]), last >= first, last < Int.max,
            last - first < VaultServer.maxObjectBytes
        else { return nil }
        return first..<(last + 1)
    }
}
