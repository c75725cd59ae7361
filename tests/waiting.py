"""Waiting in tests: on a condition, with a deadline, never a blind sleep.

``wait_until`` waits for something to happen. ``assert_stays`` is for a test that must show
something does *not* happen: absence sends no signal to wait for, so it is watched over a
fixed window (monotonic clock), failing the moment the condition breaks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """What a test waited for did not happen in time."""


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.05, what: str
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that; fail naming
    ``what`` once ``timeout`` seconds have passed. Its exceptions are not swallowed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
        time.sleep(min(interval, remaining))


def assert_stays(
    predicate: Callable[[], object], *, seconds: float, interval: float = 0.05, what: str
) -> None:
    """Check ``predicate`` throughout the next ``seconds``; fail naming ``what`` as soon as it
    is false."""
    started = time.monotonic()
    deadline = started + seconds
    while True:
        if not predicate():
            elapsed = time.monotonic() - started
            raise AssertionError(f"{what}: no longer true after {elapsed:.2f} s of {seconds:g} s")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(interval, remaining))
