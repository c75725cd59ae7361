"""The one base task, in a real worker: a task whose database goes away is retried, with its
context on every log line, and completes once the database is back.

The worker reaches PostgreSQL through a real TCP proxy that resets every connection while it
plays dead, so the failure is the one production sees (connection refused mid-task), not a
mock of it.
"""

from __future__ import annotations

import time
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


@pytest.fixture
def database_proxy(db_url: str) -> Iterator[CuttingProxy]:
    port = make_url(db_url).port or 5432
    proxy = CuttingProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()


def _log_has(path: Path, *needles: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if all(n in line for n in needles):
                return line
        time.sleep(0.2)
    raise AssertionError(f"no line with {needles} in {path} after {timeout:.0f} s")


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
        retried = _log_has(log, "recoverable: DatabaseUnavailable", "task=payouts.rollup")
        assert "task_id=" in retried
        database_proxy.come_back()
        deadline = time.monotonic() + 60
        while scalar(direct, "SELECT count(*) FROM payouts") < 3:
            assert time.monotonic() < deadline, "the retried roll-up never completed"
            time.sleep(0.2)
    finally:
        processes.stop(worker)
    assert scalar(direct, "SELECT count(*) FROM rollup_runs") == 1
