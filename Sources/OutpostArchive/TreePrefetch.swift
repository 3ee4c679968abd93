import OutpostCore
import Synchronization

/// A full restore's trees, fetched ahead of the walk: when trees arrive, their subfolders' trees are asked for
/// at once, in requests of up to `WireFormat.maxFetchBlobs`, so that a relay serves a level of many small
/// folders in a few requests instead of one per folder. At most `budget` trees wait ahead of the walk; beyond
/// that, and for whatever a failed prefetch did not bring, each folder fetches its subfolders' trees itself.
final class TreePrefetch: Sendable {
    private struct State {
        var ahead: [BlobID: Future<Tree?>] = [:]
        var tasks: [Task<Void, Never>] = []
        var stopped = false
    }
    private let state = Mutex(State())
    let trees: TreeWalker
    /// False: a partial restore (include paths), where most trees are not wanted: nothing is fetched ahead.
    let enabled: Bool
    let budget: Int

    init(trees: TreeWalker, enabled: Bool, budget: Int = 2048) {
        self.trees = trees
        self.enabled = enabled
        self.budget = budget
    }

    /// Starts fetching the subfolders' trees of `parents` that are not on their way yet, within the budget.
    func prefetchChildren(of parents: some Sequence<Tree>) {
        guard enabled else { return }
        let ids = parents.flatMap { $0.nodes.compactMap { $0.type == .directory ? $0.subtree : nil } }
        if ids.isEmpty { return }
        let wanted: [(BlobID, Future<Tree?>)] = state.withLock { s in
            guard !s.stopped else { return [] }
            var out: [(BlobID, Future<Tree?>)] = []
            for id in ids where s.ahead[id] == nil && s.ahead.count < budget {
                let f = Future<Tree?>()
                s.ahead[id] = f
                out.append((id, f))
            }
            return out
        }
        for start in stride(from: 0, to: wanted.count, by: WireFormat.maxFetchBlobs) {
            let slice = Array(wanted[start..<min(wanted.count, start + WireFormat.maxFetchBlobs)])
            let task = Task {
                let fetched = try? await self.trees.trees(slice.map(\.0))
                for (id, f) in slice { f.fulfil(fetched?[id]) }
                if let fetched { self.prefetchChildren(of: fetched.values) }
            }
            state.withLock { $0.tasks.append(task) }
        }
    }

    /// The trees of `ids`: those fetched ahead (then forgotten here), the others in one request now, whose
    /// subfolders are then fetched ahead. A failed request leaves its trees out (each folder then fetches its
    /// own, and fails alone).
    func trees(_ ids: [BlobID]) async -> [BlobID: Tree] {
        var out: [BlobID: Tree] = [:]
        var missing: [BlobID] = []
        for id in ids {
            if let f = state.withLock({ $0.ahead.removeValue(forKey: id) }), let t = await f.value {
                out[id] = t
            } else {
                missing.append(id)
            }
        }
        if missing.count == 1, !enabled { return out }  // fetched by its folder, as before
        if !missing.isEmpty, let fetched = try? await trees.trees(missing) {
            prefetchChildren(of: fetched.values)
            out.merge(fetched) { a, _ in a }
        }
        return out
    }

    /// Cancels what is still being fetched ahead (the restore is over).
    func stop() {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            s.stopped = true
            return s.tasks
        }
        for t in tasks { t.cancel() }
    }
}
