import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostObjects
import Testing

@testable import OutpostVault

/// The relay's status record for the fleet view (issue 13; docs/vault.md §20): what the vault accepts, what it
/// refuses and with which status, and how it keeps the newest record of each relay.
@Suite struct RelayStatusTests {
    static let now = Date(timeIntervalSince1970: 1_750_000_000)

    static func record(machines: Int = 2, alerts: [String: Int] = ["missed-backup": 1]) -> RelayStatusRecord {
        RelayStatusRecord(
            sentAt: now, relayVersion: "0.1.0", machineCount: machines,
            machines: (0..<machines).map { .init(lastGood: $0 == 0 ? nil : now.addingTimeInterval(-3600), lateAfter: now.addingTimeInterval(60)) },
            openAlerts: alerts, disk: .init(usedBytes: 10 << 30, freeBytes: 90 << 30), backlog: .init(points: 3, bytes: 4096), vaultLagSeconds: 7200)
    }

    /// The record as JSON, changed by `edit`.
    static func json(_ edit: (inout [String: Any]) -> Void = { _ in }) throws -> [UInt8] {
        guard var object = try JSONSerialization.jsonObject(with: Data(try record().encoded())) as? [String: Any] else { return [] }
        edit(&object)
        return Array(try JSONSerialization.data(withJSONObject: object))
    }

    /// The status and message a body is refused with.
    static func refusal(_ bytes: [UInt8]) -> (Int, String)? {
        do {
            _ = try RelayStatusRecord.decode(bytes)
            return nil
        } catch let f as HTTPFailure {
            return (f.status.code, f.message)
        } catch {
            return (0, "\(error)")
        }
    }

    @Test func aRecordReadsBackAsItWasWritten() throws {
        let r = Self.record()
        #expect(try RelayStatusRecord.decode(try r.encoded()) == r)
        let text = String(decoding: try r.encoded(), as: UTF8.self)
        #expect(text.hasPrefix("{\"backlog\":{\"bytes\":4096,\"points\":3},\"disk\":"), "\(text)")
        #expect(text.contains("\"v\":1") && text.contains("\"sent_at\":\"2025-06-15T"), "\(text)")
    }

    @Test func anotherVersionOrNoVersionIsRefusedWithWhatTheVaultReads() throws {
        let v2 = try #require(Self.refusal(try Self.json { $0["v"] = 2 }))
        #expect(v2.0 == 400)
        #expect(v2.1.contains("version 2") && v2.1.contains("reads version 1"), "\(v2.1)")
        let none = try #require(Self.refusal(try Self.json { $0["v"] = nil }))
        #expect(none.0 == 400 && none.1.contains("has no version"), "\(none.1)")
        #expect(Self.refusal(try Self.json { $0["v"] = "1" })?.0 == 400)
        #expect(Self.refusal(Array("[1]".utf8))?.1 == "the status record is not a JSON object")
    }

