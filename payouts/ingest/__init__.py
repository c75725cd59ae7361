"""Stage 1, ingest: marketplaces' earnings become credits in the ledger, exactly once per key."""
