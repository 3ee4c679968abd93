import ArgumentParser
import Foundation
import OutpostConsole
import OutpostCore
import OutpostRelay
import OutpostStore

extension RelayCommand {
    /// `outpost relay admin add|remove|list` (issue 13): who may open the web console.
    struct Admin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The web console's administrators.",
            discussion: """
                Passwords (12 characters or more) are stored as scrypt hashes. `add --login-link` (or `link NAME`) prints a \
                one-time link, valid 15 minutes, that opens a session without a password. A machine's credential never opens \
                the console. Exit 14: unknown administrator; 15: the name is taken; 64: a bad name or password.
                """,
            subcommands: [Add.self, Remove.self, List.self, Link.self])
    }
}

extension RelayCommand.Admin {
    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an administrator.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The administrator's name.") var name: String
        @Option(help: ArgumentHelp("Read the password from this file (first line).", valueName: "file")) var passwordFile: String?
        @Flag(help: "Set no password; print a one-time login link instead.") var loginLink = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let password = try adminPassword(file: passwordFile, loginLink: loginLink, name: name)
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay admin add`")
            let accounts = ConsoleAccounts(store: store)
            try accounts.add(name, password: password)
            print("administrator \(name) added")
            if loginLink { try printLink(accounts, name: name, dir: dir) }
        }
    }

    struct Link: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a one-time login link for an administrator (valid 15 minutes).")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The administrator's name.") var name: String

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay admin link`")
            try printLink(ConsoleAccounts(store: store), name: name, dir: dir)
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an administrator and end its sessions.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The administrator's name.") var name: String

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            try ConsoleAccounts(store: try Store.open(at: dir.storePath, purpose: "`outpost relay admin remove`")).remove(name)
            print("administrator \(name) removed")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the administrators.")
        @OptionGroup var relay: RelayOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let admins = try ConsoleAccounts(store: try Store.open(at: dir.storePath, purpose: "`outpost relay admin list`")).list()
            if json { try printJSON(admins); return }
            if admins.isEmpty { print("no administrators; add one with `outpost relay admin add NAME`") }
            for a in admins { print("\(a.name)  \(a.hasPassword ? "password" : "link only")  \(a.sessions) sessions") }
        }
    }
}

/// The link, with the console's address from relay.toml (or a placeholder when none is set).
func printLink(_ accounts: ConsoleAccounts, name: String, dir: RelayDataDirectory) throws {
    let token = try accounts.loginLink(for: name)
    let listen = (try? dir.configuration().consoleListen) ?? nil
    let base = listen.map { "https://\($0)" } ?? "https://RELAY:CONSOLE_PORT"
    print("\(base)/login/\(token)")
    if listen == nil { printErr("relay.toml sets no console_listen: the console is off until it does") }
}

/// A line typed without echo, or nil when standard input is not a terminal.
func readSecret(prompt: String) -> String? {
    guard isatty(0) == 1 else { return nil }
    return String(cString: getpass(prompt))
}

/// A new administrator's password for `relay admin add` and `vault admin add`: the first line of `file`, else typed
/// twice at the terminal; nil with `--login-link` alone (the account logs in by the link).
func adminPassword(file: String?, loginLink: Bool, name: String) throws -> String? {
    if let file {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("cannot read the password file \(file); check its path and permissions")
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? ""
    }
    if loginLink { return nil }
    guard let typed = readSecret(prompt: "password for \(name): "), let again = readSecret(prompt: "again: ") else {
        throw ValidationError("give --password-file FILE or --login-link when not at a terminal")
    }
    guard typed == again else { throw ValidationError("the two passwords differ; run the command again") }
    return typed
}
