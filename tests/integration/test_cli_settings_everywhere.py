"""Every entry point reads every setting from the environment the same way: a list-valued one
(``PAYOUTS_SUBMIT_RETRY_DELAYS_SECONDS``) and a nested one (an asset's ``creator_limits`` in
``PAYOUTS_ASSETS``), as JSON, the way pydantic-settings parses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config.settings import REPO_ROOT, Settings, get_settings
from devstack.demo import settings_from_env
from payouts.api.app import create_app
from payouts.cli import app

ASSETS = [
    {
        "symbol": "USDC",
        "decimals": 6,
        "address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "creator_limits": {"per_hour_count": 7},
    }
]


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = {
        "PAYOUTS_STATE_DIR": str(tmp_path),
        "PAYOUTS_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/payouts_unused",
        "PAYOUTS_REDIS_URL": "redis://127.0.0.1:6379/9",
        "PAYOUTS_SUBMIT_RETRY_DELAYS_SECONDS": "[7, 70, 7000]",
        "PAYOUTS_ASSETS": json.dumps(ASSETS),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def _read_both(settings: Settings) -> tuple[list[int], int | None]:
    return settings.submit_retry_delays_seconds, settings.assets[0].creator_limits.per_hour_count


def test_the_cli_reads_them(environment: dict[str, str]) -> None:
    result = CliRunner(env=environment).invoke(app, ["settings", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["submit_retry_delays_seconds"] == [7, 70, 7000]
    assert shown["assets"][0]["creator_limits"]["per_hour_count"] == 7


def test_the_cli_hides_secrets_and_passwords(environment: dict[str, str]) -> None:
    env = {
        **environment,
        "PAYOUTS_DATABASE_URL": "postgresql+psycopg://app:s3cret@db:5432/payouts",
        "PAYOUTS_ADMIN_API_KEY": "admin-s3cret",
    }
    result = CliRunner(env=env).invoke(app, ["settings", "--json"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.stdout
    assert (
        json.loads(result.stdout)["database_url"] == "postgresql+psycopg://app:***@db:5432/payouts"
    )


def test_the_api_factory_reads_them(environment: dict[str, str]) -> None:
    assert _read_both(create_app().state.runtime.settings) == ([7, 70, 7000], 7)


def test_the_worker_app_reads_them(environment: dict[str, str]) -> None:
    # In a process of its own: the Celery app reads its settings once, at import.
    probe = (
        "from workers.app import app, runtime; s = runtime.settings;"
        " print(s.submit_retry_delays_seconds, s.assets[0].creator_limits.per_hour_count,"
        " app.conf.broker_transport_options['visibility_timeout'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["[7,", "70,", "7000]", "7", "14000"]


def test_the_demo_reads_them_for_its_children(environment: dict[str, str]) -> None:
    # The demo's own stack settings over the operator's environment, as its children see it.
    child = settings_from_env({"PAYOUTS_WEBHOOK_RETRY_DELAYS_SECONDS": "[1.5, 3]"})
    assert _read_both(child) == ([7, 70, 7000], 7)
    assert child.webhook_retry_delays_seconds == [1.5, 3.0]
