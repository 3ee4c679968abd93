import OutpostCore
import Testing

/// One error type for every layer: each code keeps the exit code and status its layer gave it before.
@Suite struct OutpostErrorTests {
    @Test func exitCodesAreTheLayersOwn() {
        let expected: [OutpostError.Code: Int32] = [
            .notAStore: 10, .alreadyExists: 10, .exists: 10, .notARelay: 10, .notAVault: 10,
            .unsupportedVersion: 11, .locked: 12, .notFound: 14, .ambiguous: 14,
            .taken: 15, .conflict: 15, .unsafe: 15, .forbidden: 15, .fingerprintMismatch: 15, .refused: 15,
            .diskFull: 16, .relayDiskFull: 16, .staging: 16, .io: 17,
            .corrupt: 18, .damaged: 18, .tampered: 18, .malformed: 18,
            .unauthorized: 19, .credentials: 19, .wrongPassphrase: 19, .unreachable: 20, .remote: 21, .vault: 21,
            .cannotListen: 22, .tls: 1,
            .invalid: 64, .invalidPath: 64, .notEnrolled: 64, .config: 64, .notRegistered: 64, .invalidKey: 64,
            .weakPassphrase: 64, .usage: 64,
        ]
        #expect(Set(expected.keys) == Set(OutpostError.Code.allCases), "every code has a documented exit code")
        for (code, exit) in expected { #expect(OutpostError(code, "x").exitCode.rawValue == exit, "\(code)") }
    }

    @Test func serverStatuses() {
        #expect(OutpostError(.diskFull, "x").httpStatus == 507)
        #expect(OutpostError(.taken, "x").httpStatus == 409)
        #expect(OutpostError(.notFound, "x").httpStatus == 404)
        #expect(OutpostError(.invalid, "x").httpStatus == 400)
        #expect(OutpostError(.io, "x").httpStatus == 500)
    }
}
