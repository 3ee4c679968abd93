import NIOCore
import OutpostCore

extension ByteBuffer {
    /// Blob frames (`WireFormat.encodeFrames`) written straight into a buffer, so that an upload or a fetch
    /// answer of many megabytes goes out without a second copy.
    public init(frames blobs: [PreparedBlob]) {
        self = ByteBufferAllocator().buffer(capacity: blobs.reduce(0) { $0 + PackFormat.blobHeaderSize + $1.stored.count })
        for b in blobs {
            writeBytes(PackFormat.blobHeader(b))
            writeBytes(b.stored)
        }
    }
}
