"""The circuit breaker in front of the RPC node, on real Redis and in process memory.

It opens after N failures in a row, lets no call through while open, lets one probe through
after the pause, and closes on the first success. Time is a fake clock the tests advance: the
breaker compares the deadlines it stored with its clock, so nothing here sleeps.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis.connection

from devstack import Anvil, free_port
from payouts.chain.breaker import CircuitBreaker, MemoryStore, RedisStore, Store
from payouts.chain.client import ChainClient, RpcError
from payouts.errors import CircuitOpen, TransientChainError
from tests.waiting import wait_until

RESET = 30.0  # seconds of fake time: long, to show that no real time is waited for
TICK = 0.001


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Store:
    return RedisStore(redis_url) if request.param == "redis" else MemoryStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def breaker(store: Store, clock: FakeClock, name: str | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        name or uuid.uuid4().hex, store, threshold=3, reset_after=RESET, clock=clock
    )


def trip(circuit: CircuitBreaker) -> None:
    for _ in range(circuit.threshold):
        circuit.failed()
    assert circuit.is_open()


def test_it_opens_after_the_threshold_and_lets_nothing_through(
    store: Store, clock: FakeClock
) -> None:
    circuit = breaker(store, clock)
    for _ in range(2):
        circuit.failed()
        assert circuit.allow()
        assert not circuit.is_open()
    circuit.failed()
    assert circuit.is_open()
    assert not circuit.allow()
    clock.advance(RESET - TICK)  # the whole open period, to its last instant
    assert circuit.is_open()
    assert not circuit.allow()


def test_after_the_pause_one_probe_goes_and_a_success_closes_it(
    store: Store, clock: FakeClock
) -> None:
    name = uuid.uuid4().hex
    circuit = breaker(store, clock, name)
    other_worker = breaker(store, clock, name)  # another worker, same store (Redis: same circuit)
    trip(circuit)
    clock.advance(RESET)
    assert not circuit.is_open()  # half-open
    assert circuit.allow()  # the probe
    assert not circuit.allow()  # only one at a time
    assert not other_worker.allow()
    circuit.succeeded()
    assert circuit.allow()
    assert circuit.allow()
    assert other_worker.allow()


def test_a_failed_probe_opens_it_again(store: Store, clock: FakeClock) -> None:
    circuit = breaker(store, clock)
    trip(circuit)
    clock.advance(RESET)
    assert circuit.allow()
    circuit.failed()
    assert circuit.is_open()
    assert not circuit.allow()
    clock.advance(RESET - TICK)  # a full open period again, counted from the failed probe
    assert not circuit.allow()
    clock.advance(TICK)
    assert circuit.allow()  # the next probe


def test_a_probe_that_never_reports_back_gives_way_to_the_next(
    store: Store, clock: FakeClock
) -> None:
    circuit = breaker(store, clock)
    trip(circuit)
    clock.advance(RESET)
    assert circuit.allow()  # a probe whose worker dies before it reports
    clock.advance(RESET - TICK)
    assert not circuit.allow()
    clock.advance(TICK)
    assert circuit.allow()
    assert not circuit.allow()


@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_workers_racing_for_the_probe_let_exactly_one_through(
    kind: str, redis_url: str, clock: FakeClock
) -> None:
    name = uuid.uuid4().hex
    shared = MemoryStore()
    workers = [
        # on Redis each with its own connection, as separate processes would be
        breaker(RedisStore(redis_url) if kind == "redis" else shared, clock, name)
        for _ in range(16)
    ]
    start = threading.Barrier(len(workers))

    def ask(circuit: CircuitBreaker) -> bool:
        start.wait()
        return circuit.allow()

    with ThreadPoolExecutor(len(workers)) as pool:
        for _ in range(10):  # a lost race is a matter of timing: give it several chances
            trip(workers[0])
            clock.advance(RESET)
            answers = list(pool.map(ask, workers))
            assert answers.count(True) == 1
            workers[answers.index(True)].succeeded()


def test_failures_in_a_row_only_sparse_or_interrupted_ones_do_not_trip_it(
    store: Store, clock: FakeClock
) -> None:
    circuit = breaker(store, clock)
    circuit.failed()
    circuit.failed()
    circuit.succeeded()  # a success ends the streak
    circuit.failed()
    circuit.failed()
    assert circuit.allow()
    clock.advance(10 * RESET)  # a quiet while: the streak is forgotten
    assert circuit.allow()
    circuit.failed()
    circuit.failed()
    assert circuit.allow()
    assert not circuit.is_open()
    circuit.failed()  # three in a row since the quiet while
    assert circuit.is_open()


def test_an_open_circuit_nobody_calls_is_forgotten_after_a_quiet_while(
    store: Store, clock: FakeClock
) -> None:
    circuit = breaker(store, clock)
    trip(circuit)
    clock.advance(10 * RESET)
    assert circuit.allow()
    assert circuit.allow()  # closed, not a probe


def test_processes_share_one_circuit_through_redis(redis_url: str, clock: FakeClock) -> None:
    name = uuid.uuid4().hex
    one = CircuitBreaker(name, RedisStore(redis_url), threshold=2, reset_after=5, clock=clock)
    other = CircuitBreaker(name, RedisStore(redis_url), threshold=2, reset_after=5, clock=clock)
    one.failed()
    other.failed()
    assert not one.allow()
    assert not other.allow()
    assert other.is_open()
    clock.advance(5)  # the deadline is a stored value: both see the same one
    assert other.allow()  # the probe
    assert not one.allow()
    other.succeeded()
    assert one.allow()
    assert not one.is_open()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every command (or pipeline) a Redis client sends from now on: one per round trip."""
    sent: list[object] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(
        self: redis.connection.AbstractConnection, command: object, *a: Any, **kw: Any
    ) -> None:
        sent.append(command)
        send(self, command, *a, **kw)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return sent


