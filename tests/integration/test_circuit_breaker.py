"""The circuit breaker in front of the RPC node, on real Redis and in process memory.

It opens after N failures in a row, lets no call through while open, lets one probe through
after the pause, and closes on the first success.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from devstack import Anvil, free_port
from payouts.chain.breaker import CircuitBreaker, MemoryStore, RedisStore, Store
from payouts.chain.client import ChainClient
from payouts.errors import CircuitOpen, TransientChainError


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Store:
    return RedisStore(redis_url) if request.param == "redis" else MemoryStore()


def breaker(store: Store, reset_after: float = 0.3) -> CircuitBreaker:
    return CircuitBreaker(uuid.uuid4().hex, store, threshold=3, reset_after=reset_after)


def test_it_opens_after_the_threshold_and_lets_nothing_through(store: Store) -> None:
    circuit = breaker(store)
    for _ in range(2):
        circuit.failed()
        assert circuit.allow()
    circuit.failed()
    assert circuit.is_open()
    assert not circuit.allow()


def test_after_the_pause_one_probe_goes_and_a_success_closes_it(store: Store) -> None:
    circuit = breaker(store)
    for _ in range(3):
        circuit.failed()
    time.sleep(0.4)
    assert circuit.allow()  # the probe
    assert not circuit.allow()  # only one at a time
    circuit.succeeded()
    assert circuit.allow()
    assert circuit.allow()


def test_a_failed_probe_opens_it_again(store: Store) -> None:
    circuit = breaker(store)
    for _ in range(3):
        circuit.failed()
    time.sleep(0.4)
    assert circuit.allow()
    circuit.failed()
    assert circuit.is_open()
    assert not circuit.allow()


def test_processes_share_one_circuit_through_redis(redis_url: str) -> None:
    name = uuid.uuid4().hex
    one = CircuitBreaker(name, RedisStore(redis_url), threshold=2, reset_after=5)
    other = CircuitBreaker(name, RedisStore(redis_url), threshold=2, reset_after=5)
    one.failed()
    other.failed()
    assert not one.allow()
    assert not other.allow()


def test_a_client_stops_calling_a_dead_node_and_resumes_when_it_answers(
    redis_url: str, state_dir: Path
) -> None:
    port = free_port()
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
        time.sleep(1.1)
        assert client.block_number() == 0  # the probe finds the node and closes the circuit
        assert not circuit.is_open()
        assert client.chain_id() == 31337
