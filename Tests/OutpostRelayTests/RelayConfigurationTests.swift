import Foundation
import OutpostCore
import OutpostRelay
import Testing

/// relay.toml: the sample `relay init` writes, and the push compression level it sets.
@Suite struct RelayConfigurationTests {
    func load(_ text: String) throws -> RelayConfiguration {
        let path = NSTemporaryDirectory() + "/outpost-relay-config-\(UUID().uuidString.prefix(8)).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try RelayConfiguration.load(path: path)
    }

    @Test func theSampleLoadsWithTheDefaults() throws {
        let c = try load(RelayConfiguration.sample)
        #expect(c == RelayConfiguration())
        #expect(c.pushCompressionLevel == RelayConfiguration.defaultPushCompressionLevel)
    }

    @Test func pushCompressionLevelTakesFastLevelsZeroForTheStoresOwnAndRefusesTheRest() throws {
        #expect(try load("push_compression_level = -3").pushCompressionLevel == -3)
        #expect(try load("push_compression_level = 0").pushCompressionLevel == nil)
        #expect(try load("").pushCompressionLevel == RelayConfiguration.defaultPushCompressionLevel)
        let e = #expect(throws: RelayError.self) { try self.load("push_compression_level = 23") }
        #expect(e?.message.contains("push_compression_level must be -7 to 19") == true)
    }
}
