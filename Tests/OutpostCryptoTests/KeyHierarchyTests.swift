import Foundation
import OutpostCore
import OutpostCrypto
import Testing

@Suite struct KeyHierarchyTests {
    let passphrase = "correct horse battery staple!"

    @Test(arguments: ["short", "fifteen-chars!!", "sixteen chars\twith tab", "naïve passphrase ok?"])
    func weakPassphrasesAreRefusedWithTheRule(_ weak: String) {
        let e = #expect(throws: CryptoError.self) { try PassphrasePolicy.check(weak) }
        #expect(e?.code == .weakPassphrase)
        #expect(e?.message.contains("16") == true)
    }

    @Test func generatedPassphrasesPassThePolicy() throws {
        let p = PassphrasePolicy.generate()
        try PassphrasePolicy.check(p)
        #expect(p != PassphrasePolicy.generate())
    }

    @Test func theRightPassphraseUnwrapsTheSameMasterKey() throws {
        let (file, master) = try KeyFile.create(passphrase: passphrase, parameters: .fastForTests)
        let again = try KeyFile.decode(file.encoded()).unwrap(passphrase: passphrase)
        let id = BlobID.hash(Array("x".utf8))
        #expect(ObjectSealer(master: again).objectName(for: id) == ObjectSealer(master: master).objectName(for: id))
    }

    @Test func aWrongPassphraseIsReportedAsSuch() throws {
        let (file, _) = try KeyFile.create(passphrase: passphrase, parameters: .fastForTests)
        let e = #expect(throws: CryptoError.self) { try file.unwrap(passphrase: "incorrect horse battery staple") }
        #expect(e?.code == .wrongPassphrase)
        #expect(e?.message.contains("passphrase is wrong") == true)
    }

    @Test func changingThePassphraseKeepsTheMasterKey() throws {
        let (file, master) = try KeyFile.create(passphrase: passphrase, parameters: .fastForTests)
        let newFile = try file.rewrapped(oldPassphrase: passphrase, newPassphrase: "another long passphrase 42")
        #expect(newFile.wrappedKey != file.wrappedKey)
        let unwrapped = try newFile.unwrap(passphrase: "another long passphrase 42")
        let sealed = try ObjectSealer(master: master).seal(Array("hello".utf8), name: "n", kind: 1)
        #expect(try ObjectSealer(master: unwrapped).open(sealed, name: "n").plaintext == Array("hello".utf8))
        #expect(throws: CryptoError.self) { try newFile.unwrap(passphrase: passphrase) }
    }

    @Test func sealedObjectsHideContentAndDetectEveryFlippedByte() throws {
        let (_, master) = try KeyFile.create(passphrase: passphrase, parameters: .fastForTests)
        let sealer = ObjectSealer(master: master)
        let marker = Array("UNIQUE-MARKER-7f3a".utf8)
        let sealed = try sealer.seal(marker + marker, name: "obj", kind: 2)
        #expect(!String(decoding: sealed, as: UTF8.self).contains("UNIQUE-MARKER"))
        #expect(try sealer.open(sealed, name: "obj").kind == 2)
        for i in stride(from: 0, to: sealed.count, by: 7) {
            var bad = sealed
            bad[i] ^= 0x01
            let e = #expect(throws: CryptoError.self) { try sealer.open(bad, name: "obj") }
            #expect(e?.code == .tampered)
        }
        #expect(throws: CryptoError.self) { try sealer.open(sealed, name: "other-name") }
    }

    @Test func objectNamesDoNotRevealChunkIDs() throws {
        let (_, m1) = try KeyFile.create(passphrase: passphrase, parameters: .fastForTests)
        let (_, m2) = try KeyFile.create(passphrase: passphrase, parameters: .fastForTests)
        let id = BlobID.hash(Array("known file".utf8))
        let n1 = ObjectSealer(master: m1).objectName(for: id)
        #expect(n1 != id.hex)
        #expect(n1.count == 64)
        #expect(n1 != ObjectSealer(master: m2).objectName(for: id), "names depend on the key")
    }

    /// Issue 8: a key file comes from the vault; its scrypt cost is checked before the KDF runs, with an error
    /// naming the file, so a damaged or hostile one cannot make the relay allocate gigabytes or spin for hours.
    static let hostileParameters: [[Int]] = [
        [1024, 1_048_576, 1], [1024, 8, 1_048_576], [1_073_741_824, 8, 1], [4_194_304, 8, 1],
        [1024, 0, 1], [1024, 8, 0], [1000, 8, 1], [1024, 33, 1], [1024, 8, 17], [262_144, 32, 16],
    ]

    @Test(arguments: hostileParameters)
    func outOfBoundsScryptParametersAreRefusedBeforeTheKDF(_ nrp: [Int]) throws {
        let (n, r, p) = (nrp[0], nrp[1], nrp[2])
        var (file, _) = try KeyFile.create(passphrase: passphrase, parameters: .fastForTests)
        var params = ScryptParameters.fastForTests
        params.n = n
        params.r = r
        params.p = p
        file.scrypt = params
        let e = #expect(throws: CryptoError.self) { try KeyFile.decode(file.encoded(), source: "the key file keys/1.json in the vault") }
        #expect(e?.code == .malformed)
        #expect(e?.message.contains("keys/1.json") == true, "names the key file: \(e?.message ?? "")")
        let direct = #expect(throws: CryptoError.self) { try file.unwrap(passphrase: passphrase, source: "/data/vault/keyfile.json") }
        #expect(direct?.code == .malformed)
        #expect(direct?.message.contains("/data/vault/keyfile.json") == true)
    }

    @Test func theParameterSetsOutpostWritesAreWithinBounds() throws {
        try ScryptParameters.standard.validate(source: "standard")
        try ScryptParameters.fastForTests.validate(source: "fast")
        var largest = ScryptParameters.standard
        largest.n = 1 << 17
        try largest.validate(source: "4 times the standard cost")
        largest.n = 1 << 18
        #expect(throws: CryptoError.self, "256 MiB and 2 KiB of scratch space") { try largest.validate(source: "8 times") }
    }
}
