import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OutpostArchive
import OutpostCore
import OutpostHTTP
import OutpostRelay
import OutpostStore

/// The file browser: any recovery point's folders, a file's download, a folder as a tar stream. Blobs come from
/// the relay when it holds them and from the vault otherwise, each verified against its id before it is sent.
extension ConsoleRoutes {
    /// The point named in the route (a full hex id the relay lists), with its repository.
    func open(_ context: ConsoleContext) async throws -> (TieredPoint, RelayHostRepository) {
        guard let hex = context.parameters.get("id"), let id = BlobID(hex: hex) else {
            throw HTTPError(.badRequest, message: "a recovery point's id is 64 hex digits")
        }
        let relay = self.relay, store = self.store, hooks = server.hooks
        // The one point, not a list of all: listing a relay's 10,000 points took every browse and download 340–400 ms.
        let point = try await relay.offload { try PointTiers(store: store, vault: hooks.vault != nil).point(id) }
        guard let point else { throw HTTPError(.notFound, message: "no recovery point has the id \(hex)") }
        return (point, try RelayHostRepository(store: store, tier: .auto, vault: hooks.vault))
    }

    /// `path` as components; `.`, `..`, empty components and NUL are refused (a path names nodes of the point,
    /// never anything outside it).
    static func components(_ path: String?) throws -> [[UInt8]] {
        let parts = (path ?? "/").split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        for p in parts where p == "." || p == ".." || p.utf8.contains(0) {
            throw HTTPError(.badRequest, message: "the path \(path ?? "") holds \(p.debugDescription): give a path inside the recovery point")
        }
        return parts.map { Array($0.utf8) }
    }

    static func query(_ path: [UInt8]) -> String {
        String(decoding: path, as: UTF8.self).addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "/-._~"))) ?? ""
    }

    func resolve(_ context: ConsoleContext, _ request: Request) async throws -> (TieredPoint, RelayHostRepository, Node?, Tree?, [UInt8]) {
        let (point, repo) = try await open(context)
        let components = try Self.components(request.uri.queryParameters.get("path"))
        guard let rootID = point.info.point.root else { throw HTTPError(.notFound, message: "the recovery point has no root tree") }
        let walker = TreeWalker(repository: repo)
        let root = try await walker.tree(rootID)
        switch try await walker.resolve(components, from: root) {
        case .top: return (point, repo, nil, root, [])
        case .node(let node, let path):
            if node.type == .directory, let sub = node.subtree { return (point, repo, node, try await walker.tree(sub), path) }
            return (point, repo, node, nil, path)
        case .missing, .notAFolder: throw HTTPError(.notFound, message: "the recovery point holds nothing at that path")
        }
    }

    @Sendable func browse(_ request: Request, context: ConsoleContext) async throws -> Response {
        let (point, repo, _, tree, path) = try await resolve(context, request)
        guard let tree else { throw HTTPError(.badRequest, message: "that path is a file: download it instead") }
        let q = (request.uri.queryParameters.get("q") ?? "").lowercased()
        let limit = 1000
        var rows: [(Node, [UInt8])] = []
        if q.isEmpty {
            rows = tree.nodes.prefix(limit).map { ($0, path + [0x2f] + $0.name) }
        } else {
            // Search by name below this folder.
            try await TreeWalker(repository: repo).walk(tree, at: path) { node, p in
                if node.nameString.lowercased().contains(q) { rows.append((node, p)) }
                return rows.count >= limit ? .stop : .descend
            }
        }
        let id = point.info.id.hex
        let parent = path.isEmpty ? nil : Array(path[..<(path.lastIndex(of: 0x2f) ?? 0)])
        let data: [String: Any] = [
            "id": id, "machine": point.info.point.machine, "finished": Self.time(point.info.point.finishedAt), "tier": point.tier.rawValue,
            "path": path.isEmpty ? "/" : String(decoding: path, as: UTF8.self), "pathQuery": Self.query(path.isEmpty ? [0x2f] : path),
            "parent": parent.map { Self.query($0.isEmpty ? [0x2f] : $0) } as Any, "q": q,
            "truncated": rows.count >= limit, "limit": limit,
            "entries": rows.map { node, p -> [String: Any] in
                [
                    "id": id, "name": q.isEmpty ? node.nameString : String(decoding: p, as: UTF8.self), "query": Self.query(p),
                    "folder": node.type == .directory, "file": node.type == .file, "other": node.type != .directory && node.type != .file,
                    "type": "\(node.type)", "size": node.type == .file ? Self.bytes(Int64(node.size)) : "",
                    "modified": Self.time(Date(timeIntervalSince1970: Double(node.mtimeNanos) / 1e9)),
                ]
            },
        ]
        return server.page("Browse", "browse", data, context: context)
    }

    /// Streams a file's content: chunks loaded a few at a time, verified, written as they come.
    static func stream(_ node: Node, _ repo: RelayHostRepository, to writer: inout any ResponseBodyWriter) async throws {
        var batch: [BlobID] = []
        func flush(_ writer: inout any ResponseBodyWriter) async throws {
            if batch.isEmpty { return }
            for bytes in try await repo.loadMany(batch) { try await writer.write(ByteBuffer(bytes: bytes)) }
            batch.removeAll(keepingCapacity: true)
        }
        for e in node.extents {
            switch e {
            case .chunk(let id, _):
                batch.append(id)
                if batch.count == 8 { try await flush(&writer) }
            case .hole(let length):
                try await flush(&writer)
                var left = length
                while left > 0 {
                    let n = min(left, 1 << 20)
                    try await writer.write(ByteBuffer(repeating: 0, count: n))
                    left -= n
                }
            }
        }
        try await flush(&writer)
    }

    static func disposition(_ name: String) -> String {
        let ascii = String(name.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" ? Character($0) : "_" })
        let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? ""
        return "attachment; filename=\"\(ascii)\"; filename*=UTF-8''\(encoded)"
    }

    @Sendable func file(_ request: Request, context: ConsoleContext) async throws -> Response {
        let (_, repo, node, _, _) = try await resolve(context, request)
        guard let node, node.type == .file else { throw HTTPError(.badRequest, message: "that path is not a file: browse it, or download it as tar") }
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        headers[.contentDisposition] = Self.disposition(node.nameString)
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody(contentLength: Int(node.size)) { writer in
                try await Self.stream(node, repo, to: &writer)
                try await writer.finish(nil)
            })
    }

    @Sendable func tar(_ request: Request, context: ConsoleContext) async throws -> Response {
        let (_, repo, node, tree, path) = try await resolve(context, request)
        guard let tree else { throw HTTPError(.badRequest, message: "that path is a file: download it directly") }
        let base = node?.nameString ?? "root"
        // The folder's entries first (names and metadata only), then the stream.
        var entries: [(Node, String)] = []
        try await TreeWalker(repository: repo).walk(tree, at: []) { n, p in
            entries.append((n, base + String(decoding: p, as: UTF8.self)))
            return .descend
        }
        _ = path
        let list = entries
        var headers = HTTPFields()
        headers[.contentType] = "application/x-tar"
        headers[.contentDisposition] = Self.disposition(base + ".tar")
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                try await writer.write(ByteBuffer(bytes: TarHeader.entry(name: base, type: .directory, size: 0, mode: 0o755, mtime: 0)))
                for (n, name) in list {
                    let mtime = Int(n.mtimeNanos / 1_000_000_000)
                    switch n.type {
                    case .directory:
                        try await writer.write(
                            ByteBuffer(bytes: TarHeader.entry(name: name, type: .directory, size: 0, mode: n.mode & 0o7777, mtime: mtime)))
                    case .file:
                        try await writer.write(
                            ByteBuffer(bytes: TarHeader.entry(name: name, type: .file, size: Int(n.size), mode: n.mode & 0o7777, mtime: mtime)))
                        try await Self.stream(n, repo, to: &writer)
                        let pad = (512 - Int(n.size) % 512) % 512
                        if pad > 0 { try await writer.write(ByteBuffer(repeating: 0, count: pad)) }
                    case .symlink:
                        try await writer.write(
                            ByteBuffer(
                                bytes: TarHeader.entry(
                                    name: name, type: .symlink, size: 0, mode: 0o777, mtime: mtime,
                                    link: String(decoding: n.linkTarget, as: UTF8.self))))
                    default: continue
                    }
                }
                try await writer.write(ByteBuffer(repeating: 0, count: 1024))
                try await writer.finish(nil)
            })
    }
}

