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

/// The file `relay init` writes is Config/relay.toml's commented sample, line for line (its indentation included).
@Suite struct RelaySampleTests {
    @Test func initWritesTheSampleInConfig() throws {
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Config/relay.toml").path
        let text = try String(contentsOfFile: config, encoding: .utf8)
        let start = try #require(text.range(of: "# Outpost relay configuration"))
        let sample = RelayConfiguration.sample.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(String(text[start.lowerBound...]).trimmingCharacters(in: .whitespacesAndNewlines) == sample)
        #expect(!sample.split(separator: "\n").contains { $0.hasPrefix(" ") }, "no line of the sample is indented")
    }
}
