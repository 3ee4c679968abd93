import OutpostCore

/// A folder's tree, written by a task of its own once the folder's files and subfolders are done. The walk
/// does not wait for it: over a network every folder's tree costs round trips, and waiting for each folder's
/// files and tree in turn left the file workers idle with a queue of one folder's files (a 9,900-file backup to a
/// relay sent 4,600 requests and took 3 × as long as the same backup to a local store).
///
/// Every folder's task waits only for entries the walk already started (its files are queued, its subfolders
/// have tasks of their own), so the tasks always finish; their number is bounded by the folders the walk is
/// ahead of the workers, which the file queue's limit bounds.
enum TreeTask {
    typealias Result = Future<Swift.Result<BlobID, any Error>>

    /// An entry of the folder, as the walk left it.
    enum Entry: Sendable {
        case ready(Node)
        case file(Future<FileResult>)
        case hardlink(Node, Future<FileResult>)
        case directory(Node, Result)
    }

    /// Starts the task that writes the tree of `entries` (in their order) and returns its result. `previous`:
    /// the folder's tree in the parent point (an unchanged folder's tree is not asked about or sent again).
    static func start(_ entries: [Entry], previous: Tree? = nil, trees: TreeWriter, tally: BackupTally) -> Result {
        let result = Result()
        Task {
            do {
                result.fulfil(.success(try await trees.write(Tree(nodes: try await nodes(entries, tally: tally)), previous: previous)))
            } catch {
                // The walk and the workers stop early rather than read the rest of the selection for nothing.
                tally.stop(error)
                result.fulfil(.failure(error))
            }
        }
        return result
    }

    private static func nodes(_ entries: [Entry], tally: BackupTally) async throws -> [Node] {
        var nodes: [Node] = []
        nodes.reserveCapacity(entries.count)
        for entry in entries {
            switch entry {
            case .ready(let node):
                nodes.append(node)
            case .directory(var node, let subtree):
                node.subtree = try await subtree.value.get()
                nodes.append(node)
            case .file(let future):
                switch await future.value {
                case .stored(let node): nodes.append(node)
                case .skipped: break
                case .fatal(let error): throw error
                }
            case .hardlink(var node, let future):
                switch await future.value {
                case .stored(let first):
                    node.extents = first.extents
                    node.size = first.size
                    tally.count {
                        $0.otherEntries += 1; $0.bytesTotal += Int64(first.size)
                    }
                    nodes.append(node)
                case .skipped:
                    tally.record(node.linkTarget, "(hard link \(FS.display(node.name))) could not be read either")
                case .fatal(let error): throw error
                }
            }
        }
        return nodes
    }
}
