"""Webhook delivery by a real Celery worker and beat, to a real receiver on loopback behind a
real TCP proxy: a receiver that was down gets everything once it is back, once per id and in
order; a worker SIGKILLed in the middle of a request loses nothing, and the event comes again
with the same id."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from devstack import processes
from payouts.notify import handlers as webhooks
from payouts.runtime import Runtime
from tests.conftest import settings_env
from tests.e2e.conftest import as_app_role
from tests.tcp_proxy import CuttingProxy
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver, receiving
from tests.webhookkit import FAST, emit, marketplace, scalar

pytestmark = pytest.mark.e2e

# Only the webhook schedule runs often; the chain's stages have nothing to do here.
QUIET = {
    "settle_interval_seconds": 3600,
    "reconcile_interval_seconds": 3600,
    "watch_interval_seconds": 3600,
}


def _settings(rt: Runtime, redis_url: str, state_dir: Path, **overrides: object) -> Settings:
    return rt.settings.model_copy(
        update={
            "redis_url": redis_url,
            "state_dir": state_dir,
            **QUIET,
            **FAST,
            **overrides,
        }
    )


@contextlib.contextmanager
def celery(settings: Settings, kind: str, name: str) -> Iterator[subprocess.Popen[bytes]]:
    assert settings.database_url is not None
    with as_app_role(settings.database_url) as app_url:
        env = {**settings_env(settings), "PAYOUTS_DATABASE_URL": app_url}
        process = processes.start_celery(kind, env, settings.state_dir / name, 1)
        try:
            yield process
        finally:
            processes.stop(process)


def _delivered_once_in_order(receiver: Receiver, secret: str, expected: int) -> None:
    unique = receiver.unique(secret)
    assert [e.seq for e in unique] == list(range(1, expected + 1))
    # Every copy of an event is the same event: same id, same body.
    bodies: dict[str, bytes] = {}
    for request in receiver.received():
        assert bodies.setdefault(request.id, request.body) == request.body


def test_a_receiver_down_for_a_while_gets_every_event_once_in_order(
    committed_ledger_runtime: Runtime, redis_url: str, state_dir: Path
) -> None:
    settings = _settings(committed_ledger_runtime, redis_url, state_dir / "wh-down")
    rt = Runtime(settings)
    shop, other = marketplace(rt, "shop"), marketplace(rt, "other")
    processes.purge_queues(settings, redis_url)
    with receiving() as receiver, contextlib.closing(CuttingProxy(receiver.port)) as proxy:
        created = webhooks.create_endpoint(rt, shop, f"{proxy.url}/hooks", [])
        endpoint, secret = created["id"], created["secret"]
        with celery(settings, "beat", "beat"), celery(settings, "worker", "w"):
            emit(rt, shop, "payout.created", "payout.batched")
            wait_until(lambda: len(receiver.unique(secret)) == 2, timeout=30, what="2 events")
            proxy.go_down()
            for _ in range(3):
                emit(rt, shop, "payout.submitted", "payout.confirmed", "payout.finalized")
                emit(rt, other, "payout.created")
            wait_until(
                lambda: scalar(rt, "SELECT failures FROM webhook_endpoints") >= 2,
                timeout=30,
                what="the worker to fail at least twice",
            )
            assert len(receiver.unique(secret)) == 2
            proxy.come_back()
            wait_until(lambda: len(receiver.unique(secret)) == 11, timeout=60, what="all 11 events")
            wait_until(
                lambda: (
                    scalar(
                        rt, "SELECT delivered_seq FROM webhook_endpoints WHERE id = :e", e=endpoint
                    )
                    == 11
                ),
                timeout=10,
                what="the cursor past the last event",
            )
    _delivered_once_in_order(receiver, secret, 11)
    assert scalar(rt, "SELECT count(*) FROM webhook_attempts WHERE status IS NULL") >= 2
    # Nothing missing against the event table, nothing of the other marketplace.
    assert {e.id for e in receiver.unique(secret)} == set(
        scalar(rt, "SELECT array_agg('evt_' || id) FROM events WHERE marketplace_id = :m", m=shop)
    )


def test_a_worker_killed_mid_delivery_loses_nothing_and_resends_the_same_id(
    committed_ledger_runtime: Runtime, redis_url: str, state_dir: Path
) -> None:
    settings = _settings(
        committed_ledger_runtime,
        redis_url,
        state_dir / "wh-kill",
        webhook_timeout_seconds=60,  # the request hangs until the worker is gone
    )
    rt = Runtime(settings)
    shop = marketplace(rt, "shop")
    processes.purge_queues(settings, redis_url)
    with receiving(Receiver(hold=True)) as receiver:
        created = webhooks.create_endpoint(rt, shop, receiver.url, [])
        secret = created["secret"]
        emit(rt, shop, "payout.created", "payout.batched", "payout.finalized")
        with celery(settings, "beat", "beat"):
            with celery(settings, "worker", "w1") as first:
                assert receiver.held.wait(30), "the worker never sent the first event"
                processes.stop(first, kill=True)
            # The attempt died with the worker's transaction: nothing recorded, cursor unmoved.
            assert scalar(rt, "SELECT count(*) FROM webhook_attempts") == 0
            assert scalar(rt, "SELECT delivered_seq FROM webhook_endpoints") == 0
            receiver.hold = False
            receiver.release.set()
            with celery(settings, "worker", "w2"):
                wait_until(
                    lambda: len(receiver.unique(secret)) == 3, timeout=60, what="all 3 events"
                )
                wait_until(
                    lambda: scalar(rt, "SELECT delivered_seq FROM webhook_endpoints") == 3,
                    timeout=10,
                    what="the cursor past the last event",
                )
    ids = receiver.ids()
    assert ids[0] == ids[1] == "evt_1"  # the same id again: the receiver drops the copy
    _delivered_once_in_order(receiver, secret, 3)
