"""Fixtures over real services: PostgreSQL, Redis and anvil.

Each test gets its own database, cloned from a template migrated once per session (the ledger
refuses TRUNCATE and DELETE, so tests cannot clean up by deleting rows). Where the loopback
servers of this project's machines are not there, the embedded ones are started instead.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from click.testing import Result
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import devstack
from config.settings import Settings, get_settings
from devstack.postgres import fresh_database
from payouts.chain.client import ChainClient
from payouts.cli import app
from payouts.db import UnitOfWork, engine_for
from payouts.db.migrate import upgrade
from payouts.runtime import Runtime
from tests.savepoints import in_transaction, savepoint_units
from tests.waiting import WaitTimeout, wait_until

CALM_BASE_FEE = 10**9  # wei per gas: where every test's chain starts, whatever came before

_counter = itertools.count()


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


_SENDS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
# Seconds; a transaction anvil will not mine yet (full blocks) is not waited for longer.
_MINED_WITHIN = 1.0


def _node(url: str, method: str, params: list[Any]) -> Any:
    answer = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=2
    ).json()
    return answer.get("result")


def _await_block(url: str, tx_hash: str) -> None:
    """Return once ``tx_hash`` is in a block, if the node mines on its own (automine)."""
    try:
        if not _node(url, "anvil_getAutomine", []):
            return  # the test (or a miner thread) decides when blocks come
        wait_until(
            lambda: _node(url, "eth_getTransactionReceipt", [tx_hash]),
            timeout=_MINED_WITHIN,
            interval=0.002,
            what=f"{tx_hash} mined",
        )
    except WaitTimeout:
        return  # not minable yet (full blocks, a fee under the base fee): the test goes on
    except (requests.RequestException, ValueError):
        return  # a node a test cut away: the test is about that, not about blocks


@pytest.fixture(autouse=True)
def sends_return_mined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anvil's automine mines a transaction in a background task, so a send returns before its
    block exists (about 1 send in 50 here, more on a loaded machine). Tests that send and then
    reconcile at once raced the miner and failed now and then: a batch not yet included, a
    top-up not yet booked, seen only in the full suite. With automine on, a send made in a
    test process returns once its transaction is mined, which is what those tests assume."""
    request = ChainClient._request

    def mined_request(self: ChainClient, method: str, params: list[Any]) -> dict[str, Any]:
        answer = request(self, method, params)
        if method in _SENDS and isinstance(answer.get("result"), str):
            _await_block(self.rpc_url, answer["result"])
        return answer

    monkeypatch.setattr(ChainClient, "_request", mined_request)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def pg_server_url(state_dir: Path) -> str:
    configured = os.environ.get("PAYOUTS_TEST_DATABASE_URL")
    if configured:
        return configured
    if _answers("127.0.0.1", 5432):
        return "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    return devstack.postgres_url(Settings(state_dir=state_dir))


