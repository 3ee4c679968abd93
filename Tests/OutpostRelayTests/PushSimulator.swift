import Foundation
import OutpostCore
import OutpostRelay
import OutpostStore

/// One protected machine pushing through the `Relay` object as the client does: it asks which chunks are
/// missing and uploads those, then its trees the same way, then commits. Files kept from the parent point keep
/// their parent's chunks without asking (the client's unchanged files).
struct PushSimulator: Sendable {
    let relay: Relay
    let name: String
    let machine: Int64

    init(relay: Relay, name: String) throws {
        self.relay = relay
        self.name = name
        if try relay.catalog.machineID(named: name) == nil {
            try relay.catalog.addMachine(name, token: "token-\(name)-\(UUID())", expiresAt: Date().addingTimeInterval(3600))
        }
        guard let id = try relay.catalog.machineID(named: name) else { throw StoreError(.notFound, "machine \(name) was not added") }
        machine = id
    }

    static func blob(_ plain: [UInt8], kind: BlobKind = .data) -> PreparedBlob {
        plain.withUnsafeBytes { PreparedBlob.make(kind: kind, plaintext: $0, compressor: nil) }
    }

    /// Asks which are missing and uploads those; returns their ids.
    @discardableResult
    func send(_ blobs: [PreparedBlob]) throws -> [BlobID] {
        let missing = Set(try relay.missing(machine: machine, blobs.map(\.id)))
        let frames = blobs.filter { missing.contains($0.id) }
        if !frames.isEmpty { _ = try relay.upload(machine: machine, name: name, body: WireFormat.encodeFrames(frames)) }
        return blobs.map(\.id)
    }

    /// A file node made of chunks of `plains`.
    static func file(_ name: String, _ plains: [[UInt8]]) -> Node {
        Node(
            name: Array(name.utf8), type: .file, size: UInt64(plains.reduce(0) { $0 + $1.count }),
            extents: plains.map { .chunk(blob($0).id, length: $0.count) })
    }

    /// Sends the new files' chunks, then the folder `d` (new files and `kept` nodes) and the root, and commits.
    func push(new files: [String: [[UInt8]]], kept: [Node] = [], parent: BlobID? = nil) throws -> RecoveryPointInfo {
        try send(files.values.flatMap { $0 }.map { Self.blob($0) })
        let folder = Self.blob(Tree(nodes: files.map { Self.file($0.key, $0.value) } + kept).encode(), kind: .tree)
        let root = Self.blob(Tree(nodes: [Node(name: Array("d".utf8), type: .directory, subtree: folder.id)]).encode(), kind: .tree)
        try send([folder, root])
        let point = RecoveryPoint(
            machine: name, hostname: name, paths: ["/"], startedAt: Date(), finishedAt: Date(), rootTree: root.id, parent: parent?.hex,
            summary: BackupSummary())
        return try relay.commit(machine: machine, name: name, point: point)
    }

    /// The file nodes of a point's folder `d`.
    static func files(of info: RecoveryPointInfo, in store: Store) throws -> [Node] {
        let root = try store.loadTree(info.point.root!)
        guard let sub = root.node(named: Array("d".utf8))?.subtree else { return [] }
        return try store.loadTree(sub).nodes
    }

    /// Each file of a point, as restored from the store (every chunk verified against its id).
    static func restore(_ info: RecoveryPointInfo, from store: Store) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for node in try files(of: info, in: store) {
            var bytes: [UInt8] = []
            for e in node.extents { if case .chunk(let c, _) = e { bytes += try store.load(c) } }
            out[node.nameString] = bytes
        }
        return out
    }
}
