import OutpostConsole
import OutpostForwarder
import OutpostRelay
import OutpostStore

/// The modules that keep tables in a store's index (the relay's machine catalog and retention, the forwarder's ledger) register
/// their migrations before any command opens a store: every store then carries the whole schema of
/// docs/format.md §9, a local one included, as it always has.
func registerIndexMigrations() {
    StoreIndex.registerMigrations(
        MachineCatalog.migrations + ForwardingLedger.migrations + RetentionSettings.migrations + ProtectionGroups.migrations
            + AlertBook.migrations + ConsoleAccounts.migrations)
}
