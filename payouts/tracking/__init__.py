"""Tracking: reading the pipeline back, for marketplaces (a payout's state, transaction and
block) and operators (status, the ledger's proof, one item's whole trace)."""
