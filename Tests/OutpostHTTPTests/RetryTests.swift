import OutpostHTTP
import Testing

/// The one retry policy both clients share.
@Suite struct RetryTests {
    @Test func transientFailuresAreRetriedUntilTheAttemptsRunOut() async throws {
        var calls = 0
        var announced: [Int] = []
        await #expect(throws: TransientFailure.self) {
            try await Retry.run(
                attempts: 3, onRetry: { attempt, _, _ in announced.append(attempt) },
                exhausted: { _, reason in TransientFailure("gave up: \(reason)") }
            ) {
                calls += 1
                throw TransientFailure("refused")
            }
        }
        #expect(calls == 3)
        #expect(announced == [1, 2])
    }
}
