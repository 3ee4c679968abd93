import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostHTTP
import OutpostTLS

/// `outpost relay register` and `outpost relay change-passphrase`.
public enum Registration {
    /// Registers with the vault named by a credentials file, then sets the encryption passphrase: the master
    /// key is made, wrapped under the passphrase (scrypt), and the wrapped key stored in the vault and locally.
    /// The passphrase itself is not stored; the unwrapped master key stays on the relay (0600) so that the
    /// forwarder can run unattended.
    public static func register(
        data: String, credentialsPath: String, passphrase: String, relayName: String, proxy: ProxyConfiguration? = nil,
        scrypt: ScryptParameters = .standard, now: Date = Date(), logger: Logger
    ) async throws -> VaultLink {
        try PassphrasePolicy.check(passphrase)
        let file = try loadCredentials(credentialsPath, now: now)
        let paths = VaultLink.paths(data)
        let fm = FileManager.default
        let link: VaultLink
        if fm.fileExists(atPath: paths.link) && !fm.fileExists(atPath: paths.masterKey), let existing = try? VaultLink.load(data: data),
            existing.vaultID == file.vaultID
        {
            // A registration that stopped after the vault accepted it (the key was not stored yet): finish it
            // with the credential already issued, without spending another credentials file.
            link = existing
        } else {
            if fm.fileExists(atPath: paths.link), file.recoverRelay == nil {
                throw ForwarderError(
                    .refused, "this relay is already registered with a vault (\(paths.link)); registering again would start a new container")
            }
            let answer = try await withVault(file.url, certificate: file.certificate, credential: nil, proxy: proxy, logger: logger) { client in
                // Re-attaching replaces the relay's credential (a relay that still runs loses its access): the
                // passphrase is checked against the container's key file first, and a wrong one changes nothing.
                var proof: String?
                if file.recoverRelay != nil {
                    proof = try await checkRecoveryPassphrase(client, file: file, passphrase: passphrase, logger: logger)?.containerProof()
                }
                return try await client.register(secret: file.secret, relayName: relayName, proof: proof)
            }
            link = VaultLink(
                url: file.url, vaultID: file.vaultID, vaultName: file.vaultName, relayID: answer.relayID,
                credential: answer.credential, fingerprint: TLSIdentity.normalizeFingerprint(file.fingerprint),
                certificate: file.certificate, registeredAt: now)
            // Saved before the key is made: if what follows fails, running the command again resumes here.
            try link.save(data: data)
        }
        try await withVault(link.url, certificate: link.certificate, credential: link.credential, proxy: proxy, logger: logger) { authed in
            let existingKeys = try await authed.list(prefix: "keys/")
            if file.recoverRelay != nil || !existingKeys.isEmpty {
                // The container already holds the wrapped key (a rebuild, or a resumed registration whose key
                // upload went through): the passphrase must open it.
                let (keyFile, source) = try await newestKeyFile(authed)
                let master = try keyFile.unwrap(passphrase: passphrase, source: source)
                try saveKeys(data: data, keyFile: keyFile, master: master)
            } else {
                let (keyFile, master) = try KeyFile.create(passphrase: passphrase, parameters: scrypt, now: now)
                _ = try await authed.put(keyObjectName(now), keyFile.encoded())
                try saveKeys(data: data, keyFile: keyFile, master: master)
            }
            try await putVerifier(authed, master: try loadMaster(data: data))
        }
        return link
    }

    /// The container's `verifier` object: the SHA-256 of the proof of its master key (docs/vault.md §6.2), put
    /// once (put-if-absent). A rebuilding relay must present the proof before the vault hands it the container.
    /// Relays registered before there was a verifier put it when they next forward.
    public static let verifierObject = "verifier"

    static func putVerifier(_ vault: VaultClient, master: MasterKey) async throws {
        _ = try await vault.put(verifierObject, Array(MasterKey.verifierHash(ofProof: master.containerProof()).utf8))
    }

    /// Re-wraps the master key under a new passphrase; nothing else is re-uploaded. The older key files are then
    /// deleted from the container, so the old passphrase no longer opens the vault copy through the relay's
    /// credential (the vault keeps them in soft delete until its purge). Returns the key files that stayed: an
    /// immutable vault refuses deletes, and a failure after the new key is in force is not an error.
    @discardableResult
    public static func changePassphrase(data: String, old: String, new: String, proxy: ProxyConfiguration? = nil, now: Date = Date(), logger: Logger)
        async throws -> [String]
    {
        let link = try VaultLink.load(data: data)
        guard let bytes = FileManager.default.contents(atPath: VaultLink.paths(data).keyFile) else {
            throw ForwarderError(.notRegistered, "no key file under \(VaultLink.paths(data).dir); register first")
        }
        let keyFile = try KeyFile.decode(Array(bytes), source: "the key file \(VaultLink.paths(data).keyFile)")
        let rewrapped = try keyFile.rewrapped(
            oldPassphrase: old, newPassphrase: new, source: "the key file \(VaultLink.paths(data).keyFile)", now: now)
        let newKey = keyObjectName(now)
        return try await withVault(link.url, certificate: link.certificate, credential: link.credential, proxy: proxy, logger: logger) { client in
            var kept: [String] = []
            _ = try await client.put(newKey, rewrapped.encoded())
            try writePrivate(rewrapped.encoded(), to: VaultLink.paths(data).keyFile)
            let older: [String]
            do { older = try await client.list(prefix: "keys/").map(\.key).filter { $0 != newKey } } catch {
                logger.warning("older key files could not be listed; run change-passphrase again later", metadata: ["error": "\(error)"])
                older = []
                kept.append("(the key files could not be listed: \(error))")
            }
            for old in older {
                do { try await client.delete(old) } catch {
                    // An immutable vault refuses (403); anything else is worth another try later. Either way the
                    // new key is in force.
                    logger.warning("an older key file stays in the vault", metadata: ["key": "\(old)", "error": "\(error)"])
                    kept.append(old)
                }
            }
            return kept
        }
    }

