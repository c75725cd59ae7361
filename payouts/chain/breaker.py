"""A circuit breaker for the RPC node, shared by every worker process through Redis.

After ``threshold`` failures in a row (connection refused, timeouts, 5xx) the circuit opens:
for ``reset_after`` seconds no call reaches the node, callers get ``CircuitOpen`` at once and
their task waits in its retry tier. Then one caller at a time may probe; a success closes the
circuit, a failure opens it again. A node that answers with an error (a revert, a nonce too
low) is up, and counts as a success.

Without Redis (a CLI run, ledger-only tests) the same logic runs on a per-process store.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import redis


class Store(Protocol):
    def incr(self, key: str, ttl_ms: int) -> int: ...
    def exists(self, key: str) -> bool: ...
    def count(self, key: str) -> int: ...
    def set_nx(self, key: str, ttl_ms: int) -> bool: ...
    def set(self, key: str, ttl_ms: int) -> None: ...
    def delete(self, *keys: str) -> None: ...


class CircuitBreaker:
    def __init__(self, name: str, store: Store, *, threshold: int, reset_after: float) -> None:
        self.threshold = threshold
        self.reset_ms = max(1, int(reset_after * 1000))
        self._store = store
        self._failures = f"breaker:{name}:failures"
        self._open = f"breaker:{name}:open"
        self._probe = f"breaker:{name}:probe"

    def allow(self) -> bool:
        """Whether a call may go to the node now (in the half-open state, one caller may)."""
        if self._store.exists(self._open):
            return False
        if self._store.count(self._failures) >= self.threshold:
            return self._store.set_nx(self._probe, self.reset_ms)
        return True

    def is_open(self) -> bool:
        return self._store.exists(self._open)

    def failed(self) -> None:
        # Failures are forgotten after a quiet while, so sparse blips never add up to a trip.
        failures = self._store.incr(self._failures, self.reset_ms * 10)
        if failures >= self.threshold:
            self._store.set(self._open, self.reset_ms)
            self._store.delete(self._probe)

    def succeeded(self) -> None:
        self._store.delete(self._failures, self._probe, self._open)


class RedisStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def incr(self, key: str, ttl_ms: int) -> int:
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.pexpire(key, ttl_ms)
        return int(pipe.execute()[0])

    def exists(self, key: str) -> bool:
        return bool(self._redis.exists(key))

    def count(self, key: str) -> int:
        value = self._redis.get(key)
        return int(value) if value is not None else 0

    def set_nx(self, key: str, ttl_ms: int) -> bool:
        return bool(self._redis.set(key, 1, nx=True, px=ttl_ms))

    def set(self, key: str, ttl_ms: int) -> None:
        self._redis.set(key, 1, px=ttl_ms)

    def delete(self, *keys: str) -> None:
        self._redis.delete(*keys)


class MemoryStore:
    """The same semantics for one process: values with a deadline on the monotonic clock."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> int | None:
        entry = self._values.get(key)
        if entry is None or entry[1] <= time.monotonic():
            self._values.pop(key, None)
            return None
        return entry[0]

    def incr(self, key: str, ttl_ms: int) -> int:
        with self._lock:
            value = (self._live(key) or 0) + 1
            self._values[key] = (value, time.monotonic() + ttl_ms / 1000)
            return value

    def exists(self, key: str) -> bool:
        with self._lock:
            return self._live(key) is not None

    def count(self, key: str) -> int:
        with self._lock:
            return self._live(key) or 0

    def set_nx(self, key: str, ttl_ms: int) -> bool:
        with self._lock:
            if self._live(key) is not None:
                return False
            self._values[key] = (1, time.monotonic() + ttl_ms / 1000)
            return True

    def set(self, key: str, ttl_ms: int) -> None:
        with self._lock:
            self._values[key] = (1, time.monotonic() + ttl_ms / 1000)

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._values.pop(key, None)
