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


def bumped(
    old: Fees, *, base_fee: int, priority_fee: int, bump_bps: int, max_fee_cap: int
) -> Fees | None:
    """Fees for a replacement of a transaction sent with ``old``: both the tip and the max fee
    raised by at least ``bump_bps`` (nodes refuse less than +10%), the max fee at least enough
    for today's base fee, never above the cap. None when the cap leaves no room for a bump."""
    tip = max(_raised(old.max_priority_fee_per_gas, bump_bps), priority_fee)
    max_fee = max(_raised(old.max_fee_per_gas, bump_bps), 2 * base_fee + tip)
    max_fee = min(max_fee, max_fee_cap)
    tip = min(tip, max_fee)
    if max_fee < _raised(old.max_fee_per_gas, bump_bps) or tip < _raised(
        old.max_priority_fee_per_gas, bump_bps
    ):
        return None
    return Fees(max_fee_per_gas=max_fee, max_priority_fee_per_gas=tip)


def _raised(value: int, bps: int) -> int:
    return -(-value * (10_000 + bps) // 10_000)  # rounded up: a bump is never short of bps
