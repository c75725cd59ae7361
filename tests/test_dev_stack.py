"""``payouts dev`` keeps a stack up for trying things by hand: its settings file works, and the
seeded creators' payouts wait for an operator. It stops when told to."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from config.settings import get_settings
from devstack.demo import settings_from_env
from devstack.up import creator_address, run_dev_stack
from payouts.runtime import Runtime
from tests.waiting import wait_until


def test_the_dev_stack_writes_working_settings_and_seeds_pending_payouts(
    pg_server_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYOUTS_DATABASE_URL", pg_server_url)
    monkeypatch.setenv("PAYOUTS_REDIS_URL", redis_url)
    monkeypatch.setenv("PAYOUTS_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    stop, lines = threading.Event(), []
    thread = threading.Thread(
        target=run_dev_stack,
        kwargs={"seed": 2, "worker": False, "echo": lines.append, "stop": stop},
    )
    thread.start()
    try:
        env_file = tmp_path / "dev.env"
        wait_until(
            lambda: any("Ctrl-C" in line for line in lines), timeout=120, what="the stack up"
        )
        env = dict(
            line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines()
        )
        env = {k: shlex.split(v)[0] for k, v in env.items()}
        rt = Runtime(settings_from_env(env))
        with rt.uow() as session:
            pending = session.execute(
                text("SELECT recipient FROM payouts WHERE state = 'pending' ORDER BY id")
            ).scalars()
            assert list(pending) == [creator_address(1), creator_address(2)]
        assert rt.chain.chain_id() == 31337
    finally:
        stop.set()
        thread.join(60)
        get_settings.cache_clear()
    assert not thread.is_alive()
