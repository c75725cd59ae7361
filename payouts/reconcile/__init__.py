"""Stage 5, reconciliation: the chain's logs matched back to batches (scan), then confirmed,
finalized into the ledger, or unwound after a reorg (finality)."""