/// ustar headers, with a PAX extended header in front when a name or link target does not fit.
enum TarHeader {
    enum Kind: UInt8 {
        case file = 0x30, symlink = 0x32, directory = 0x35, pax = 0x78
    }

    static func entry(name: String, type: Kind, size: Int, mode: UInt32, mtime: Int, link: String = "") -> [UInt8] {
        let n = type == .directory && !name.hasSuffix("/") ? name + "/" : name
        var out: [UInt8] = []
        if n.utf8.count > 100 || link.utf8.count > 100 || !n.allSatisfy(\.isASCII) || !link.allSatisfy(\.isASCII) {
            var records = record("path", n)
            if !link.isEmpty { records += record("linkpath", link) }
            out += block(name: "PaxHeader", type: .pax, size: records.count, mode: 0o644, mtime: mtime, link: "")
            out += records + [UInt8](repeating: 0, count: (512 - records.count % 512) % 512)
        }
        out += block(
            name: String(n.utf8.prefix(100).map { Character(Unicode.Scalar($0 < 0x80 ? $0 : 0x5f)) }), type: type, size: size, mode: mode,
            mtime: mtime, link: String(link.utf8.prefix(100).map { Character(Unicode.Scalar($0 < 0x80 ? $0 : 0x5f)) }))
        return out
    }

    /// A PAX record: "LEN key=value\n", LEN counting itself.
    static func record(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        var len = body.utf8.count + 1
        while String(len).utf8.count + body.utf8.count != len { len += 1 }
        return Array((String(len) + body).utf8)
    }

    static func block(name: String, type: Kind, size: Int, mode: UInt32, mtime: Int, link: String) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int, _ len: Int) { for (i, b) in s.utf8.prefix(len).enumerated() { h[at + i] = b } }
        func octal(_ v: Int, _ at: Int, _ len: Int) { put(String(String(v, radix: 8).suffix(len - 1)).leftPadded(len - 1), at, len - 1) }
        put(name, 0, 100)
        octal(Int(mode), 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(size, 124, 12)
        octal(max(0, mtime), 136, 12)
        h[156] = type.rawValue
        put(link, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        put("root", 265, 32)
        put("root", 297, 32)
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(String(String(sum, radix: 8)).leftPadded(6), 148, 6)
        h[154] = 0
        h[155] = 0x20
        return h
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}
