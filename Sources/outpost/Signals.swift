import Dispatch
import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Ctrl-C and SIGTERM for the commands that are not servers: one line that says what happened to the job, and
/// exit 130 (143 for SIGTERM), the shell's convention, documented in docs/exit-codes.md. Servers shut down
/// gracefully through ServiceLifecycle instead.
enum InterruptHandling {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func install(command: String) {
        for (sig, code) in [(SIGINT, ExitCode.interrupted), (SIGTERM, ExitCode.terminated)] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                let name = sig == SIGINT ? "interrupted (Ctrl-C)" : "stopped (SIGTERM)"
                let text =
                    "\noutpost \(command): \(name). What was acknowledged before the stop is kept: a backup run again sends only what is missing (no recovery point was committed by this run), a restore run again finishes the files it had not completed.\n"
                _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
                _exit(code.rawValue)
            }
            source.resume()
            sources.append(source)
        }
    }
}

/// Turns a failure to listen into a message with the address and the fix (NIO's own says neither).
func listenFailure(_ error: any Error, host: String, port: Int, setting: String) -> any Error {
    let text = "\(error)"
    if text.contains("Address already in use") || text.contains("EADDRINUSE") || text.contains("errno: 98") {
        return OutpostError(
            .cannotListen,
            "cannot listen on \(host):\(port): the address is already in use (another outpost server or program listens there); stop it, or choose another address with --listen or `\(setting)`"
        )
    }
    if text.contains("Permission denied") || text.contains("errno: 13") {
        return OutpostError(
            .cannotListen,
            "cannot listen on \(host):\(port): permission denied (ports below 1024 need privileges); choose a port above 1023 with --listen or `\(setting)`"
        )
    }
    if text.contains("Cannot assign requested address") || text.contains("errno: 99") {
        return OutpostError(
            .cannotListen,
            "cannot listen on \(host):\(port): this machine has no such address; use one of its addresses (or 0.0.0.0) with --listen or `\(setting)`")
    }
    return error
}
