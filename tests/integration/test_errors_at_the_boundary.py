"""No upstream exception leaves a handler unmapped (as httpx's tests/test_exceptions.py holds).

Every handler the API, the CLI and the tasks call is run against servers that are not there:
a PostgreSQL port nobody listens on, an RPC node likewise. What comes out is always one of the
project's errors (``payouts.errors``), marked recoverable, with the upstream exception kept as
its cause; never a psycopg, SQLAlchemy, requests or web3 exception.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from devstack import free_port
from payouts.errors import (
    BrokerUnavailable,
    DatabaseUnavailable,
    PayoutsError,
    TransientChainError,
)
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.ops import handlers as ops
from payouts.reconcile import handlers as reconciler
from payouts.rollup import handlers as rollups
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from payouts.tracking import handlers as tracking

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
EARNING = Earning("k-1", "alice", 100, "USDC")

HANDLERS: list[tuple[str, Callable[[Runtime], Any]]] = [
    ("ingest.record", lambda rt: ingest.record(rt, "m", [EARNING])),
    ("ingest.record_for", lambda rt: ingest.record_for(rt, 1, [EARNING])),
    ("ingest.authenticate", lambda rt: ingest.authenticate(rt, "pk_key")),
    (
        "ingest.set_payout_address",
        lambda rt: ingest.set_payout_address(rt, 1, "alice", ADDRESS, actor="test"),
    ),
    ("ingest.earning", lambda rt: ingest.earning(rt, 1, 1)),
    ("ingest.balance", lambda rt: ingest.balance(rt, 1, "alice")),
    ("rollup.rollup", lambda rt: rollups.rollup(rt, window_start=datetime.now(UTC))),
    ("settlement.settle", lambda rt: settlement.settle(rt)),
    ("submission.submit", lambda rt: submission.submit(rt, 1)),
    ("submission.watch", lambda rt: submission.watch(rt, 1)),
    ("submission.watchlist", lambda rt: submission.watchlist(rt)),
    (
        "submission.submission_failed",
        lambda rt: submission.submission_failed(rt, 1, tier=0, error=RuntimeError("x")),
    ),
    ("submission.replay", lambda rt: submission.replay(rt, 1, actor="test")),
    ("reconcile.reconcile", lambda rt: reconciler.reconcile(rt)),
    ("tracking.status", lambda rt: tracking.status(rt)),
    ("tracking.check", lambda rt: tracking.check(rt)),
    ("tracking.trace", lambda rt: tracking.trace(rt, "payout", 1)),
    ("tracking.payout", lambda rt: tracking.payout(rt, 1, 1)),
    (
        "tracking.payouts",
        lambda rt: tracking.payouts(rt, 1, creator_external_id=None, before_id=None, limit=5),
    ),
    ("ops.settlement_run", lambda rt: ops.settlement_run(rt)),
    ("ops.list_exceptions", lambda rt: ops.list_exceptions(rt)),
    ("ops.get_exception", lambda rt: ops.get_exception(rt, 1)),
    ("ops.resolve_exception", lambda rt: ops.resolve_exception(rt, 1, "done", actor="test")),
    ("ops.create_marketplace", lambda rt: ops.create_marketplace(rt, "m")),
]


def _settings(database_url: str, rpc_url: str, state_dir: Path) -> Settings:
    return Settings.model_validate(
        {
            "database_url": database_url,
            "rpc_url": rpc_url,
            "redis_url": None,
            "state_dir": str(state_dir),
            "signer_key": "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
            "batcher_address": TOKEN,
            "assets": [{"symbol": "USDC", "decimals": 6, "address": TOKEN}],
            "breaker_failure_threshold": 1_000,  # the breaker is not what this is about
        }
    )


def _assert_mapped(error: BaseException) -> None:
    assert isinstance(error, PayoutsError), f"{type(error).__module__}.{type(error).__name__}"
    assert error.recoverable, type(error).__name__
    assert error.__cause__ is not None, "the upstream error must stay on the traceback"


@pytest.mark.parametrize(("name", "call"), HANDLERS, ids=[h[0] for h in HANDLERS])
def test_no_database_and_no_node_give_the_projects_errors(
    name: str, call: Callable[[Runtime], Any], tmp_path: Path
) -> None:
    dead_db = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/payouts"
    rt = Runtime(_settings(dead_db, f"http://127.0.0.1:{free_port()}", tmp_path))
    with pytest.raises(Exception) as raised:
        call(rt)
    _assert_mapped(raised.value)


def test_group_commit_answers_each_request_with_the_projects_error(tmp_path: Path) -> None:
    dead_db = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/payouts"
    rt = Runtime(_settings(dead_db, "http://127.0.0.1:1", tmp_path))
    with pytest.raises(DatabaseUnavailable) as raised:
        ingest.record_each(rt, [(1, EARNING)])
    _assert_mapped(raised.value)


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("settlement.settle", lambda rt: settlement.settle(rt)),
        ("reconcile.reconcile", lambda rt: reconciler.reconcile(rt)),
        ("ops.settlement_run", lambda rt: ops.settlement_run(rt)),
    ],
)
def test_a_live_database_and_no_node_give_the_projects_chain_error(
    name: str, call: Callable[[Runtime], Any], shared_db_url: str, uow: Any, tmp_path: Path
) -> None:
    settings = _settings(shared_db_url, f"http://127.0.0.1:{free_port()}", tmp_path)
    with pytest.raises(Exception) as raised:
        call(Runtime(settings, uow=uow))
    assert isinstance(raised.value, TransientChainError), type(raised.value)
    _assert_mapped(raised.value)


def test_no_redis_gives_the_projects_broker_error(
    shared_db_url: str, uow: Any, tmp_path: Path
) -> None:
    """The circuit breaker is shared through Redis: without Redis the node is not called, and
    the error says why."""
    settings = _settings(shared_db_url, f"http://127.0.0.1:{free_port()}", tmp_path)
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with pytest.raises(BrokerUnavailable) as raised:
        settlement.settle(Runtime(settings, uow=uow))
    _assert_mapped(raised.value)
