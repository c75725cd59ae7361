"""Claims: payouts settled through the PayoutClaims escrow instead of a push batch.

What each address may claim (its vouchers, re-derived from the ledger at any time), the
claims seen on chain and the escrow's funding.
"""
