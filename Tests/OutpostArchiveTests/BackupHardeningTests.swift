import Dispatch
import Foundation
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Synchronization
import Testing

@testable import OutpostArchive

#if canImport(Glibc)
    import Glibc
#endif

/// Entries swapped between the scan and the read (issue 8): the backup reads only what the scan saw, relative
/// to the folder it saw, and never waits on a FIFO.
@Suite struct BackupHardeningTests {
    /// Releases a reader blocked opening `fifo` if the backup has not finished after a long time, so that a
    /// regression fails this test instead of hanging the suite. It does not order anything when the code is right.
    final class Watchdog: Sendable {
        let done = DispatchSemaphore(value: 0)
        let fired = Atomic<Bool>(false)
        init(fifo: String) {
            Thread.detachNewThread { [self] in
                if done.wait(timeout: .now() + 60) == .timedOut {
                    fired.store(true, ordering: .relaxed)
                    let fd = open(fifo, O_WRONLY | O_NONBLOCK)  // a blocked reader counts: this open succeeds
                    if fd >= 0 { close(fd) }
                }
            }
        }
        func finish() { done.signal() }
    }

    @Test func aFIFOSwappedInForAFileIsSkippedWithoutWaitingForAWriter() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", [1])
        let swapped = s.write("data/b", [2])
        let watchdog = Watchdog(fifo: swapped)
        let result = try await backup(store, [s.sub("data")]) { o in
            o.hooks.beforeOpen = { path in
                if String(decoding: path, as: UTF8.self) == swapped { unlink(swapped); mkfifo(swapped, 0o644) }
            }
        }
        watchdog.finish()
        let waited = watchdog.fired.load(ordering: .relaxed)
        #expect(!waited, "the backup waited for a writer on the FIFO")
        #expect(result.failures.map(\.path) == [swapped])
        #expect(result.failures.first?.reason.contains("was replaced") == true)
        #expect(try store.loadTree(try node(store, result.point, s.sub("data")).subtree!).nodes.map(\.nameString) == ["a"])
    }

    /// The folder holding a file is moved away and a link to another folder with a file of the same name put in
    /// its place: the file the scan saw is read, through the folder it was found in, not the other one.
    @Test func aFileIsOpenedRelativeToTheFolderTheScanSaw() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let file = s.write("data/sub/f", Array("inside".utf8))
        s.write("elsewhere/f", Array("secret".utf8))
        let (sub, moved, elsewhere) = (s.sub("data/sub"), s.sub("data/moved"), s.sub("elsewhere"))
        let result = try await backup(store, [s.sub("data")]) { o in
            o.hooks.beforeOpen = { path in
                if String(decoding: path, as: UTF8.self) == file {
                    rename(sub, moved)
                    symlink(elsewhere, sub)
                }
            }
        }
        #expect(result.failures.isEmpty, "\(result.failures)")
        let target = s.sub("out")
        _ = try await restore(store, result.point, to: target)
        #expect(FileManager.default.contents(atPath: restored(target, file)) == Data("inside".utf8))
    }

    /// A folder swapped for a link after the scan is not listed through the link.
    @Test func aFolderSwappedForALinkIsNotFollowed() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/sub/f", Array("inside".utf8))
        s.write("elsewhere/secret", Array("secret".utf8))
        let (sub, moved, elsewhere) = (s.sub("data/sub"), s.sub("data/moved"), s.sub("elsewhere"))
        let result = try await backup(store, [s.sub("data")]) { o in
            o.hooks.beforeList = { path in
                if String(decoding: path, as: UTF8.self) == sub {
                    rename(sub, moved)
                    symlink(elsewhere, sub)
                }
            }
        }
        #expect(result.failures.map(\.path) == [sub])
        #expect(result.failures.first?.reason.contains("was replaced") == true)
        let subNode = try node(store, result.point, sub)
        #expect(subNode.type == .directory)
        #expect(try store.loadTree(subNode.subtree!).nodes.isEmpty, "nothing of the link's target is backed up")
    }

    @Test func aFileReplacedByAnotherIsNotRead() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let file = s.write("data/f", Array("original".utf8))
        let other = s.write("other", Array("intruder".utf8))
        let result = try await backup(store, [s.sub("data")]) { o in
            o.hooks.beforeOpen = { path in
                if String(decoding: path, as: UTF8.self) == file { rename(other, file) }
            }
        }
        #expect(result.failures.map(\.path) == [file])
        #expect(result.failures.first?.reason.contains("was replaced") == true)
    }
}
