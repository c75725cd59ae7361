"""Configuration and connection problems: one line on stderr with a hint and a documented exit
code (3 configuration, 4 a service does not answer); ``--debug`` adds the traceback."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from config.settings import get_settings
from devstack import DEV_KEYS, free_port
from payouts.cli import app

Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """The CLI with only the given settings in its environment (none inherited)."""

    def invoke(env: dict[str, str], *args: str) -> Result:
        for name in [n for n in os.environ if n.startswith("PAYOUTS_")]:
            monkeypatch.delenv(name)
        full = {"PAYOUTS_STATE_DIR": str(tmp_path), **env}
        for name, value in full.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return CliRunner(env=full).invoke(app, list(args))

    yield invoke
    get_settings.cache_clear()


def _one_line(result: Result, code: int, *expected: str) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


def test_a_database_url_that_is_no_postgresql_url_is_a_configuration_error(run: Run) -> None:
    result = run({"PAYOUTS_DATABASE_URL": "postgres:/localhost/payouts"}, "status")
    line = _one_line(result, 3, "error: PAYOUTS_DATABASE_URL:", "hint:")
    assert "postgresql+psycopg://" in line


def test_postgresql_not_answering_is_a_connection_error(run: Run) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/payouts"
    result = run({"PAYOUTS_DATABASE_URL": url}, "status")
    _one_line(result, 4, "cannot use PostgreSQL", "Connection refused", "hint:")


@pytest.mark.parametrize(
    ("assets", "says"),
    [
        ('[{"symbol": "USDC", "decimals": 6', "PAYOUTS_ASSETS is not valid JSON"),
        ('[{"symbol": "USDC"}]', "PAYOUTS_ASSETS[0][decimals]: Field required"),
    ],
)
def test_malformed_assets_are_a_configuration_error(run: Run, assets: str, says: str) -> None:
    result = run({"PAYOUTS_ASSETS": assets}, "status")
    _one_line(result, 3, says, '(hint: a JSON list such as [{"symbol"')


def test_a_node_not_answering_is_a_connection_error(run: Run) -> None:
    rpc = f"http://127.0.0.1:{free_port()}"
    env = {
        "PAYOUTS_RPC_URL": rpc,
        "PAYOUTS_SIGNER_KEY": DEV_KEYS[1],
        "PAYOUTS_BATCHER_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    }
    result = run(env, "reconcile")
    _one_line(result, 4, f"cannot reach the chain's node at {rpc}", "PAYOUTS_RPC_URL")


def test_debug_shows_the_traceback_and_keeps_the_exit_code(run: Run) -> None:
    result = run({"PAYOUTS_ASSETS": "[{"}, "--debug", "status")
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.stderr
    assert "SettingsError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: PAYOUTS_ASSETS is not valid JSON")


def test_a_database_that_does_not_exist_is_named(run: Run, pg_server_url: str) -> None:
    url = make_url(pg_server_url).set(database="payouts_no_such_database")
    missing = url.render_as_string(hide_password=False)
    result = run({"PAYOUTS_DATABASE_URL": missing}, "db", "upgrade")
    _one_line(result, 4, "cannot use PostgreSQL", '"payouts_no_such_database" does not exist')
