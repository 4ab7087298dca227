"""Central sync server: verifies, decrypts and applies station batches to the double-entry ledger."""
