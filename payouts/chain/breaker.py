"""A circuit breaker for the RPC node, shared by every worker process through Redis.

After ``threshold`` failures in a row (connection refused, timeouts, 5xx) the circuit opens:
for ``reset_after`` seconds no call reaches the node, callers get ``CircuitOpen`` at once and
their task waits in its retry tier. Then one caller at a time may probe; a success closes the
circuit, a failure opens it again. A node that answers with an error (a revert, a nonce too
low) is up, and counts as a success. Failures are forgotten after a quiet while (ten times
``reset_after`` without one), so sparse blips never add up to a trip.

Without Redis (a CLI run, ledger-only tests) the same logic runs on a per-process store.

Time is ``clock()``: wall-clock seconds (``time.time`` unless a test passes its own), which,
unlike the monotonic clock, means the same in every process. The store keeps deadlines as
values and the breaker compares them with ``clock()``:

- ``gate``: ``open <until>`` while open, ``probe <until>`` while one caller's probe is out
  (a probe that never reports back gives way to the next one at ``until``); an expired gate
  is the half-open state. One key for both, so taking the probe is one compare-and-set on
  exactly what ``allow()`` read: a failure that opened the circuit again in between wins.
- ``failures`` and ``failed_at``: the streak's length and the time of its last failure.

Keys also get a TTL, only so that an abandoned circuit's keys go away: twice the quiet while,
well after anything they hold has stopped meaning anything. Nothing is decided by a key
expiring, so a test advances a fake clock instead of sleeping, and a wall clock stepping back
cannot keep a circuit open for longer than that TTL.

Redis round trips: ``allow()`` one MGET (a second, the compare-and-set, only to take a
probe); ``failed()`` one script call (a second, SET, when it opens the circuit);
``succeeded()`` one DEL, or none when this thread's ``allow()`` just read a clean circuit
(nothing to clear: the common case costs one round trip per RPC call).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import redis
from prometheus_client import Counter

from payouts.errors import BrokerUnavailable

QUIET_PERIODS = 10  # failures are forgotten after this many reset periods without one

OPEN = "open"
PROBE = "probe"

OPENED = Counter("payouts_rpc_circuit_opened", "Times this process opened the RPC circuit")


class Store(Protocol):
    """Where a circuit's state lives. Values are strings; ``ttl_ms`` only collects garbage."""

    def get(self, *keys: str) -> list[str | None]:
        """The keys' values, in one read."""
        ...

    def incr_streak(
        self, counter: str, stamp: str, *, now: float, since: float, ttl_ms: int
    ) -> int:
        """Atomically: add one to ``counter`` if ``stamp`` holds a time after ``since``, else
        start it again at 1; then stamp ``now``. Returns the counter."""
        ...

    def set(self, key: str, value: str, ttl_ms: int) -> None: ...

    def compare_and_set(self, key: str, expected: str | None, value: str, ttl_ms: int) -> bool:
        """Set ``key`` to ``value`` only if it still holds ``expected`` (None: absent)."""
        ...

    def delete(self, *keys: str) -> None: ...


def _gate(kind: str, until: float) -> str:
    return f"{kind} {until!r}"


def _read_gate(value: str | None) -> tuple[str | None, float]:
    if value is None:
        return None, -math.inf
    kind, _, until = value.partition(" ")
    return kind, float(until)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        store: Store,
        *,
        threshold: int,
        reset_after: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self.quiet = QUIET_PERIODS * reset_after
        self._gc_ms = max(1, math.ceil(2 * self.quiet * 1000))
        self._clock = clock
        self._store = store
        self._failures = f"breaker:{name}:failures"
        self._failed_at = f"breaker:{name}:failed_at"
        self._gate = f"breaker:{name}:gate"
        self._seen = threading.local()  # per thread: did allow() just read a clean circuit?

    def allow(self) -> bool:
        """Whether a call may go to the node now (in the half-open state, one caller may)."""
        now = self._clock()
        failures, failed_at, gate = self._store.get(self._failures, self._failed_at, self._gate)
        self._seen.clean = failures is None and failed_at is None and gate is None
        if failed_at is None or float(failed_at) <= now - self.quiet:
            return True  # no failure lately (or the streak was forgotten): closed
        kind, until = _read_gate(gate)
        if now < until:
            return False  # open, or another caller's probe is out
        if kind is None and int(failures or 0) < self.threshold:
            return True  # closed, counting failures
        # Half-open: the open period (or the last probe's lease) is over; one caller takes it.
        return self._store.compare_and_set(
            self._gate, gate, _gate(PROBE, now + self.reset_after), self._gc_ms
        )

    def is_open(self) -> bool:
        kind, until = _read_gate(self._store.get(self._gate)[0])
        return kind == OPEN and self._clock() < until

    def failed(self) -> None:
        self._seen.clean = False
        now = self._clock()
        failures = self._store.incr_streak(
            self._failures, self._failed_at, now=now, since=now - self.quiet, ttl_ms=self._gc_ms
        )
        if failures >= self.threshold:
            # Opening replaces a probe's lease too: whoever held it is no longer the one probe.
            self._store.set(self._gate, _gate(OPEN, now + self.reset_after), self._gc_ms)
            OPENED.inc()

    def succeeded(self) -> None:
        if getattr(self._seen, "clean", False):
            # This call went through a clean circuit: nothing to clear. Failures that other
            # callers recorded while it was out stand (the next success that saw them clears
            # them), as if this success had come first.
            return
        self._store.delete(self._failures, self._failed_at, self._gate)


