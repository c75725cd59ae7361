"""The whole pipeline with a real Celery worker and beat on Redis, and a real anvil chain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import text

import devstack
from devstack import processes
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.tracking import reports
from tests.chainkit import (
    ledger_paid_by_address,
    mine,
    roll_up_now,
    scalar,
    seed,
    token_balance,
)
from tests.conftest import chain_settings, settings_env
from tests.e2e.conftest import as_app_role
from tests.rpc_proxy import RpcProxy
from tests.waiting import wait_until


@pytest.fixture
def mining_anvil(state_dir: Path) -> Iterator[devstack.Anvil]:
    with devstack.Anvil(block_time=1, state_dir=state_dir) as node:
        yield node


def test_earnings_are_paid_on_chain_by_worker_and_beat(
    db_url: str, redis_url: str, mining_anvil: devstack.Anvil, state_dir: Path
) -> None:
    deployment = devstack.deploy_dev_contracts(
        mining_anvil.url, devstack.DEV_KEYS[0], devstack.DEV_KEYS[1], mint=10**15
    )
    settings = chain_settings(
        db_url,
        mining_anvil.url,
        deployment,
        redis_url=redis_url,
        rollup_window_seconds=2,
        settle_interval_seconds=1,
        reconcile_interval_seconds=1,
        max_batch_size=20,
        state_dir=str(state_dir),
    )
    rt = Runtime(settings)
    recipients = seed(rt, creators=45, per_creator=3)
    processes.purge_queues(settings, redis_url)
    assert settings.database_url is not None
    with as_app_role(settings.database_url) as app_url:
        env = {**settings_env(settings), "PAYOUTS_DATABASE_URL": app_url}
        worker = processes.start_celery("worker", env, state_dir / "w1")
        beat = processes.start_celery("beat", env, state_dir / "w1")
        try:
            wait_until(
                lambda: scalar(rt, "SELECT count(*) FROM credit_states WHERE state <> 'paid'") == 0,
                timeout=120,
                what="every credit paid",
            )
        finally:
            processes.stop(beat)
            processes.stop(worker)

    assert scalar(rt, "SELECT count(*) FROM batches WHERE state = 'finalized'") >= 3
    paid = ledger_paid_by_address(rt)
    assert set(paid) == set(recipients.values())
    for address, amount in paid.items():
        assert token_balance(rt, deployment.token_address, address) == amount
    with rt.uow() as session:
        assert reports.check(session).ok


@pytest.mark.parametrize("node_saw_it", [False, True], ids=["before-node", "after-node"])
def test_worker_killed_after_signing_pays_every_creator_exactly_once(
    make_runtime: Callable[..., Runtime],
    redis_url: str,
    anvil: devstack.Anvil,
    state_dir: Path,
    node_saw_it: bool,
) -> None:
    """SIGKILL the worker while its signed transaction is on the wire; a new worker resends it.

    ``before-node``: the node never received the transaction. ``after-node``: the node has it,
    but the worker died before it heard back or recorded anything.
    """
    with RpcProxy(anvil.url) as proxy:
        rt = make_runtime(resubmit_grace_seconds=0)
        worker_settings = rt.settings.model_copy(
            update={"rpc_url": proxy.url, "redis_url": redis_url}
        )
        env = settings_env(worker_settings)
        recipients = seed(rt, creators=12)
        roll_up_now(rt)
        batch_id = settlement.settle(rt)["USDC"].sealed[0].batch_id
        processes.purge_queues(rt.settings, redis_url)
        client = Celery(broker=redis_url)

        proxy.hold("eth_sendRawTransaction", forward=node_saw_it)
        logs = state_dir / f"kill-{node_saw_it}"
        worker = processes.start_celery("worker", env, logs, concurrency=1)
        try:
            client.send_task("payouts.submit_batch", args=[batch_id], queue="submit")
            assert proxy.held.wait(60), "the worker never broadcast"
            # The signed transaction was stored before it went out.
            assert scalar(rt, "SELECT count(*) FROM tx_attempts WHERE state = 'signed'") == 1
            processes.stop(worker, kill=True)
        finally:
            processes.stop(worker, kill=True)
        proxy.pass_through()

        worker = processes.start_celery("worker", env, logs, concurrency=1)
        try:
            client.send_task("payouts.watch_unmined", queue="submit")
            wait_until(
                lambda: scalar(rt, "SELECT count(*) FROM batches WHERE state = 'broadcast'") == 1,
                timeout=60,
                what="the batch to be resent",
            )
        finally:
            processes.stop(worker)

    mine(rt, 3)
    reconciler.reconcile(rt)
    assert scalar(rt, "SELECT count(*) FROM tx_attempts") == 1
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 12
    paid = ledger_paid_by_address(rt)
    token = rt.settings.assets[0].address
    assert token is not None
    for address in recipients.values():
        assert token_balance(rt, token, address) == paid[address]
    with rt.uow() as session:
        transfers = session.execute(
            text("SELECT payout_id, count(*) FROM onchain_transfers GROUP BY payout_id")
        ).all()
        assert all(n == 1 for _, n in transfers)
        assert len(transfers) == 12
        assert reports.check(session).ok
