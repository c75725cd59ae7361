"""Stage 2, roll-up: each closed window's credits become one payout per creator and asset."""