def test_round_trips_to_redis_per_call(
    redis_url: str, clock: FakeClock, round_trips: list[object]
) -> None:
    store = RedisStore(redis_url)
    circuit = breaker(store, clock)
    store.get("warm-up")  # the connection's own handshake is not the breaker's

    def trips(action: Callable[[], object]) -> int:
        round_trips.clear()
        action()
        return len(round_trips)

    assert trips(circuit.allow) == 1  # closed and clean: one MGET ...
    assert trips(circuit.succeeded) == 0  # ... and nothing to clear after a success
    assert trips(circuit.failed) == 1
    assert trips(circuit.allow) == 1
    assert trips(circuit.succeeded) == 1  # a failure was seen: clear it
    circuit.failed()
    circuit.failed()
    assert trips(circuit.failed) == 2  # the one that opens the circuit
    assert trips(circuit.allow) == 1  # open
    clock.advance(RESET)
    assert trips(circuit.allow) == 2  # half-open: MGET, then taking the probe
    assert trips(circuit.allow) == 1  # another caller, while the probe is out
    assert trips(circuit.is_open) == 1


def test_an_error_answer_from_the_node_counts_as_a_success(
    redis_url: str, anvil: Anvil, clock: FakeClock
) -> None:
    circuit = breaker(RedisStore(redis_url), clock)
    client = ChainClient(anvil.url, timeout=5, breaker=circuit)
    trip(circuit)
    clock.advance(RESET)
    with pytest.raises(RpcError):
        client.rpc("eth_noSuchMethod", [])  # the probe: the node is up, it just said no
    assert not circuit.is_open()
    assert client.chain_id() == 31337
    assert client.chain_id() == 31337  # closed: not one probe at a time


def test_a_client_stops_calling_a_dead_node_and_resumes_when_it_answers(
    redis_url: str, state_dir: Path
) -> None:
    port = free_port()
    # The real clock (time.time) here, the breaker's default.
    circuit = CircuitBreaker(uuid.uuid4().hex, RedisStore(redis_url), threshold=3, reset_after=1)
    client = ChainClient(f"http://127.0.0.1:{port}", timeout=1, breaker=circuit)
    with pytest.raises(TransientChainError) as first:
        client.block_number()  # nobody listens: tenacity's three tries trip the breaker
    assert not isinstance(first.value, CircuitOpen)
    started = time.monotonic()
    with pytest.raises(CircuitOpen):
        client.block_number()
    assert time.monotonic() - started < 0.1  # refused without touching the network
    with Anvil(port=port, state_dir=state_dir) as node:
        assert node.port == port
        wait_until(lambda: not circuit.is_open(), timeout=10, what="the open period to end")
        assert client.block_number() == 0  # the probe finds the node and closes the circuit
        assert not circuit.is_open()
        assert client.chain_id() == 31337
