import ArgumentParser
import Foundation
import OutpostConsole
import OutpostCore
import OutpostVault

extension VaultCommand {
    /// `outpost vault admin add|remove|list|link` (issue 13): who may open the vault's fleet view.
    struct Admin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The vault console's administrators (its fleet view).",
            discussion: """
                Kept in the vault's object store (meta/admins/), so every `vault serve` over one bucket knows the same \
                ones; a running vault sees a change at once. Passwords (12 characters or more) are stored as scrypt \
                hashes. `add --login-link` (or `link NAME`) prints a one-time link, valid 15 minutes, that opens a \
                session without a password. A relay's credential never opens the console. Exit 10: DATA is not a vault; \
                14: unknown administrator; 15: the name is taken; 64: a bad name or password.
                """,
            subcommands: [Add.self, Remove.self, List.self, Link.self])
    }
}

extension VaultCommand.Admin {
    /// The administrators of the vault in DATA (its object store, as `vault serve` opens it).
    static func admins(_ dir: VaultDataDirectory) throws -> VaultAdmins {
        let settings = try dir.settings()
        return VaultAdmins(objects: try dir.objectStore(settings))
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an administrator.")
        @OptionGroup var vault: VaultOptions
        @Argument(help: "The administrator's name (letters, digits, '.', '-', '_').") var name: String
        @Option(help: ArgumentHelp("Read the password from this file (first line).", valueName: "file")) var passwordFile: String?
        @Flag(help: "Set no password; print a one-time login link instead.") var loginLink = false

        func run() async throws {
            let dir = vault.directory
            let admins = try VaultCommand.Admin.admins(dir)
            let password = try adminPassword(file: passwordFile, loginLink: loginLink, name: name)
            try admins.add(name, password: password)
            print("vault administrator \(name) added")
            if loginLink { try printVaultLink(admins, name: name, dir: dir) }
        }
    }

    struct Link: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a one-time login link for an administrator (valid 15 minutes).")
        @OptionGroup var vault: VaultOptions
        @Argument(help: "The administrator's name.") var name: String

        func run() async throws {
            let dir = vault.directory
            try printVaultLink(try VaultCommand.Admin.admins(dir), name: name, dir: dir)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove an administrator; its sessions end on every vault node within seconds.")
        @OptionGroup var vault: VaultOptions
        @Argument(help: "The administrator's name.") var name: String

        func run() async throws {
            try VaultCommand.Admin.admins(vault.directory).remove(name)
            print("vault administrator \(name) removed")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the administrators.")
        @OptionGroup var vault: VaultOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let admins = try VaultCommand.Admin.admins(vault.directory).list()
            if json { try printJSON(admins); return }
            if admins.isEmpty { print("no vault administrators; add one with `outpost vault admin add --data DIR NAME`") }
            for a in admins { print("\(a.name)  \(a.hasPassword ? "password" : "link only")  added \(a.createdAt.formatted(.iso8601))") }
        }
    }
}

/// The link, with the console's address from vault.toml (or a placeholder when none is set).
func printVaultLink(_ admins: VaultAdmins, name: String, dir: VaultDataDirectory) throws {
    let token = try admins.loginLink(for: name)
    let file = dir.root + "/vault.toml"
    let listen = (try? VaultServeSettings.load(file: nil, defaultFile: file, environment: ProcessInfo.processInfo.environment))?.consoleListen
    print("\(listen.map { "https://\($0)" } ?? "https://VAULT:CONSOLE_PORT")/login/\(token)")
    if listen == nil { printErr("vault.toml sets no console_listen: the console is off until it does (or `vault serve --console-listen`)") }
}
