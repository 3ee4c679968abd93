import OutpostHTTP
import Testing

/// The two bearer credentials share one text form, `<scheme>:<owner>:<secret>`.
@Suite struct CredentialTests {
    @Test func credentialsRoundTripAndRefuseOtherForms() {
        let secret = RandomSecret.make()
        #expect(secret.count == 64)
        #expect(RelayAPI.parseCredential(RelayAPI.credential(machine: "web-1", secret: secret))! == (machine: "web-1", secret: secret))
        #expect(VaultAPI.parseCredential(VaultAPI.credential(relayID: "ab12", secret: secret))! == (relayID: "ab12", secret: secret))
        #expect(RelayAPI.parseCredential(VaultAPI.credential(relayID: "ab12", secret: secret)) == nil, "the scheme is checked")
        #expect(RelayAPI.parseCredential("outpost1:web-1:" + String(repeating: "a", count: 31)) == nil, "a short secret")
        #expect(RelayAPI.parseCredential("outpost1::" + secret) == nil, "no owner")
        #expect(VaultAPI.parseCredential("vault1:a:b:" + secret) == nil, "more parts")
    }
}