def _admin(url: str) -> psycopg.Connection[Any]:
    admin = make_url(url).set(database="postgres", drivername="postgresql")
    return psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True)


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    name = f"payouts_tpl_{os.getpid()}"
    url = fresh_database(pg_server_url, name)
    upgrade(url)
    engine_for(url).dispose()
    yield name
    with _admin(pg_server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _clone(pg_server_url: str, template: str, name: str) -> Iterator[str]:
    """A database cloned from the migrated template, dropped afterwards; yields its URL."""
    with _admin(pg_server_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with _admin(pg_server_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A database of the test's own, with real commits."""
    with _clone(pg_server_url, template_db, f"payouts_t_{os.getpid()}_{next(_counter)}") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(state_dir: Path) -> str:
    configured = os.environ.get("PAYOUTS_TEST_REDIS_URL")
    if configured:
        return configured
    if _answers("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/9"
    return devstack.redis_url(Settings(state_dir=state_dir))


@pytest.fixture(scope="session")
def anvil(state_dir: Path) -> Iterator[devstack.Anvil]:
    with devstack.Anvil(state_dir=state_dir) as node:
        yield node


@pytest.fixture
def deployment(anvil: devstack.Anvil) -> devstack.DevDeployment:
    """A fresh token and batcher per test, so no test sees another's logs, deployed after a
    block at a calm base fee: a fee spike a test before left on the session's chain would
    otherwise keep this test's transactions (signed at the fee cap) from being mined."""
    client = ChainClient(anvil.url)
    client.rpc("anvil_setNextBlockBaseFeePerGas", [hex(CALM_BASE_FEE)])
    client.rpc("evm_mine", [])
    return devstack.deploy_dev_contracts(
        anvil.url, devstack.DEV_KEYS[0], devstack.DEV_KEYS[1], mint=10**15
    )


def chain_settings(
    db_url: str, rpc_url: str, deployment: devstack.DevDeployment, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "rpc_url": rpc_url,
        "signer_key": devstack.DEV_KEYS[1],
        "batcher_address": deployment.batcher_address,
        "claims_address": deployment.claims_address,
        "assets": [
            {
                "symbol": "USDC",
                "decimals": 6,
                "address": deployment.token_address,
                "min_payout": 10_000,
                "rounding_unit": 100,
            }
        ],
        "confirmation_depth": 1,
        "finality_depth": 2,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read ``settings``."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if name == "signer_key":
            assert settings.signer_key is not None
            value = settings.signer_key.get_secret_value()
        env[f"PAYOUTS_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, list | dict) else str(value)
        )
    return env


@pytest.fixture
def make_runtime(
    db_url: str, anvil: devstack.Anvil, deployment: devstack.DevDeployment
) -> Callable[..., Runtime]:
    """Runtimes on a database of their own (real commits), for what other processes read."""

    def make(**overrides: Any) -> Runtime:
        return Runtime(chain_settings(db_url, anvil.url, deployment, **overrides))

    return make


@pytest.fixture
def make_chain_runtime(
    uow: UnitOfWork,
    shared_db_url: str,
    anvil: devstack.Anvil,
    deployment: devstack.DevDeployment,
) -> Callable[..., Runtime]:
    """Runtimes on the real chain whose units of work are savepoints (tests/savepoints.py)."""

    def make(**overrides: Any) -> Runtime:
        return Runtime(chain_settings(shared_db_url, anvil.url, deployment, **overrides), uow=uow)

    return make


def ledger_settings(database_url: str, state_dir: Path) -> Settings:
    """One configured token and no chain, for ledger-only tests."""
    return Settings.model_validate(
        {
            "database_url": database_url,
            "state_dir": str(state_dir),
            "assets": [
                {
                    "symbol": "USDC",
                    "decimals": 6,
                    "address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                    "min_payout": 10_000,
                    "rounding_unit": 100,
                }
            ],
        }
    )


@pytest.fixture(scope="session")
def shared_db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """One database for every test that runs inside a rolled-back transaction."""
    with _clone(pg_server_url, template_db, f"payouts_shared_{os.getpid()}") as url:
        yield url


@pytest.fixture
def uow(shared_db_url: str) -> Iterator[UnitOfWork]:
    """Units of work as savepoints of one transaction that is rolled back after the test."""
    with engine_for(shared_db_url).connect() as connection:
        outer = in_transaction(connection)
        try:
            yield savepoint_units(connection)
        finally:
            outer.rollback()


@pytest.fixture
def ledger_runtime(uow: UnitOfWork, shared_db_url: str, state_dir: Path) -> Runtime:
    """A ledger-only runtime whose units of work are savepoints (see tests/savepoints.py)."""
    return Runtime(ledger_settings(shared_db_url, state_dir), uow=uow)


@pytest.fixture
def committed_ledger_runtime(db_url: str, state_dir: Path) -> Runtime:
    """A ledger-only runtime on a database of its own, for tests that need real commits:
    other connections (threads, the CLI), commit-time checks, time passing in ``now()``."""
    return Runtime(ledger_settings(db_url, state_dir))


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Runtime, str], Result]]:
    """Run the CLI as an operator would, configured like ``rt``."""

    def run(rt: Runtime, *args: str) -> Result:
        env = settings_env(rt.settings)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return CliRunner(env=env).invoke(app, list(args))

    yield run
    get_settings.cache_clear()
