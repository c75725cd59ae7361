"""The pure decisions of webhook delivery: what an answer means, when to try again, when to
give up on an endpoint, and which addresses a request may go to."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from payouts.notify.decisions import (
    Failing,
    Outcome,
    RetrySchedule,
    address_allowed,
    after_attempt,
    outcome_of,
    retry_after_seconds,
    schedule_for,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SPEC = [5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400]
DAYS_5 = timedelta(days=5)


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    assert list(schedule_for(Settings()).delays) == SPEC


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (299, Outcome.DELIVERED),
        (410, Outcome.GONE),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (400, Outcome.RETRY),  # per the spec, a 4xx is retried too
        (404, Outcome.RETRY),
        (301, Outcome.RETRY),  # redirects are not followed
        (None, Outcome.RETRY),  # timeout, connection refused, address not allowed
    ],
)
def test_what_an_answer_means(status: int | None, outcome: Outcome) -> None:
    assert outcome_of(status) is outcome


@given(st.integers(min_value=1, max_value=50), st.integers(min_value=0, max_value=2**32))
def test_each_delay_stays_within_its_jitter(failures: int, seed: int) -> None:
    schedule = RetrySchedule(SPEC, jitter_percent=20)
    base = SPEC[min(failures, len(SPEC)) - 1]
    delay = schedule.delay(failures, random.Random(seed))
    assert base * 0.8 <= delay <= base * 1.2


def test_past_the_last_tier_every_retry_waits_the_last_delay() -> None:
    schedule = RetrySchedule(SPEC, jitter_percent=0)
    assert [schedule.delay(n) for n in (1, 2, 9, 10, 40)] == [5, 300, 86_400, 86_400, 86_400]


def test_jitter_spreads_endpoints_that_failed_together() -> None:
    schedule = RetrySchedule(SPEC, jitter_percent=20)
    rng = random.Random(7)
    assert len({round(schedule.delay(3, rng), 3) for _ in range(20)}) > 10


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("99999999999999999999", 3600.0),  # capped
        ("Mon, 01 Jun 2026 12:02:00 GMT", 120.0),
        ("Mon, 01 Jun 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("Tue, 02 Jun 2026 12:00:00 GMT", 3600.0),  # capped
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW, cap=3600) == seconds


@given(st.text(max_size=40))
def test_retry_after_never_raises_and_stays_in_bounds(header: str) -> None:
    seconds = retry_after_seconds(header, NOW, cap=600)
    assert seconds is None or 0 <= seconds <= 600


def test_retry_after_makes_the_wait_longer_never_shorter() -> None:
    schedule = RetrySchedule(SPEC, jitter_percent=0, retry_after_cap=3600)
    assert schedule.wait(2, retry_after=10) == 300
    assert schedule.wait(1, retry_after=60) == 60
    assert schedule.wait(1, retry_after=10**9) == 3600


def test_a_delivery_clears_the_failures() -> None:
    decided = after_attempt(
        Outcome.DELIVERED, Failing(4, NOW - timedelta(hours=3)), NOW, RetrySchedule(SPEC), DAYS_5
    )
    assert (decided.failures, decided.retry_at, decided.failing_since) == (0, None, None)
    assert decided.disable_reason is None


def test_a_failure_schedules_the_next_try_and_remembers_since_when() -> None:
    schedule = RetrySchedule(SPEC, jitter_percent=0)
    first = after_attempt(Outcome.RETRY, Failing(0, None), NOW, schedule, DAYS_5)
    assert (first.failures, first.retry_at, first.failing_since) == (
        1,
        NOW + timedelta(seconds=5),
        NOW,
    )
    later = NOW + timedelta(minutes=1)
    second = after_attempt(Outcome.RETRY, Failing(1, NOW), later, schedule, DAYS_5, 900)
    assert second.retry_at == later + timedelta(seconds=900)  # Retry-After beat 5 min
    assert second.failing_since == NOW


def test_410_disables_the_endpoint_at_once() -> None:
    decided = after_attempt(Outcome.GONE, Failing(0, None), NOW, RetrySchedule(SPEC), DAYS_5)
    assert decided.disable_reason is not None
    assert "410" in decided.disable_reason
    assert decided.retry_at is None


def test_an_endpoint_failing_for_days_is_disabled() -> None:
    schedule = RetrySchedule(SPEC, jitter_percent=0)
    since = NOW - DAYS_5 + timedelta(seconds=1)
    still = after_attempt(Outcome.RETRY, Failing(12, since), NOW, schedule, DAYS_5)
    assert still.disable_reason is None
    assert still.retry_at is not None
    gone = after_attempt(
        Outcome.RETRY, Failing(13, since), NOW + timedelta(seconds=1), schedule, DAYS_5
    )
    assert gone.disable_reason is not None
    assert gone.retry_at is None


@given(st.lists(st.floats(min_value=0, max_value=100_000), min_size=1, max_size=30))
def test_a_failing_endpoint_is_always_either_retried_or_disabled(gaps: list[float]) -> None:
    """Whatever the timing of the failures: a retry in the future until the endpoint has
    failed for ``disable_after``, then disabled, never both, never neither."""
    schedule = RetrySchedule(SPEC, jitter_percent=20)
    state = Failing(0, None)
    now = NOW
    for gap in gaps:
        now += timedelta(seconds=gap)
        decided = after_attempt(Outcome.RETRY, state, now, schedule, DAYS_5, rng=random.Random(1))
        assert (decided.retry_at is None) == (decided.disable_reason is not None)
        assert decided.failing_since is not None
        if decided.retry_at is not None:
            assert decided.retry_at >= now
            assert now - decided.failing_since < DAYS_5
        else:
            assert now - decided.failing_since >= DAYS_5
            return
        state = Failing(decided.failures, decided.failing_since)


@pytest.mark.parametrize(
    ("address", "public", "private"),
    [
        ("93.184.216.34", True, True),
        ("2606:2800:220:1:248:1893:25c8:1946", True, True),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("10.1.2.3", False, True),
        ("172.16.0.1", False, True),
        ("192.168.1.1", False, True),
        ("169.254.169.254", False, True),  # link-local: cloud metadata
        ("fe80::1", False, True),
        ("fe80::1%eth0", False, True),
        ("100.64.0.1", False, True),  # carrier-grade NAT
        ("::ffff:127.0.0.1", False, True),  # IPv4-mapped loopback
        ("::ffff:8.8.8.8", True, True),
        ("0.0.0.0", False, False),  # noqa: S104 - an address checked, not bound
        ("224.0.0.1", False, False),  # multicast
        ("ff02::1", False, False),
        ("240.0.0.1", False, False),  # reserved
        ("not-an-ip", False, False),
    ],
)
def test_which_addresses_a_delivery_may_reach(address: str, public: bool, private: bool) -> None:
    assert address_allowed(address, allow_private=False) is public
    assert address_allowed(address, allow_private=True) is private
