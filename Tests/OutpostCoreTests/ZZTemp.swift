import Foundation
import Testing
import OutpostCore

@Test func tempDates() throws {
    for f in [0.001, 0.123, 0.999, 0.9996] {
        let p = RecoveryPoint(machine: "m", hostname: "h", paths: [], startedAt: Date(timeIntervalSince1970: 1_740_794_400 + f),
                              finishedAt: Date(timeIntervalSince1970: 0), rootTree: ChunkID.hash([]), parent: nil, summary: BackupSummary())
        let s = String(decoding: p.encoded(), as: UTF8.self)
        let r = s.range(of: "startedAt")!
        print("TEMP \(f) -> \(s[r.upperBound...].prefix(30))")
    }
}
