"""A real Celery worker and beat against a chain the test controls.

``chain`` turns automine off and mines in a thread (a block every ``interval`` seconds), so a
test can pause block production, spike the base fee or reorganise the chain while the
workers run as they would in production.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

import devstack
from config.settings import Settings
from devstack import processes
from payouts.chain.client import ChainClient
from payouts.db.migrate import grant_app_login
from payouts.runtime import Runtime
from tests.chainkit import assert_books_balance, assert_chain_pays_what_the_ledger_says, scalar
from tests.conftest import chain_settings, settings_env


@dataclass
class Miner:
    chain: ChainClient
    interval: float = 0.3
    paused: bool = False
    spike_base_fee: int | None = None  # while set, every block is mined at this base fee
    _stop: threading.Event = field(default_factory=threading.Event)
    _mining: threading.Lock = field(default_factory=threading.Lock)  # held while mining a block

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._mining:
                if self.paused:
                    continue
                if self.spike_base_fee is not None:
                    self.chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(self.spike_base_fee)])
                self.chain.rpc("evm_mine", [])

    def pause(self) -> None:
        """Stop mining; on return no block is being mined (one under way has been mined), so
        the head stays where it is until ``paused`` is False again."""
        with self._mining:
            self.paused = True

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def chain(anvil: devstack.Anvil) -> Iterator[Miner]:
    client = ChainClient(anvil.url)
    client.rpc("evm_setAutomine", [False])
    miner = Miner(client)
    thread = threading.Thread(target=miner.run, daemon=True)
    thread.start()
    try:
        yield miner
    finally:
        miner.stop()
        thread.join(5)
        client.rpc("evm_setAutomine", [True])


def stack_settings(
    db_url: str,
    rpc_url: str,
    deployment: devstack.DevDeployment,
    redis_url: str,
    state_dir: Path,
    **overrides: object,
) -> Settings:
    """Settings for fast feedback: every schedule at about a second, short retry tiers."""
    values: dict[str, object] = {
        "redis_url": redis_url,
        "state_dir": str(state_dir),
        "settle_interval_seconds": 1,
        "reconcile_interval_seconds": 1,
        "watch_interval_seconds": 1,
        "resubmit_grace_seconds": 3,
        "confirmation_depth": 1,
        "finality_depth": 3,
        "submit_retry_delays_seconds": [1, 2, 2],
        "submit_retry_jitter_percent": 0,
        "breaker_failure_threshold": 3,
        "breaker_reset_seconds": 1,
        **overrides,
    }
    return chain_settings(db_url, rpc_url, deployment, **values)


@pytest.fixture
def make_stack(
    db_url: str,
    anvil: devstack.Anvil,
    deployment: devstack.DevDeployment,
    redis_url: str,
    state_dir: Path,
) -> Callable[..., Runtime]:
    """The runtime of a stack named ``name`` (its logs go to state_dir/name)."""

    def make(name: str, **overrides: object) -> Runtime:
        return Runtime(
            stack_settings(db_url, anvil.url, deployment, redis_url, state_dir / name, **overrides)
        )

    return make


_logins = itertools.count()


@contextlib.contextmanager
def as_app_role(db_url: str) -> Iterator[str]:
    """The database as production's workers reach it: a login member of ``payouts_app``
    (migration 0012), which may not rewrite the ledger and may UPDATE only the columns each
    stage moves. A stage that needs a grant it lacks fails the worker tests, not compose."""
    owner = make_url(db_url)
    # One login per use: two processes started side by side each drop only their own.
    role = f"app_{next(_logins)}_{owner.database}"[:63]
    url = owner.set(username=role, password="app").render_as_string(hide_password=False)
    grant_app_login(db_url, url)
    try:
        yield url
    finally:
        args = owner.translate_connect_args(username="user", database="dbname")
        with psycopg.connect(**args, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@contextlib.contextmanager
def running(settings: Settings, *, beat: bool = True) -> Iterator[None]:
    """A worker (and beat) on ``settings``, connected as the app role; queues emptied first,
    processes stopped after. Their logs are in ``settings.state_dir``."""
    assert settings.redis_url is not None
    assert settings.database_url is not None
    state_dir = settings.state_dir
    processes.purge_queues(settings, settings.redis_url)
    with as_app_role(settings.database_url) as app_url:
        env = {**settings_env(settings), "PAYOUTS_DATABASE_URL": app_url}
        worker = processes.start_celery("worker", env, state_dir)
        scheduler = processes.start_celery("beat", env, state_dir) if beat else None
        try:
            yield
        finally:
            if scheduler is not None:
                processes.stop(scheduler)
            processes.stop(worker)


def count(rt: Runtime, sql: str) -> int:
    return scalar(rt, f"SELECT count(*) FROM {sql}")


def assert_paid_exactly_once(rt: Runtime, recipients: dict[str, str]) -> None:
    assert count(rt, "credit_states WHERE state <> 'paid'") == 0
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)
