"""``payouts dev``: a local stack that stays up, for trying the CLI and the API by hand.

A real PostgreSQL (embedded unless configured) with a fresh ``payouts_dev`` database, a real
anvil mining a block a second with the test token and the PayoutBatcher deployed, and the
settings for all of it written to ``state_dir/dev.env`` (``source`` it in another shell).
With ``--seed N``, N creators with known addresses earn and their payouts are rolled up and
wait, pending, for an operator's ``payouts settle``. Nothing runs on a schedule unless
``--worker`` starts a Celery worker and beat too. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from config.settings import get_settings
from devstack import processes
from devstack.anvil import Anvil
from devstack.contracts import DEV_KEYS, deploy_dev_contracts
from devstack.demo import settings_from_env, stack_env
from devstack.postgres import fresh_database, postgres_url
from devstack.redis_server import redis_url as local_redis_url
from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.db.migrate import upgrade
from payouts.ingest.earnings import Earning
from payouts.ingest.handlers import record
from payouts.rollup.handlers import rollup
from payouts.runtime import Runtime

MARKETPLACE = "dev-marketplace"


def creator_address(n: int) -> str:
    """A fixed payout address for seeded creator ``n`` (digits only: its own checksum)."""
    return f"0x2{n:039d}"


def run_dev_stack(
    *,
    seed: int,
    worker: bool,
    echo: Callable[[str], None],
    stop: threading.Event | None = None,
) -> Path:
    """Start the stack, write its settings, seed it, and wait for Ctrl-C (or ``stop``)."""
    settings = get_settings()
    stop = stop or _stop_on_interrupt()
    database_url = fresh_database(postgres_url(settings), "payouts_dev")
    upgrade(database_url)
    broker = local_redis_url(settings)
    with Anvil(block_time=1, state_dir=settings.state_dir) as anvil:
        deployment = deploy_dev_contracts(anvil.url, DEV_KEYS[0], DEV_KEYS[1], mint=10**15)
        env = stack_env(settings, database_url, broker, anvil.url, deployment, 60)
        env_file = settings.state_dir / "dev.env"
        env_file.write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())),
            encoding="utf-8",
        )
        rt = Runtime(settings_from_env(env))
        if seed:
            _seed(rt, seed, echo)
        started = []
        if worker:
            processes.purge_queues(rt.settings, broker)
            started = [
                processes.start_celery("worker", env, settings.state_dir),
                processes.start_celery("beat", env, settings.state_dir),
            ]
        echo(f"chain {anvil.url}, token {deployment.token_address}")
        echo(
            f"batcher {deployment.batcher_address}, claims escrow {deployment.claims_address},"
            f" database {database_url}"
        )
        echo(f"settings written to {env_file}: in another shell, source it")
        echo("and run payouts status, payouts settle, ... (Ctrl-C here stops the stack)")
        try:
            stop.wait()
        finally:
            for process in reversed(started):
                processes.stop(process)
    return env_file


def _seed(rt: Runtime, creators: int, echo: Callable[[str], None]) -> None:
    """``creators`` creators earn 0.05 USDC each; the window is rolled up so their payouts
    wait, pending, for a settlement run."""
    addresses = {f"creator-{n}": creator_address(n) for n in range(1, creators + 1)}
    with rt.uow() as session:
        rt.sync_assets(session)
        set_payout_addresses(session, ensure_marketplace(session, MARKETPLACE), addresses)
        session.commit()
    record(rt, MARKETPLACE, [Earning(f"dev-{c}", c, 50_000, "USDC") for c in addresses])
    window = timedelta(seconds=rt.settings.rollup_window_seconds)
    done = rollup(rt, window_start=datetime.now(UTC) + timedelta(seconds=1) - window)
    echo(f"seeded {creators} creators of {MARKETPLACE}, {done.payouts} payouts pending:")
    for creator, address in addresses.items():
        echo(f"  {creator}  {address}")


def _stop_on_interrupt() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
