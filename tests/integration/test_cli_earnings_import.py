"""``payouts earnings import`` and ``payouts creators set-address``: operators who cannot use
the API record earnings and addresses through the same handlers and the same rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from payouts.catalog import create_marketplace
from payouts.runtime import Runtime
from tests.chainkit import scalar

Operator = Callable[..., Result]
ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def _marketplace(rt: Runtime, name: str = "shop") -> None:
    with rt.uow() as session:
        create_marketplace(session, name)
        session.commit()


HEADER = "idempotency_key,creator_id,amount,asset"


def _csv(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "earnings.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_an_import_records_every_row_in_chunks_and_a_second_import_replays_them(
    committed_ledger_runtime: Runtime, operator: Operator, tmp_path: Path
) -> None:
    rt = committed_ledger_runtime
    _marketplace(rt)
    path = _csv(tmp_path, [f"sale-{i},creator-{i % 40},{100 + i},USDC" for i in range(2_500)])
    args = ["earnings", "import", str(path), "--marketplace", "shop", "--chunk-size", "1000"]

    first = operator(rt, *args, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == {
        "rows": 2_500,
        "created": 2_500,
        "replayed": 0,
        "chunks": 3,
        "totals": {"USDC": sum(100 + i for i in range(2_500))},
    }
    assert scalar(rt, "SELECT count(*) FROM credits") == 2_500
    # One earnings.accepted per transaction, as for a batch request of the API.
    assert scalar(rt, "SELECT count(*) FROM events WHERE type = 'earnings.accepted'") == 3

    again = operator(rt, *args)
    assert again.exit_code == 0, again.output
    assert "0 earnings recorded, 2500 already recorded (replays)" in again.stdout
    assert scalar(rt, "SELECT count(*) FROM credits") == 2_500


def test_bad_rows_are_listed_by_line_and_nothing_is_recorded(
    committed_ledger_runtime: Runtime, operator: Operator, tmp_path: Path
) -> None:
    rt = committed_ledger_runtime
    _marketplace(rt)
    path = _csv(
        tmp_path,
        [
            "k-1,alice,1000,USDC",
            "k-2,alice,1.5,USDC",  # line 3: not integer base units
            "k-3,bob,1000,DOGE",  # line 4: not a configured asset
            "k-1,alice,2000,USDC",  # line 5: a key again with another body
            "k-4,carol,1000,USDC",
        ],
    )
    result = operator(rt, "earnings", "import", str(path), "--marketplace", "shop")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert [line.split(":")[1] for line in lines[:-1]] == ["3", "4", "5"]
    assert lines[0].startswith("earnings.csv:3: amount: ")
    assert "unknown asset 'DOGE'" in lines[1]
    assert "came earlier in this import with another body" in lines[2]
    assert lines[-1] == "error: 3 of 5 rows refused; nothing was recorded"
    assert scalar(rt, "SELECT count(*) FROM credits") == 0


def test_a_file_without_the_columns_or_an_unknown_marketplace_is_refused(
    committed_ledger_runtime: Runtime, operator: Operator, tmp_path: Path
) -> None:
    rt = committed_ledger_runtime
    _marketplace(rt)
    path = _csv(tmp_path, ["alice,1000"], header="creator_id,amount")
    headless = operator(rt, "earnings", "import", str(path), "--marketplace", "shop")
    assert headless.exit_code == 2
    assert "the header lacks idempotency_key, asset" in headless.stderr
    nowhere = operator(rt, "earnings", "import", str(path), "--marketplace", "nope")
    assert (nowhere.exit_code, nowhere.stderr) == (1, "error: not found: marketplace 'nope'\n")


def test_an_operator_sets_and_changes_an_address_and_the_change_is_held(
    committed_ledger_runtime: Runtime, operator: Operator
) -> None:
    rt = committed_ledger_runtime
    _marketplace(rt)
    base = ["creators", "set-address", "creator-42"]
    first = operator(rt, *base, ALICE, "--marketplace", "shop")
    assert first.exit_code == 0, first.output
    assert first.stdout == f"creator creator-42: payout address registered: {ALICE}\n"
    changed = operator(rt, *base, BOB.lower(), "--marketplace", "shop", "--json")
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["payout_address"] == BOB
    assert json.loads(changed.stdout)["changed"] is True
    held = json.loads(operator(rt, "holds", "list", "--json").stdout)
    assert [h["rule"] for h in held] == ["address_cool_down"]

    bad = operator(rt, *base, "0x1234", "--marketplace", "shop")
    assert bad.exit_code == 2
    assert len(bad.stderr.splitlines()) == 1


def test_a_terminal_sees_a_progress_bar_on_stderr_and_stdout_keeps_the_summary(
    committed_ledger_runtime: Runtime,
    operator: Operator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt = committed_ledger_runtime
    _marketplace(rt)
    path = _csv(tmp_path, [f"t-{i},creator-{i},100,USDC" for i in range(30)])
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich draws as on a terminal
    args = ["earnings", "import", str(path), "--marketplace", "shop", "--chunk-size", "10"]
    result = operator(rt, *args)
    assert result.exit_code == 0, result.output
    assert "importing earnings.csv" in result.stderr
    assert "30/30" in result.stderr
    assert result.stdout.startswith("earnings.csv: 30 earnings recorded")
