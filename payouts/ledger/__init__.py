"""Double-entry ledger: accounts, journals, entries, balances and their invariants."""
