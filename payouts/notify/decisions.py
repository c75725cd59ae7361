"""What a webhook delivery's outcome means, and when the endpoint is tried next: facts in, a
decision out, no I/O.

- ``outcome_of``: 2xx delivered; 410 Gone disables the endpoint (the receiver said it is gone
  for good); anything else (429, 5xx, any other 4xx, a timeout, a refused or dropped
  connection, an address not allowed) is a failure to retry, as the Standard Webhooks
  specification asks (a receiver's 4xx is often a deploy gone wrong, not a verdict).
- ``RetrySchedule``: the spec's schedule (now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
  20 h, 24 h), each delay jittered so endpoints that failed together do not come back as one
  wave; past the last tier every retry waits the last delay. A receiver's ``Retry-After``
  (seconds or an HTTP date) is honoured up to a cap, never making the wait shorter.
- ``after_attempt``: the endpoint's next state: advance, retry at a time, or be disabled,
  because it answered 410 or because it has failed for longer than ``disable_after``.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

from config.settings import Settings


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"  # 410: the endpoint is disabled


def outcome_of(status: int | None) -> Outcome:
    """An HTTP status (None: no answer at all: timeout, connection error, refused address)."""
    if status is not None and 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.GONE
    return Outcome.RETRY


def retry_after_seconds(header: str | None, now: datetime, cap: float) -> float | None:
    """A ``Retry-After`` header as seconds from ``now`` (delta-seconds or an HTTP date),
    at most ``cap``; None when absent or unreadable. ``now`` is timezone-aware."""
    if header is None:
        return None
    value = header.strip()
    if value.isascii() and value.isdigit():
        seconds = float(int(value[:12]))  # a 1e100 wait is the cap anyway
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)


@dataclass(frozen=True)
class RetrySchedule:
    delays: Sequence[float]  # seconds before the try after the n-th failure, n = 1 first
    jitter_percent: int = 20
    retry_after_cap: float = 86_400.0

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (>= 1), jittered."""
        base = self.delays[min(max(failures, 1), len(self.delays)) - 1]
        spread = base * self.jitter_percent / 100
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def wait(
        self, failures: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """The wait after a failure: the schedule's, or longer if the receiver asked."""
        scheduled = self.delay(failures, rng)
        if retry_after is None:
            return scheduled
        return max(scheduled, min(retry_after, self.retry_after_cap))


def schedule_for(settings: Settings) -> RetrySchedule:
    return RetrySchedule(
        tuple(settings.webhook_retry_delays_seconds),
        settings.webhook_retry_jitter_percent,
        settings.webhook_retry_after_max_seconds,
    )


@dataclass(frozen=True)
class Failing:
    """Where the endpoint stands before the attempt."""

    failures: int  # failed tries of the head event in a row
    failing_since: datetime | None  # the first of the endpoint's failures in a row


@dataclass(frozen=True)
class Next:
    """What the attempt leaves the endpoint with."""

    outcome: Outcome
    failures: int
    retry_at: datetime | None
    failing_since: datetime | None
    disable_reason: str | None = None


def after_attempt(
    outcome: Outcome,
    before: Failing,
    now: datetime,
    schedule: RetrySchedule,
    disable_after: timedelta,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> Next:
    """The endpoint's state after one attempt at its head event."""
    if outcome is Outcome.DELIVERED:
        return Next(outcome, 0, None, None)
    since = before.failing_since or now
    if outcome is Outcome.GONE:
        return Next(outcome, before.failures + 1, None, since, "the receiver answered 410 Gone")
    failures = before.failures + 1
    if now - since >= disable_after:
        return Next(
            outcome,
            failures,
            None,
            since,
            f"failing since {since.isoformat()} ({failures} tries of the same event)",
        )
    wait = schedule.wait(failures, retry_after, rng)
    return Next(outcome, failures, now + timedelta(seconds=wait), since)


def address_allowed(address: str, allow_private: bool) -> bool:
    """Whether a delivery may connect to ``address`` (an IP, as resolved): only global unicast
    addresses unless the operator allows private ones (loopback, RFC 1918, link-local, ...).
    Multicast, unspecified and reserved addresses are never a receiver."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        return False
    if ip.is_global:
        return True
    if ip.is_loopback or ip.is_link_local:
        return allow_private
    return allow_private and not ip.is_reserved
