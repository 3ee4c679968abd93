import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostStore

extension Forwarder {
    /// What `verify` found.
    public struct Verification: Sendable {
        public var checked = 0
        /// One line per damaged or missing object, naming it.
        public var damage: [String] = []
        /// Blobs whose vault copy is damaged or missing.
        public var damagedBlobs: [BlobID] = []
        /// Recovery points whose `p/` entry is damaged or missing.
        public var damagedPoints: [BlobID] = []
    }

    /// What `repair` did.
    public struct Repair: Sendable {
        public var resent = 0
        public var bytes: Int64 = 0
        /// Damage the relay cannot mend (it no longer holds the blob), one line each.
        public var unrepairable: [String] = []
    }
}

/// `outpost relay verify-vault [--repair]`: reads back everything the vault acknowledged and checks it (present,
/// authentic, hashing to its id); a repair sends again what is damaged or missing, from the relay's own copy.
struct VaultVerifier: Sendable {
    let forwarder: Forwarder

    var ledger: ForwardingLedger { forwarder.ledger }
    var reader: VaultReader { forwarder.reader }

    /// Only a vault that cannot be reached (or refuses the relay) stops a verification: anything else is damage.
    static func stops(_ e: ForwarderError) -> Bool { e.code == .unreachable || e.code == .credentials }

    func verify() async throws -> Forwarder.Verification {
        var result = Forwarder.Verification()
        var byPack: [String: [(BlobID, VaultLocation)]] = [:]
        var legacy: [BlobID] = []
        for (id, loc) in try ledger.sent() {
            if let loc { byPack[loc.pack, default: []].append((id, loc)) } else { legacy.append(id) }
        }
        let d = ZstdDecompressor()
        for (key, members) in byPack.sorted(by: { $0.key < $1.key }) {
            try await verifyPack(key, members: members, decompressor: d, into: &result)
        }
        for id in legacy { try await verifyLegacy(id, into: &result) }
        for entry in try ledger.entries() where entry.state == .forwarded {
            try await verifyPointEntry(entry.point, into: &result)
        }
        return result
    }

    /// One pack, read whole (one request), and each of the relay's blobs the ledger places in it.
    private func verifyPack(
        _ key: String, members: [(BlobID, VaultLocation)], decompressor d: ZstdDecompressor,
        into result: inout Forwarder.Verification
    ) async throws {
        result.checked += members.count
        do {
            guard let pack = try await forwarder.vault.get(key) else {
                result.damage.append("vault pack \(key) is missing (\(members.count) blobs)")
                result.damagedBlobs += members.map(\.0)
                return
            }
            let index: [BlobID: VaultPack.IndexEntry]
            do {
                index = Dictionary(
                    try VaultPack.readIndex(pack: pack, key: key, sealer: forwarder.sealer).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            } catch {
                // Without its index a pack is lost to a rebuild (which finds blobs through indexes): all of
                // its blobs count as damaged, and a repair sends them all again.
                result.damage.append("\(error)")
                result.damagedBlobs += members.map(\.0)
                return
            }
            for (id, loc) in members {
                do {
                    if index[id]?.location != loc {
                        throw ForwarderError(
                            .tampered, "vault pack \(key) does not list blob \(id.shortHex) where the relay recorded it: damaged or tampered with")
                    }
                    guard let range = VaultPack.entryRange(loc, packSize: pack.count) else {
                        throw ForwarderError(
                            .tampered,
                            "vault pack \(key) is shorter than the relay recorded (blob \(id.shortHex) is cut off): damaged or tampered with")
                    }
                    _ = try VaultPack.openEntry(pack[range], key: key, id: id, kind: loc.kind, sealer: forwarder.sealer, decompressor: d)
                } catch {
                    result.damage.append("\(error)")
                    result.damagedBlobs.append(id)
                }
            }
        } catch let e as ForwarderError where Self.stops(e) {
            throw e
        } catch {
            result.damage.append("vault pack \(key): \(error)")
            result.damagedBlobs += members.map(\.0)
        }
    }

    /// A blob stored by vault objects version 1, in an object of its own.
    private func verifyLegacy(_ id: BlobID, into result: inout Forwarder.Verification) async throws {
        result.checked += 1
        let name = VaultReader.legacyKey(forwarder.sealer.objectName(for: id))
        do {
            if try await reader.legacyBlob(id) == nil {
                result.damage.append("vault object \(name) (blob \(id.shortHex)) is missing")
                result.damagedBlobs.append(id)
            }
        } catch let e as ForwarderError where Self.stops(e) {
            throw e
        } catch {
            result.damage.append("\(error)")
            result.damagedBlobs.append(id)
        }
    }

    /// A forwarded recovery point's `p/` entry.
    private func verifyPointEntry(_ point: String, into result: inout Forwarder.Verification) async throws {
        result.checked += 1
        guard let pid = BlobID(hex: point) else { return }
        let name = reader.pointKey(point)
        do {
            guard let sealed = try await forwarder.vault.get(name) else {
                result.damage.append("vault object \(name) (recovery point \(point.prefix(8))) is missing")
                result.damagedPoints.append(pid)
                return
            }
            _ = try forwarder.sealer.open(sealed, name: name)
        } catch let e as ForwarderError where Self.stops(e) {
            throw e
        } catch {
            result.damage.append("\(error)")
            result.damagedPoints.append(pid)
        }
    }

    /// Sends again, into new packs, every damaged or missing blob the relay still holds intact, and puts back
    /// damaged point entries. A damaged pack stays in the vault (it may be immutable); nothing refers to its
    /// damaged entries any more.
    func repair(_ found: Forwarder.Verification) async throws -> Forwarder.Repair {
        var out = Forwarder.Repair()
        var fixable: [BlobID] = []
        for id in found.damagedBlobs {
            if (try? forwarder.store.loadStored(id)) != nil {
                fixable.append(id)
            } else {
                out.unrepairable.append(
                    "blob \(id.shortHex) is no longer on the relay either: the recovery points that need it cannot be restored from the vault")
            }
        }
        for pid in found.damagedPoints {
            do { try await forwarder.vault.delete(reader.pointKey(pid.hex)) } catch let e as ForwarderError where e.code == .refused {
                out.unrepairable.append("the entry of recovery point \(pid.shortHex) cannot be replaced: \(e.message)")
            }
        }
        try ledger.unmark(fixable)
        try ledger.reopenForwarded()
        // A fresh salt: the new packs never take the name of a damaged one (and should this run be cut short,
        // the next forward finds the damaged pack under the old name and does not take it: see PointForwarder).
        do {
            let report = try await PointForwarder(forwarder: forwarder, salt: Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) })).run()
            out.resent = report.blobs
            out.bytes = report.bytes
        } catch let e as ForwarderError where PointForwarder.fatal.contains(e.code) {
            throw e
        } catch {
            // Other points' own failures (e.g. a blob damaged on the relay): reported, and the re-check goes on.
            out.unrepairable.append("forwarding during the repair: \(error)")
        }
        return out
    }
}