    @Test func aFieldVersion1DoesNotHaveIsRefusedEvenNested() throws {
        let top = try #require(Self.refusal(try Self.json { $0["files"] = ["/home/alice/payroll.xlsx"] }))
        #expect(top.0 == 400 && top.1.contains("\"files\"") && top.1.contains("version 1 does not have"), "\(top.1)")
        let named = try #require(
            Self.refusal(
                try Self.json {
                    $0["machines"] = [["late_after": "2025-06-15T15:00:00Z", "name": "alice-laptop"]]
                    $0["machine_count"] = 1
                }))
        #expect(named.0 == 400 && named.1.contains("a machine of the status record has the field \"name\""), "\(named.1)")
        #expect(Self.refusal(try Self.json { $0["disk"] = ["used_bytes": 1, "free_bytes": 2, "path": "/srv"] })?.0 == 400)
        let missing = try #require(Self.refusal(try Self.json { $0["backlog"] = nil }))
        #expect(missing.1 == "the status record lacks the field backlog")
    }

    @Test func stringsThatCouldCarryANameAreRefused() throws {
        // Alert kinds and the version are the record's only strings: each held to a short pattern.
        let kind = try #require(Self.refusal(try Self.record(alerts: ["/home/alice/payroll.xlsx": 1]).encoded()))
        #expect(kind.0 == 400 && kind.1.contains("open_alerts"), "\(kind.1)")
        #expect(Self.refusal(try Self.record(alerts: [String(repeating: "a", count: 33): 1]).encoded())?.0 == 400)
        #expect(Self.refusal(try Self.json { $0["relay_version"] = "0.1.0 payroll.xlsx" })?.1.contains("relay_version") == true)
        #expect(Self.refusal(try Self.record(alerts: ["missed-backup": 0]).encoded())?.0 == 400)
    }

    @Test func countsDatesAndListsOutOfRangeAreRefused() throws {
        #expect(Self.refusal(try Self.json { $0["vault_lag_seconds"] = -1 })?.1.contains("vault_lag_seconds") == true)
        #expect(Self.refusal(try Self.json { $0["machine_count"] = 1 })?.1.contains("at most machine_count (1)") == true)
        #expect(Self.refusal(try Self.json { $0["sent_at"] = "1970-01-01T00:00:00Z" })?.1.contains("sent_at") == true)
        #expect(Self.refusal(try Self.json { $0["sent_at"] = "yesterday" })?.0 == 400)
        #expect(Self.refusal(try Self.json { $0["backlog"] = ["points": -3, "bytes": 0] })?.0 == 400)
        // Values the page's arithmetic cannot take (Int(Double(Int64.max)) traps): refused, not stored.
        #expect(Self.refusal(try Self.json { $0["vault_lag_seconds"] = Int64.max })?.1.contains("vault_lag_seconds") == true)
        #expect(Self.refusal(try Self.json { $0["disk"] = ["used_bytes": Int64.max, "free_bytes": 0] })?.0 == 400)
        #expect(Self.refusal(try Self.json { $0["backlog"] = ["points": 0, "bytes": Int64.max] })?.0 == 400)
        let many = RelayStatusRecord.maxMachines + 1
        #expect(Self.refusal(try Self.record(machines: many).encoded())?.1.contains("at most \(RelayStatusRecord.maxMachines) entries") == true)
        #expect(Self.refusal(try Self.record(machines: RelayStatusRecord.maxMachines).encoded()) == nil, "the most a record lists fits")
        #expect(try Self.record(machines: RelayStatusRecord.maxMachines).encoded().count < RelayStatusRecord.maxBytes)
    }

    @Test func aRecordOver64KiBIs413() throws {
        var big = try Self.json()
        big.removeLast()  // the closing brace
        big += Array(",\"pad\":\"\(String(repeating: "x", count: RelayStatusRecord.maxBytes))\"}".utf8)
        let r = try #require(Self.refusal(big))
        #expect(r.0 == 413 && r.1.contains("64 KiB"), "\(r.1)")
    }

    @Test func theRouteTakesARecordFromARelayAndKeepsOnlyTheNewest() async throws {
        let vault = try VaultFixture("status")
        let relayID = try #require(VaultAPI.parseCredential(vault.credential)?.relayID)
        let auth: HTTPFields = [.authorization: "Bearer " + vault.credential]
        let objects = try FileObjectStore(root: vault.directory.objectsPath)
        try await vault.test { client in
            let body = ByteBuffer(bytes: try Self.record().encoded())
            #expect(try await client.execute(uri: "/v1/status", method: .post, body: body).status == .unauthorized)
            #expect(try await client.execute(uri: "/v1/status", method: .post, headers: auth, body: body).status == .noContent)
            let first = try objects.list(prefix: "meta/status/\(relayID)/")
            #expect(first.count == 1)
            var newer = Self.record(machines: 1)
            newer.sentAt = Self.now.addingTimeInterval(60)
            #expect(
                try await client.execute(uri: "/v1/status", method: .post, headers: auth, body: ByteBuffer(bytes: try newer.encoded())).status
                    == .noContent)
            let second = try objects.list(prefix: "meta/status/\(relayID)/")
            #expect(second.count == 1 && second != first, "the older record is deleted once the newer one is stored")
            let stored = try #require(try RelayStatusStore(objects: objects).all()[relayID])
            #expect(stored.record == newer)

            let v2 = try Self.json { $0["v"] = 2 }
            let refused = try await client.execute(uri: "/v1/status", method: .post, headers: auth, body: ByteBuffer(bytes: v2))
            #expect(refused.status == .badRequest && refused.failure?.message.contains("reads version 1") == true)
            let big = ByteBuffer(bytes: [UInt8](repeating: 0x20, count: RelayStatusRecord.maxBytes + 1))
            let tooLarge = try await client.execute(uri: "/v1/status", method: .post, headers: auth, body: big)
            #expect(tooLarge.status == .contentTooLarge && tooLarge.failure?.message.contains("64 KiB") == true)
            #expect(try RelayStatusStore(objects: objects).all()[relayID]?.record == newer, "a refused record changes nothing")
        }
    }

    /// Node B, whose clock runs 5 s ahead, stored a record; node A then stores the one it received after it, at
    /// an earlier time by its own clock: A's is the relay's newest, named after B's.
    @Test func theRecordStoredLastIsTheNewestWhateverTheNodesClocks() throws {
        let objects = MemoryObjectStore()
        let store = RelayStatusStore(objects: objects)
        var fromB = Self.record()
        fromB.machineCount = 5
        try store.save(fromB, relay: "r1", receivedAt: Self.now.addingTimeInterval(5))
        try store.save(Self.record(), relay: "r1", receivedAt: Self.now)
        try store.save(Self.record(machines: 1), relay: "r2", receivedAt: Self.now)
        let all = try store.all()
        #expect(all["r1"]?.record == Self.record(), "A's record, stored last")
        #expect(all["r2"]?.record.machineCount == 1)
        #expect(try objects.list(prefix: "meta/status/r1/").count == 1, "B's, now older, was deleted")
        #expect(try store.remove(relay: "r1") == 1)
        #expect(try store.all()["r1"] == nil)
    }
}
