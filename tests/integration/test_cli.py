"""The operators' CLI over a real database: status, trace and marketplace keys.

Exit codes: 0 success, 1 a check or lookup failed, 2 bad input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import text
from typer.testing import CliRunner

from config.settings import get_settings
from payouts.catalog import ensure_marketplace, hash_api_key, set_payout_addresses
from payouts.cli import app
from payouts.db import unit_of_work
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.rollup import handlers as rollups
from payouts.runtime import Runtime

ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
ASSETS = json.dumps(
    [
        {
            "symbol": "USDC",
            "decimals": 6,
            "address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "min_payout": 10_000,
            "rounding_unit": 100,
        }
    ]
)


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A runner whose settings are read fresh from this test's environment."""
    env = {
        "PAYOUTS_DATABASE_URL": db_url,
        "PAYOUTS_STATE_DIR": str(tmp_path),
        "PAYOUTS_ASSETS": ASSETS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield CliRunner(env=env)
    get_settings.cache_clear()


def _run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, list(args))


def _record(rt: Runtime) -> list[int]:
    recorded = ingest.record(
        rt,
        "market",
        [
            Earning("o-1", "alice", 12_345, "USDC"),
            Earning("o-2", "alice", 1_000, "USDC"),
            Earning("o-3", "bob", 20_000, "USDC"),
            Earning("o-4", "carol", 5, "USDC"),
        ],
    )
    return [r.credit_id for r in recorded]


def _roll_up(rt: Runtime) -> None:
    with rt.uow() as session:
        set_payout_addresses(
            session, ensure_marketplace(session, "market"), {"alice": ALICE, "bob": BOB}
        )
        session.commit()
    rollups.rollup(rt, window_start=datetime.now(UTC))


# -- status ----------------------------------------------------------------------------------


def test_status_json_prints_counts_by_state_and_totals_by_asset(
    cli: CliRunner, committed_ledger_runtime: Runtime
) -> None:
    _record(committed_ledger_runtime)
    result = _run(cli, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"] == {
        "credits": {"accrued": 4},
        "payouts": {},
        "batches": {},
        "tx_attempts": {},
    }
    assert data["assets"]["USDC"] == {
        "decimals": 6,
        "earned": "33350",
        "in_flight": "0",
        "ledger_paid": "0",
        "onchain_paid": "0",
    }
    assert data["assets"]["ETH"]["earned"] == "0"
    assert data["open_exceptions"] == 0


def test_status_json_follows_credits_into_payouts_after_a_rollup(
    cli: CliRunner, committed_ledger_runtime: Runtime
) -> None:
    _record(committed_ledger_runtime)
    _roll_up(committed_ledger_runtime)
    data = json.loads(_run(cli, "status", "--json").stdout)
    assert data["counts"]["credits"] == {"rolled_up": 3, "carried": 1}
    assert data["counts"]["payouts"] == {"pending": 2}
    # alice 13_345 pays 13_300 (45 carried as dust), bob 20_000; carol is below the minimum
    # (her credit carried)
    assert data["assets"]["USDC"]["in_flight"] == "33300"
    assert data["assets"]["USDC"]["earned"] == "33350"


def test_status_prints_amounts_in_whole_units_for_people(
    cli: CliRunner, committed_ledger_runtime: Runtime
) -> None:
    _record(committed_ledger_runtime)
    result = _run(cli, "status")
    assert result.exit_code == 0, result.output
    assert re.search(r"credits\s+│\s+accrued\s+│\s+4\b", result.stdout)
    usdc = next(line for line in result.stdout.splitlines() if "USDC" in line)
    assert re.search(r"USDC\s+│\s+0\.033350\s+│", usdc)
    assert "open exceptions: 0" in result.stdout


# -- trace -----------------------------------------------------------------------------------


