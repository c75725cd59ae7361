"""Stage 4, submission: a sealed batch signed on its nonce lane, stored, sent, watched,
replaced when stuck, retried in staggered tiers, and parked for an operator at the end."""