    /// Runs `body` with a client of the vault at `url`, closed whatever `body` does.
    static func withVault<T>(
        _ url: String, certificate: String, credential: String?, proxy: ProxyConfiguration?, logger: Logger,
        _ body: (VaultClient) async throws -> T
    ) async throws -> T {
        let client = try VaultClient(url: url, certificatePEM: certificate, credential: credential, proxy: proxy, logger: logger)
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }

    static func keyObjectName(_ now: Date) -> String { "keys/\(Int(now.timeIntervalSince1970 * 1000)).json" }

    static func newestKeyFile(_ client: VaultClient) async throws -> (KeyFile, source: String) {
        guard let newest = try await client.list(prefix: "keys/").map(\.key).max(),
            let bytes = try await client.get(newest)
        else {
            throw ForwarderError(.vault, "the vault container holds no key file; it cannot be opened with a passphrase")
        }
        let source = "the key file \(newest) in the vault container"
        return (try KeyFile.decode(bytes, source: source), source)
    }

    /// Reads and checks a vault credentials file.
    static func loadCredentials(_ path: String, now: Date) throws -> VaultCredentialsFile {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw ForwarderError(.config, "cannot read the vault credentials file \(path)")
        }
        let file: VaultCredentialsFile
        do { file = try VaultCredentialsFile.decode(Array(bytes), path: path) } catch let e as FormatError {
            throw ForwarderError(.credentials, e.message)
        }
        if file.expiresAt < now {
            throw ForwarderError(
                .credentials,
                "the vault credentials file \(path) expired on \(file.expiresAt.formatted(.iso8601)); download a new one from the vault (`outpost vault credentials`)"
            )
        }
        guard (try? TLSIdentity.fingerprint(ofPEM: file.certificate)) == TLSIdentity.normalizeFingerprint(file.fingerprint) else {
            throw ForwarderError(
                .credentials, "the vault credentials file \(path) is inconsistent (certificate and fingerprint differ); download it again")
        }
        return file
    }

    /// Checks that `passphrase` opens the key file of the container a recovery credentials file re-attaches,
    /// before anything is registered or written (`relay rebuild` calls it before it creates the data directory).
    /// A wrong passphrase throws `CryptoError.wrongPassphrase` (exit 19); the vault and the file are unchanged.
    public static func checkRecoveryPassphrase(
        credentialsPath: String, passphrase: String, proxy: ProxyConfiguration? = nil, now: Date = Date(),
        logger: Logger
    ) async throws {
        try PassphrasePolicy.check(passphrase)
        let file = try loadCredentials(credentialsPath, now: now)
        guard file.recoverRelay != nil else {
            throw ForwarderError(
                .credentials,
                "the vault credentials file \(credentialsPath) registers a new relay; a rebuild needs a recovery one (`outpost vault credentials --recover RELAY`)"
            )
        }
        try await withVault(file.url, certificate: file.certificate, credential: nil, proxy: proxy, logger: logger) { client in
            try await checkRecoveryPassphrase(client, file: file, passphrase: passphrase, logger: logger)
        }
    }

    /// The container's master key, opened with the passphrase; nil from a vault too old to hand out the key file.
    @discardableResult
    static func checkRecoveryPassphrase(_ client: VaultClient, file: VaultCredentialsFile, passphrase: String, logger: Logger) async throws
        -> MasterKey?
    {
        guard let bytes = try await client.recoveryKey(secret: file.secret) else {
            logger.warning(
                "this vault cannot hand out the key file before the relay re-attaches (it predates that); the passphrase is checked after registering: upgrade the vault"
            )
            return nil
        }
        let source = "the key file of relay \(file.recoverRelay ?? "") in the vault"
        do { return try KeyFile.decode(bytes, source: source).unwrap(passphrase: passphrase, source: source) } catch let e as CryptoError
            where e.code == .wrongPassphrase
        {
            throw CryptoError(
                .wrongPassphrase,
                "\(e.message). Nothing was changed: the relay registered in the vault keeps its credential, and the recovery credentials file can still be used"
            )
        }
    }

    static func saveKeys(data: String, keyFile: KeyFile, master: MasterKey) throws {
        try writePrivate(keyFile.encoded(), to: VaultLink.paths(data).keyFile)
        try writePrivate(Array(master.exported().utf8), to: VaultLink.paths(data).masterKey)
    }

    public static func loadMaster(data: String) throws -> MasterKey {
        guard let bytes = FileManager.default.contents(atPath: VaultLink.paths(data).masterKey),
            let key = MasterKey(exported: String(decoding: bytes, as: UTF8.self))
        else {
            throw ForwarderError(
                .notRegistered,
                "the relay's master key (\(VaultLink.paths(data).masterKey)) is missing; register the relay, or rebuild it with its passphrase")
        }
        return key
    }
}
