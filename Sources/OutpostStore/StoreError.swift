import OutpostCore

/// The store layer's name for its errors (one type for every layer: `OutpostError`).
public typealias StoreError = OutpostError

extension OutpostError {
    static func system(_ errno: Int32, _ action: String, _ path: String) -> StoreError {
        let reason = String(cString: strerror(errno))
        if errno == ENOSPC || errno == EDQUOT {
            return StoreError(
                .diskFull,
                "the disk holding \(path) is full (\(action) failed: \(reason)); free space there and run the job again — nothing that was committed is lost"
            )
        }
        return StoreError(.io, "\(action) \(path) failed: \(reason)")
    }
}

#if canImport(Glibc)
    import Glibc
#endif
