"""The one base task, in a real worker: a task whose database goes away is retried, with its
context on every log line, and completes once the database is back.

The worker reaches PostgreSQL through a real TCP proxy that resets every connection while it
plays dead, so the failure is the one production sees (connection refused mid-task), not a
mock of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy.engine import make_url

import devstack
from devstack import processes
from payouts.runtime import Runtime
from tests.chainkit import scalar, seed
from tests.conftest import chain_settings, settings_env
from tests.tcp_proxy import CuttingProxy
from tests.waiting import wait_until


@pytest.fixture
def database_proxy(db_url: str) -> Iterator[CuttingProxy]:
    port = make_url(db_url).port or 5432
    proxy = CuttingProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()


def _line_with(path: Path, *needles: str) -> str | None:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return next((line for line in text.splitlines() if all(n in line for n in needles)), None)


def test_a_task_that_loses_its_database_is_retried_and_completes_when_it_returns(
    db_url: str,
    redis_url: str,
    anvil: devstack.Anvil,
    deployment: devstack.DevDeployment,
    database_proxy: CuttingProxy,
    state_dir: Path,
) -> None:
    direct = Runtime(chain_settings(db_url, anvil.url, deployment))
    seed(direct, creators=3, per_creator=1)
    through_proxy = make_url(db_url).set(host="127.0.0.1", port=database_proxy.port)
    settings = chain_settings(
        through_proxy.render_as_string(hide_password=False),
        anvil.url,
        deployment,
        redis_url=redis_url,
        rollup_window_seconds=1,
        task_retry_backoff_seconds=0.5,
        task_retry_backoff_max_seconds=1,
        state_dir=str(state_dir / "base-task"),
    )
    log = settings.state_dir / "worker.log"
    processes.purge_queues(settings, redis_url)
    database_proxy.go_down()
    worker = processes.start_celery("worker", settings_env(settings), settings.state_dir)
    try:
        client = Celery(broker=redis_url)
        client.send_task("payouts.rollup", queue="rollup")
        retried = wait_until(
            lambda: _line_with(log, "recoverable: DatabaseUnavailable", "task=payouts.rollup"),
            timeout=60,
            what="the worker to log the retry with the task's context",
        )
        assert "task_id=" in retried
        database_proxy.come_back()
        wait_until(
            lambda: scalar(direct, "SELECT count(*) FROM payouts") == 3,
            timeout=60,
            what="the retried roll-up to complete",
        )
    finally:
        processes.stop(worker)
    assert scalar(direct, "SELECT count(*) FROM rollup_runs") == 1
