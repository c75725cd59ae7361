"""How many payouts go into the next transaction: a pure policy, no I/O.

The policy starts from a per-recipient gas model, and the chain's own gas estimate for the
candidate batch has the last word: a candidate whose estimate (plus headroom) would pass the
per-transaction gas cap is shrunk in proportion and estimated again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BatchPolicy:
    gas_cap: int  # per-transaction gas cap (EIP-7825: 2**24)
    max_size: int  # hard ceiling on payouts per transaction
    headroom_percent: int = 20  # gas limit = estimate + headroom, and must stay under the cap
    base_gas: int = 60_000  # intrinsic cost plus the batcher's fixed work
    gas_per_payout: int = 30_000  # model of a fresh recipient; corrected by estimates

    def gas_limit(self, estimate: int) -> int:
        return estimate * (100 + self.headroom_percent) // 100

    def fits(self, estimate: int) -> bool:
        return self.gas_limit(estimate) <= self.gas_cap

    def budget(self) -> int:
        """The largest estimate whose gas limit still fits under the cap."""
        return self.gas_cap * 100 // (100 + self.headroom_percent)

    def first_guess(self, available: int) -> int:
        by_gas = max(1, (self.budget() - self.base_gas) // self.gas_per_payout)
        return max(0, min(available, self.max_size, by_gas))

    def shrink(self, size: int, estimate: int) -> int:
        """A smaller size for a candidate whose estimate did not fit; always makes progress."""
        if size <= 1:
            return 0
        per_payout = max(1, -(-(estimate - self.base_gas) // size))  # rounded up
        proposed = (self.budget() - self.base_gas) // per_payout
        return max(0, min(size - 1, proposed))

    def learn(self, size: int, estimate: int) -> BatchPolicy:
        """Fold a real estimate into the per-payout model, so the next guess starts closer."""
        if size <= 0:
            return self
        per_payout = max(1, (estimate - min(self.base_gas, estimate)) // size)
        return replace(self, gas_per_payout=per_payout)
