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
        let id = ChunkID.hash(Array("x".utf8))
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
        let id = ChunkID.hash(Array("known file".utf8))
        let n1 = ObjectSealer(master: m1).objectName(for: id)
        #expect(n1 != id.hex)
        #expect(n1.count == 64)
        #expect(n1 != ObjectSealer(master: m2).objectName(for: id), "names depend on the key")
    }
}
