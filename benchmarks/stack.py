"""The real services a benchmark runs on, each created fresh and removed afterwards.

Every scenario gets its own database (the ledger refuses TRUNCATE and DELETE, so a used one
cannot be cleaned) and, where it touches the chain, its own anvil and contracts. Servers are
the loopback PostgreSQL and Redis of this project's machines where they answer, else the
embedded ones ``devstack`` starts; ``PAYOUTS_BENCH_DATABASE_URL`` and
``PAYOUTS_BENCH_REDIS_URL`` override both.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

import devstack
from config.settings import Settings
from devstack.demo import settings_from_env
from devstack.postgres import fresh_database
from payouts.db import engine_for
from payouts.db.migrate import upgrade
from payouts.runtime import Runtime

# Redis database of the bench's Celery queues: not the tests' (9), so a test run on the same
# machine never takes the bench's tasks or purges them.
REDIS_DB = 11
TOKEN_SUPPLY = 10**18  # base units minted to the hot wallet: more than any scenario pays
MIN_PAYOUT = 10_000
ROUNDING_UNIT = 100


@dataclass(frozen=True)
class Servers:
    postgres_url: str  # any database on the server; scenarios create their own
    redis_url: str
    state_dir: Path  # logs of anvil, the API and Celery processes


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((devstack.LOOPBACK, port)) == 0


def find_servers(state_dir: Path) -> Servers:
    settings = Settings(state_dir=state_dir)
    postgres = os.environ.get("PAYOUTS_BENCH_DATABASE_URL")
    if not postgres:
        postgres = (
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
            if _listening(5432)
            else devstack.postgres_url(settings)
        )
    redis = os.environ.get("PAYOUTS_BENCH_REDIS_URL")
    if not redis:
        redis = (
            f"redis://127.0.0.1:6379/{REDIS_DB}"
            if _listening(6379)
            else devstack.redis_url(settings)
        )
    return Servers(postgres, redis, state_dir)


def _database_name(label: str) -> str:
    return f"payouts_bench_{os.getpid()}_{label}"


def _admin(server_url: str) -> psycopg.Connection[Any]:
    admin = make_url(server_url).set(database="postgres", drivername="postgresql")
    return psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True)


def _drop(server_url: str, url: str) -> None:
    engine_for(url).dispose()
    name = make_url(url).database
    with _admin(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_db(servers: Servers, label: str) -> Iterator[str]:
    """A new database at the latest schema; dropped when the block ends."""
    url = fresh_database(servers.postgres_url, _database_name(label))
    try:
        upgrade(url)
        yield url
    finally:
        _drop(servers.postgres_url, url)


@contextmanager
def cloned_db(servers: Servers, source_url: str, label: str) -> Iterator[str]:
    """A file-level copy of ``source_url`` (faster than seeding again); dropped afterwards.

    PostgreSQL copies a database only while nobody is connected to it, so this process's
    pooled connections to the source are closed first.
    """
    engine_for(source_url).dispose()
    source = make_url(source_url).database
    name = _database_name(label)
    with _admin(servers.postgres_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        # FILE_COPY copies the files after a checkpoint; the default (WAL_LOG) writes a
        # million-credit ledger through the WAL, several times slower.
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY = FILE_COPY')
    url = make_url(source_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        _drop(servers.postgres_url, url)


@contextmanager
def chain(
    servers: Servers, *, block_time: float | None = None, extra_args: Sequence[str] = ()
) -> Iterator[tuple[devstack.Anvil, devstack.DevDeployment]]:
    """A new anvil with the test token and the PayoutBatcher deployed, hot wallet funded."""
    with devstack.Anvil(
        block_time=block_time, extra_args=extra_args, state_dir=servers.state_dir
    ) as anvil:
        deployment = devstack.deploy_dev_contracts(
            anvil.url, devstack.DEV_KEYS[0], devstack.DEV_KEYS[1], mint=TOKEN_SUPPLY
        )
        yield anvil, deployment


# Where a fresh anvil puts the test token (the deployer's first transaction), so a ledger
# seeded before the chain starts names the right token; scenarios without a chain use it too.
USDC_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def bench_env(
    servers: Servers,
    database_url: str,
    *,
    rpc_url: str = "http://127.0.0.1:8545",
    deployment: devstack.DevDeployment | None = None,
    min_payout: int = MIN_PAYOUT,
    **overrides: object,
) -> dict[str, str]:
    """The ``PAYOUTS_*`` environment of one scenario: what its child processes read too."""
    env = {
        "PAYOUTS_DATABASE_URL": database_url,
        "PAYOUTS_REDIS_URL": servers.redis_url,
        "PAYOUTS_STATE_DIR": str(servers.state_dir),
        "PAYOUTS_RPC_URL": rpc_url,
        "PAYOUTS_CHAIN_ID": "31337",
        "PAYOUTS_SIGNER_KEY": devstack.DEV_KEYS[1],
        "PAYOUTS_LOG_LEVEL": "WARNING",
        "PAYOUTS_ASSETS": json.dumps(
            [
                {
                    "symbol": "USDC",
                    "decimals": 6,
                    "address": deployment.token_address if deployment else USDC_ADDRESS,
                    "min_payout": min_payout,
                    "rounding_unit": ROUNDING_UNIT,
                }
            ]
        ),
    }
    if deployment is not None:
        env["PAYOUTS_BATCHER_ADDRESS"] = deployment.batcher_address
    env.update({f"PAYOUTS_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def runtime_for(env: dict[str, str]) -> Runtime:
    return Runtime(settings_from_env(env))
