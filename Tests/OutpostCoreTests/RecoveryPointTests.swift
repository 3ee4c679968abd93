import Foundation
import OutpostCore
import Testing

/// 2025-03-01T02:00:00Z
private let march1 = 1_740_794_400.0

private func samplePoint(started: Double = march1 + 0.125, parent: String? = "ab12") -> RecoveryPoint {
    var summary = BackupSummary()
    summary.filesNew = 3
    summary.filesChanged = 1
    summary.filesUnchanged = 1000
    summary.directories = 12
    summary.otherEntries = 2
    summary.failedFiles = 1
    summary.bytesRead = 5_000_000_000
    summary.bytesTotal = 9_000_000_000
    summary.bytesAddedRaw = 123_456
    summary.bytesAddedStored = 65_432
    summary.chunksAdded = 7
    summary.durationSeconds = 12.5
    var point = RecoveryPoint(
        machine: "laptop", hostname: "laptop.local", paths: ["/home/alice", "/etc"],
        startedAt: Date(timeIntervalSince1970: started),
        finishedAt: Date(timeIntervalSince1970: started + 3.5),
        rootTree: BlobID.hash(Array("root".utf8)), parent: parent, summary: summary)
    point.tags = ["nightly", "ünïcode"]
    return point
}

private func json(_ point: RecoveryPoint) -> String { String(decoding: point.encoded(), as: UTF8.self) }

@Suite struct RecoveryPointTests {
    @Test func roundTrip() throws {
        let point = samplePoint()
        let decoded = try RecoveryPoint.decode(point.encoded(), what: "point")
        #expect(decoded == point)
        #expect(decoded.root == BlobID.hash(Array("root".utf8)))
        #expect(decoded.version == 1)
    }

    @Test func datesKeepMilliseconds() throws {
        for fraction in [0.001, 0.123, 0.5, 0.999] {
            let point = samplePoint(started: march1 + fraction)
            let decoded = try RecoveryPoint.decode(point.encoded(), what: "point")
            let drift = abs(decoded.startedAt.timeIntervalSince(point.startedAt))
            #expect(drift < 0.001, "fraction \(fraction): \(json(decoded))")
            #expect(abs(decoded.finishedAt.timeIntervalSince(point.finishedAt)) < 0.001)
        }
    }

    @Test func datesAreISO8601UTCWithFractions() {
        let text = json(samplePoint())
        #expect(text.contains(#""startedAt":"2025-03-01T02:00:00.125Z""#), "\(text)")
        #expect(text.contains(#""finishedAt":"2025-03-01T02:00:03.625Z""#), "\(text)")
    }

    @Test func encodingIsSortedAndDeterministic() {
        let point = samplePoint()
        #expect(point.encoded() == point.encoded())
        let text = json(point)
        #expect(text.hasPrefix(#"{"finishedAt":"#))
        #expect(text.hasSuffix(#""version":1}"#))
        #expect(!text.contains("\n"))
    }

    @Test func missingParentIsLeftOut() throws {
        let point = samplePoint(parent: nil)
        #expect(!json(point).contains("parent"))
        #expect(try RecoveryPoint.decode(point.encoded(), what: "point").parent == nil)
    }

    @Test func datesWithoutFractionsAreAccepted() throws {
        let text = json(samplePoint(started: march1)).replacingOccurrences(of: "2025-03-01T02:00:00.000Z", with: "2025-03-01T02:00:00Z")
        #expect(text.contains("2025-03-01T02:00:00Z"))
        let decoded = try RecoveryPoint.decode(Array(text.utf8), what: "point")
        #expect(decoded.startedAt == Date(timeIntervalSince1970: march1))
    }

    @Test func newerVersionIsRefused() {
        var point = samplePoint()
        point.version = 99
        let error = expectFormatError(.unsupportedVersion) { _ = try RecoveryPoint.decode(point.encoded(), what: "point xyz") }
        #expect(error?.message.contains("point xyz") == true)
    }

    @Test(arguments: ["", "not json", "{}", "[]", #"{"version":1}"#, "null"])
    func garbageIsInvalid(_ text: String) {
        expectFormatError(.invalidValue) { _ = try RecoveryPoint.decode(Array(text.utf8), what: "point") }
    }

    @Test func badDateIsInvalid() {
        let text = json(samplePoint()).replacingOccurrences(of: "2025-03-01T02:00:00.125Z", with: "yesterday")
        expectFormatError(.invalidValue) { _ = try RecoveryPoint.decode(Array(text.utf8), what: "point") }
    }

    @Test func requiredKeysAreRequired() throws {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(samplePoint().encoded())) as? [String: Any])
        for key in ["version", "tags", "machine", "summary", "rootTree", "startedAt"] {
            var without = object
            without[key] = nil
            let data = try JSONSerialization.data(withJSONObject: without)
            expectFormatError(.invalidValue) { _ = try RecoveryPoint.decode(Array(data), what: "point") }
        }
    }
}
