"""``payouts marketplaces create``: a name with control characters is bad input (exit 2, one
line), refused before anything is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config.settings import get_settings
from payouts.cli import app
from payouts.db import unit_of_work


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    env = {"PAYOUTS_DATABASE_URL": db_url, "PAYOUTS_STATE_DIR": str(tmp_path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield CliRunner(env=env)
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "name",
    [
        "acme\x1b[31m",
        "acme\n",
        "acme\nshop",
        "line\u2028sep",
        "acme\rshop",
        "tab\tshop",
        "bell\x07",
        "del\x7f",
        "c1\x85",
        "nul\x00",
    ],
)
def test_a_marketplace_name_with_control_characters_exits_2_with_one_line(
    cli: CliRunner, db_url: str, name: str
) -> None:
    result = cli.invoke(app, ["marketplaces", "create", name])

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert "control characters" in result.stderr
    assert "api key" not in result.output
    with unit_of_work(db_url) as session:
        assert session.execute(text("SELECT count(*) FROM marketplaces")).scalar_one() == 0


def test_a_plain_unicode_name_is_accepted(cli: CliRunner) -> None:
    result = cli.invoke(app, ["marketplaces", "create", "Café Ünïcode 市場"])
    assert result.exit_code == 0, result.output
    assert "marketplace 1 Café Ünïcode 市場" in result.stdout


def test_a_marketplace_name_longer_than_its_column_exits_2_with_one_line(
    cli: CliRunner, db_url: str
) -> None:
    result = cli.invoke(app, ["marketplaces", "create", "m" * 201])

    assert result.exit_code == 2, result.output
    assert result.stderr == "error: marketplace name must be at most 200 characters\n"
    with unit_of_work(db_url) as session:
        assert session.execute(text("SELECT count(*) FROM marketplaces")).scalar_one() == 0
