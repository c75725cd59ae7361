"""Which windows to roll up and when a balance is worth paying: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class PayoutRule:
    """When a balance is worth paying, and in what steps."""

    min_payout: int
    rounding_unit: int = 1


@dataclass(frozen=True)
class RollupResult:
    window_start: datetime
    window_end: datetime
    created: bool  # False: this window was rolled up before
    payouts: int
    credits: int
    total: int


def window_for(now: datetime, window_seconds: int) -> tuple[datetime, datetime]:
    """The last window that has fully closed at ``now``."""
    epoch = int(now.timestamp())
    end = epoch - epoch % window_seconds
    start = end - window_seconds
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def due_windows(last_end: datetime | None, now: datetime, window_seconds: int) -> list[datetime]:
    """Window starts from ``last_end`` up to the last closed window, to catch up after downtime."""
    _, end = window_for(now, window_seconds)
    if last_end is None:
        return [end - timedelta(seconds=window_seconds)]
    starts = []
    cursor = last_end
    while cursor + timedelta(seconds=window_seconds) <= end:
        starts.append(cursor)
        cursor += timedelta(seconds=window_seconds)
    return starts
