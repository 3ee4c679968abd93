import Foundation
import OutpostCore
import OutpostStore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `relay check --repair`: damage in the relay's store mended from the vault, through the real binaries.
@Suite(.serialized) struct RelayRepairEndToEndTests {
    @Test func aDamagedRelayPackIsFetchedBackFromTheVaultAndQuarantinedWhileTheRelayServes() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let relay = try RelayHarness(s)
        let refused = try CLI.run(["relay", "check", "--data", relay.data, "--repair"])
        #expect(refused.status == 64, "a relay with no vault cannot repair: \(refused.stderr)")
        #expect(refused.stderr.contains("relay register"))

        try relay.start()
        let config = try relay.enroll("clerk")
        let data = s.sub("data")
        for i in 0..<12 { s.write("data/doc\(i).bin", randomData(60_000)) }
        let b = try CLI.run(["backup", "--config", config, data])
        #expect(b.status == 0, "\(b.stderr)")
        try vault.register(relay, as: "relay", in: s)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)

        // Three bytes flipped inside one stored chunk, found through the index (a byte of a blob header would go
        // unnoticed: blobs are read where the index says).
        let storePath = relay.data + "/store"
        let (pack, offset, length): (String, Int, Int) = try {
            let store = try openStoreAsTheBinaryDoes(storePath)
            let chunk = try #require(try store.index.allBlobs().first { $0.kind == .data })
            let loc = try #require(try store.index.location(of: chunk.id))
            return (loc.packName, loc.offset, loc.storedLength)
        }()
        let packPath = StoreLayout(root: storePath).packPath(pack)
        let fd = open(packPath, O_RDWR)
        for k in 0..<3 {
            var byte: UInt8 = 0
            let at = off_t(offset + length / 2 + k)
            pread(fd, &byte, 1, at)
            byte ^= 0x81
            pwrite(fd, &byte, 1, at)
        }
        close(fd)

        let found = try CLI.run(["relay", "check", "--data", relay.data, "--read-data"])
        #expect(found.status == 13)
        #expect(found.stdout.contains(pack))

        // Repaired while the relay serves.
        let repair = try CLI.run(["relay", "check", "--data", relay.data, "--repair"])
        #expect(repair.status == 0, "\(repair.stdout)\(repair.stderr)")
        let quarantined = storePath + "/quarantine/" + pack + ".pack"
        #expect(repair.stdout.contains("repaired: pack \(pack): 1 blobs fetched from the vault"), "\(repair.stdout)")
        #expect(repair.stdout.contains("quarantined as \(quarantined)"))
        #expect(repair.stderr.contains("repaired: no damage left"))
        #expect(FileManager.default.fileExists(atPath: quarantined), "kept aside")
        #expect(!FileManager.default.fileExists(atPath: packPath))

        let clean = try CLI.run(["relay", "check", "--data", relay.data, "--read-data"])
        #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
        let summary = json(try CLI.run(["relay", "check", "--data", relay.data, "--json"]).stdout) as? [String: Any]
        #expect(summary?["clean"] as? Bool == true)

        // The point restores byte for byte, from the relay's own (repaired) copy.
        let out = s.sub("restored")
        let r = try CLI.run(["restore", "--config", config, "latest", "--target", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(treesDiffer(data, out + data) == [])
        #expect(!relay.log.contains("damaged on the relay"), "nothing was served from the vault")
        #expect(relay.stop() == 0)
    }
}
