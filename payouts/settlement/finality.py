"""Business finality: how deep a batch must be before the ledger calls it paid. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import Settings


@dataclass(frozen=True)
class FinalityRule:
    """Business finality: the default depth, deeper for larger payouts (tiers by amount)."""

    default_depth: int
    tiers: Sequence[tuple[int, int]] = ()  # (at least this amount, this depth)

    def depth_for(self, amount: int) -> int:
        deeper = [depth for at_least, depth in self.tiers if amount >= at_least]
        return max([self.default_depth, *deeper])


def finality_for(settings: Settings, symbol: str) -> FinalityRule:
    tiers = settings.asset(symbol).finality_tiers
    return FinalityRule(settings.finality_depth, [(t.at_least, t.depth) for t in tiers])
