import Foundation
import OutpostCephTestSupport
import OutpostCore
import OutpostObjects
import Testing

@testable import OutpostS3

/// The `ObjectStore` contract and the S3 store's own promises on a real Ceph RGW (Deploy/ceph.sh, one cluster for
/// the suite). Each test works in a bucket of its own.
@Suite(.ceph, .timeLimit(.minutes(10))) struct S3CephTests {
    /// Small pages and S3's smallest parts, so that pagination and multipart run on small data.
    static var small: S3ObjectStore.Tuning {
        var t = S3ObjectStore.Tuning()
        t.listPageSize = 3
        t.partSize = 5 << 20
        t.multipartThreshold = 5 << 20
        return t
    }

    @Test func putIfAbsentGetListDelete() throws {
        try ObjectStoreContract.putIfAbsentGetListDelete(try CephCluster.required().freshStore(tuning: Self.small))
    }

    @Test func rangesClamp() throws {
        try ObjectStoreContract.rangesClamp(try CephCluster.required().freshStore(tuning: Self.small))
    }

    @Test func listsEveryPageOfThree() throws {
        try ObjectStoreContract.listsEveryPage(try CephCluster.required().freshStore(tuning: Self.small), count: 11)
    }

    /// 12 MiB + 123 bytes in 5 MiB parts: three parts, the last short; no upload left unfinished.
    @Test func largeObjectsGoUpInParts() throws {
        let store = try CephCluster.required().freshStore(tuning: Self.small)
        try ObjectStoreContract.largeObjects(store, size: (12 << 20) + 123)
        #expect(try store.pendingUploads() == [])
    }

    @Test func concurrentWritersOneWins() throws {
        try ObjectStoreContract.concurrentWritersOneWins(try CephCluster.required().freshStore(tuning: Self.small), writers: 12)
    }

    @Test func refusesUnsafeKeys() throws {
        ObjectStoreContract.refusesUnsafeKeys(try CephCluster.required().freshStore(tuning: Self.small))
    }

    /// A part that fails halfway aborts the upload: nothing is stored, nothing is left pending.
    @Test func aFailedMultipartUploadIsAborted() throws {
        let c = try CephCluster.required()
        let probe = try c.freshStore(tuning: Self.small)
        let store = try S3ObjectStore(
            location: probe.location, credentials: c.credentials, tuning: Self.small, transport: AsyncHTTPTransport.shared,
            beforePart: { part in if part == "part 2" { throw CephError("injected failure before \(part)") } })
        #expect(throws: CephError.self) { try store.putIfAbsent("big/broken", Array(repeating: 7, count: 11 << 20)) }
        #expect(try probe.get("big/broken") == nil)
        #expect(try probe.pendingUploads() == [], "the upload was aborted")
        #expect(try probe.putIfAbsent("big/broken", Array(repeating: 8, count: 11 << 20)), "and the key can be written later")
    }

    /// Wrong secret: the 403 names the operation, bucket and key, and says to check the key and secret.
    @Test func badCredentialsAreRefusedWithTheFix() throws {
        let c = try CephCluster.required()
        let good = try c.freshStore()
        _ = try good.putIfAbsent("k", [1])
        var wrong = c.credentials
        wrong.secretAccessKey += "x"
        let bad = try S3ObjectStore(location: good.location, credentials: wrong)
        for op in [{ _ = try bad.get("k") }, { _ = try bad.putIfAbsent("k2", [1]) }, { _ = try bad.list(prefix: "") }, { try bad.ensureBucket() }] {
            let e = #expect(throws: OutpostError.self) { try op() }
            #expect(e?.code == .credentials, "\(e?.message ?? "")")
            #expect(e?.message.contains("check the access key and secret") == true, "\(e?.message ?? "")")
            #expect(e?.message.contains(good.location.bucket) == true, "\(e?.message ?? "")")
            #expect(e?.message.contains(wrong.secretAccessKey) == false, "never the secret")
        }
        let get = #expect(throws: OutpostError.self) { try bad.get("k") }
        #expect(get?.message.contains("GetObject of \(good.location.bucket)/k") == true, "\(get?.message ?? "")")
        #expect(get?.exitCode == .unauthorized)
        var unknown = c.credentials
        unknown.accessKeyID = "NOSUCHKEY"
        let nobody = try S3ObjectStore(location: good.location, credentials: unknown)
        let e = #expect(throws: OutpostError.self) { try nobody.get("k") }
        #expect(e?.code == .credentials && e?.message.contains("InvalidAccessKeyId") == true, "\(e?.message ?? "")")
    }

    /// A bucket that is not there: every operation says so (not "no such key"), and ensureBucket creates it.
    @Test func aMissingBucketIsNamed() throws {
        let c = try CephCluster.required()
        let store = try S3ObjectStore(
            location: S3Location(endpoint: c.endpoint, bucket: "missing-\(UUID().uuidString.prefix(6).lowercased())"), credentials: c.credentials)
        for op in [
            { _ = try store.get("k") }, { _ = try store.putIfAbsent("k", [1]) }, { _ = try store.list(prefix: "") }, { try store.delete("k") },
        ] {
            let e = #expect(throws: OutpostError.self) { try op() }
            #expect(e?.code == .notFound && e?.message.contains("bucket \(store.location.bucket) does not exist") == true, "\(e?.message ?? "")")
        }
        #expect(try store.ensureBucket(), "created")
        #expect(try !store.ensureBucket(), "already there")
        #expect(try store.putIfAbsent("k", [1]))
    }

    /// GRS on S3: two buckets (a second endpoint in production); every write reaches both, reads fall back.
    @Test func replicatedOverTwoBuckets() throws {
        let c = try CephCluster.required()
        let primary = try c.freshStore(tuning: Self.small), secondary = try c.freshStore(tuning: Self.small)
        let grs = ReplicatedObjectStore(primary: primary, secondary: secondary)
        try ObjectStoreContract.putIfAbsentGetListDelete(grs)
        _ = try grs.putIfAbsent("k", [7])
        #expect(try secondary.get("k") == [7])
        try primary.delete("k")
        #expect(try grs.get("k") == [7])
    }
}