# KEYS: counter, stamp. ARGV: since, now, ttl_ms.
_INCR_STREAK = """
local last = tonumber(redis.call('GET', KEYS[2]))
local count
if last and last > tonumber(ARGV[1]) then
    count = redis.call('INCR', KEYS[1])
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
    count = 1
    redis.call('SET', KEYS[1], 1, 'PX', ARGV[3])
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return count
"""

# KEYS: key. ARGV: '1' if a value is expected (else the key must be absent), expected, value,
# ttl_ms.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if (ARGV[1] == '0' and current == false) or (ARGV[1] == '1' and current == ARGV[2]) then
    redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
    return 1
end
return 0
"""


@contextmanager
def _broker() -> Iterator[None]:
    """Redis errors leave as the project's (recoverable) ``BrokerUnavailable``."""
    try:
        yield
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"redis unavailable: {type(exc).__name__}") from exc


class RedisStore:
    """Each method is one round trip (the scripts run atomically on the server)."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def get(self, *keys: str) -> list[str | None]:
        with _broker():
            values = self._redis.mget(keys)
        return [v.decode() if isinstance(v, bytes) else v for v in values]

    def incr_streak(
        self, counter: str, stamp: str, *, now: float, since: float, ttl_ms: int
    ) -> int:
        with _broker():
            return int(
                self._redis.eval(_INCR_STREAK, 2, counter, stamp, repr(since), repr(now), ttl_ms)
            )

    def set(self, key: str, value: str, ttl_ms: int) -> None:
        with _broker():
            self._redis.set(key, value, px=ttl_ms)

    def compare_and_set(self, key: str, expected: str | None, value: str, ttl_ms: int) -> bool:
        flag = "0" if expected is None else "1"
        with _broker():
            return bool(
                self._redis.eval(_COMPARE_AND_SET, 1, key, flag, expected or "", value, ttl_ms)
            )

    def delete(self, *keys: str) -> None:
        with _broker():
            self._redis.delete(*keys)


class MemoryStore:
    """The same operations for one process. TTLs run on the monotonic clock, as collection
    only (the breaker's decisions compare the deadlines it stored with its own clock)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> str | None:
        entry = self._values.get(key)
        if entry is None or entry[1] <= time.monotonic():
            self._values.pop(key, None)
            return None
        return entry[0]

    def _put(self, key: str, value: str, ttl_ms: int) -> None:
        self._values[key] = (value, time.monotonic() + ttl_ms / 1000)

    def get(self, *keys: str) -> list[str | None]:
        with self._lock:
            return [self._live(key) for key in keys]

    def incr_streak(
        self, counter: str, stamp: str, *, now: float, since: float, ttl_ms: int
    ) -> int:
        with self._lock:
            last = self._live(stamp)
            count = int(self._live(counter) or 0) + 1 if last and float(last) > since else 1
            self._put(counter, str(count), ttl_ms)
            self._put(stamp, repr(now), ttl_ms)
            return count

    def set(self, key: str, value: str, ttl_ms: int) -> None:
        with self._lock:
            self._put(key, value, ttl_ms)

    def compare_and_set(self, key: str, expected: str | None, value: str, ttl_ms: int) -> bool:
        with self._lock:
            if self._live(key) != expected:
                return False
            self._put(key, value, ttl_ms)
            return True

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._values.pop(key, None)