def test_trace_of_an_earning_prints_its_transitions_and_its_payout(
    cli: CliRunner, committed_ledger_runtime: Runtime
) -> None:
    credit_id = _record(committed_ledger_runtime)[0]
    _roll_up(committed_ledger_runtime)
    result = _run(cli, "trace", str(credit_id), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["earning"]["id"] == credit_id
    assert data["earning"]["amount"] == "12345"
    assert data["earning"]["state"] == "rolled_up"
    assert data["earning"]["idempotency_key"] == "o-1"
    assert (data["earning"]["marketplace"], data["earning"]["creator"]) == ("market", "alice")
    transitions = data["earning_transitions"]
    assert [(t["from_state"], t["to_state"]) for t in transitions] == [("accrued", "rolled_up")]
    assert transitions[0]["cause"] == f"rolled into payout {data['payout']['id']}"
    assert data["payout"]["amount"] == "13300"
    assert data["payout"]["recipient"] == ALICE
    assert data["payout"]["state"] == "pending"
    assert data["batches"] == []


def test_trace_of_an_earning_not_yet_rolled_up_has_no_transitions(
    cli: CliRunner, committed_ledger_runtime: Runtime
) -> None:
    credit_id = _record(committed_ledger_runtime)[3]
    data = json.loads(_run(cli, "trace", str(credit_id), "--json").stdout)
    assert data["earning"]["state"] == "accrued"
    assert data["earning_transitions"] == []
    assert "payout" not in data


def test_trace_of_a_payout(cli: CliRunner, committed_ledger_runtime: Runtime) -> None:
    _record(committed_ledger_runtime)
    _roll_up(committed_ledger_runtime)
    with unit_of_work(committed_ledger_runtime.database_url) as session:
        payout_id = session.execute(
            text("SELECT id FROM payouts WHERE recipient = :r"), {"r": BOB}
        ).scalar_one()
    result = _run(cli, "trace", "--payout", str(payout_id), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["payout"]["amount"] == "20000"


def test_trace_of_an_unknown_earning_exits_1_with_a_clear_message(
    cli: CliRunner, committed_ledger_runtime: Runtime
) -> None:
    _record(committed_ledger_runtime)
    result = _run(cli, "trace", "999999")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: not found: earning 999999"
    assert result.stdout == ""


def test_trace_of_an_unknown_payout_exits_1(cli: CliRunner) -> None:
    result = _run(cli, "trace", "--payout", "999999")
    assert result.exit_code == 1
    assert "not found: payout 999999" in result.stderr


# -- marketplaces ----------------------------------------------------------------------------


def _api_key(output: str) -> str:
    found = re.findall(r"api key \(store it now, it is not shown again\): (\S+)", output)
    assert len(found) == 1, output
    return str(found[0])


def test_marketplaces_create_prints_an_api_key_once_and_stores_only_its_hash(
    cli: CliRunner, db_url: str
) -> None:
    result = _run(cli, "marketplaces", "create", "Acme Market")
    assert result.exit_code == 0, result.output
    key = _api_key(result.stdout)
    assert key.startswith("pk_")
    assert len(key) > 40
    assert re.search(r"^marketplace \d+ Acme Market$", result.stdout, re.MULTILINE)
    with unit_of_work(db_url) as session:
        row = session.execute(text("SELECT name, api_key_hash FROM marketplaces")).one()
        stored = session.execute(
            text("SELECT count(*) FROM marketplaces WHERE api_key_hash = :k OR name = :k"),
            {"k": key},
        ).scalar_one()
    assert row.name == "Acme Market"
    assert row.api_key_hash == hash_api_key(key)
    assert stored == 0  # the key itself is nowhere in the table


def test_each_marketplace_gets_its_own_key(cli: CliRunner) -> None:
    first = _api_key(_run(cli, "marketplaces", "create", "one").stdout)
    second = _api_key(_run(cli, "marketplaces", "create", "two").stdout)
    assert first != second


def test_creating_a_marketplace_twice_exits_2_and_shows_no_new_key(
    cli: CliRunner, db_url: str
) -> None:
    first = _run(cli, "marketplaces", "create", "Acme Market")
    assert first.exit_code == 0, first.output
    again = _run(cli, "marketplaces", "create", "Acme Market")
    assert again.exit_code == 2
    assert "error: marketplace 'Acme Market' exists" in again.stderr
    assert "api key" not in again.output
    with unit_of_work(db_url) as session:
        assert session.execute(text("SELECT count(*) FROM marketplaces")).scalar_one() == 1


def test_a_marketplace_name_of_blanks_exits_2(cli: CliRunner) -> None:
    result = _run(cli, "marketplaces", "create", "   ")
    assert result.exit_code == 2
    assert "must not be empty" in result.stderr


def test_an_operator_lists_shows_and_resolves_an_exception_once(
    cli: CliRunner, db_url: str
) -> None:
    from payouts.exception_queue import record_exception

    with unit_of_work(db_url) as session:
        record_exception(session, "transfer_failed", "t-1", {"recipient": BOB, "reason": "blocked"})
        session.commit()

    listed = _run(cli, "exceptions", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.output)
    shown = _run(cli, "exceptions", "show", str(item["id"]), "--json")
    assert json.loads(shown.output)["detail"] == {"recipient": BOB, "reason": "blocked"}

    closed = _run(cli, "exceptions", "resolve", str(item["id"]), "-m", "paid by hand")
    assert closed.exit_code == 0, closed.output
    again = _run(cli, "exceptions", "resolve", str(item["id"]), "-m", "again")
    assert again.exit_code == 2
    assert "already resolved" in again.output
    assert _run(cli, "exceptions", "show", "999").exit_code == 1
    assert "no open exceptions" in _run(cli, "exceptions", "list").output
    assert "paid by hand" in _run(cli, "exceptions", "list", "--state", "all", "--json").output
