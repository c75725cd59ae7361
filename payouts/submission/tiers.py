"""Staggered retries of a failed submission: tiers of growing delay, each with jitter.

Tier 0 is the first try. A failure moves the batch to the next tier (its own queue, so a
backlog of retries never delays fresh submissions and each tier can be watched on its own);
after the last tier the batch is parked for an operator. Jitter spreads the retries of many
batches that failed together (a node outage) so they do not come back as one wave.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import Settings


def label(seconds: int) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class RetryTiers:
    delays: Sequence[int]  # seconds, tier 1 first
    jitter_percent: int = 20

    @property
    def last(self) -> int:
        return len(self.delays)

    def queue(self, tier: int) -> str:
        """The queue a tier's retries wait in; tier 0 is the ordinary submit queue."""
        if tier == 0:
            return "submit"
        return f"submit-retry-{label(self.delays[tier - 1])}"

    def queues(self) -> list[str]:
        return [self.queue(t) for t in range(self.last + 1)]

    def delay(self, tier: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the try of ``tier`` (>= 1), jittered +-jitter_percent."""
        base = self.delays[tier - 1]
        spread = base * self.jitter_percent / 100
        return max(0.0, base + (rng or random).uniform(-spread, spread))


def tiers_for(settings: Settings) -> RetryTiers:
    return RetryTiers(settings.submit_retry_delays_seconds, settings.submit_retry_jitter_percent)
