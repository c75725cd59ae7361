"""EIP-1559 fees for a new transaction, within the configured ceiling."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    @property
    def affordable(self) -> bool:
        return self.max_fee_per_gas >= self.max_priority_fee_per_gas


def fees_for(base_fee: int, priority_fee: int, max_fee_cap: int) -> Fees:
    """Tip plus twice the base fee (room for six full blocks of +12.5%), never above the cap."""
    tip = min(priority_fee, max_fee_cap)
    return Fees(max_fee_per_gas=min(max_fee_cap, 2 * base_fee + tip), max_priority_fee_per_gas=tip)
