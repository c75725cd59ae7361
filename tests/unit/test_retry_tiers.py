"""Retry tiers: each failed try waits longer, in its own queue, spread by jitter."""

from __future__ import annotations

import random

import pytest

from payouts.submission.tiers import RetryTiers, label

TIERS = RetryTiers([15, 60, 300, 1800, 7200], jitter_percent=20)


def test_each_tier_has_its_own_queue_and_tier_zero_is_the_submit_queue() -> None:
    assert TIERS.queues() == [
        "submit",
        "submit-retry-15s",
        "submit-retry-1m",
        "submit-retry-5m",
        "submit-retry-30m",
        "submit-retry-2h",
    ]
    assert TIERS.last == 5


@pytest.mark.parametrize(("seconds", "text"), [(1, "1s"), (90, "90s"), (120, "2m"), (3600, "1h")])
def test_labels(seconds: int, text: str) -> None:
    assert label(seconds) == text


@pytest.mark.parametrize("tier", [1, 2, 3, 4, 5])
def test_delays_stay_within_the_jitter_and_spread_out(tier: int) -> None:
    rng = random.Random(tier)
    base = TIERS.delays[tier - 1]
    delays = [TIERS.delay(tier, rng) for _ in range(200)]
    assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
    assert max(delays) - min(delays) > base * 0.2  # not one wave


def test_no_jitter_means_the_exact_delay() -> None:
    assert RetryTiers([5], jitter_percent=0).delay(1) == 5
