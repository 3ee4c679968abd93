import Testing

@testable import OutpostConsole

/// Logins past the gate's limit are turned away at once (each holds a 32 MiB scrypt), and a slot frees on leave.
@Suite struct ConcurrencyGateTests {
    @Test func holdersPastTheLimitAreTurnedAway() {
        let gate = ConcurrencyGate(limit: 2)
        #expect(gate.enter() && gate.enter())
        #expect(!gate.enter())
        gate.leave()
        #expect(gate.enter())
        #expect(ConsoleLogin.scryptGate.limit <= 4)
    }
}
