"""``scripts/bench --quick`` runs every scenario and every correctness check inside it holds.

Times are not judged here (a benchmark is never a timed test); what is checked is that the
harness still drives the real stack end to end and that the pipeline stayed correct under
it: every payout finalized, the ledger balanced, the chain paid what the ledger says; and
that every scenario measured its floor in the same run and reports value ÷ floor.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import FLOOR_RATIO
from benchmarks.runner import SCENARIOS, TITLES
from config.settings import REPO_ROOT

# Its wall time is paced by beat and blocks as much as by work: its column says "—".
FLOORLESS = {"end_to_end"}
# The "≤ 3x its floor" targets, and gas's EVM floor.
HELD_TO_A_FLOOR = {"rollup", "reconcile", "gas"}


def _floor_ratios(result: dict[str, Any]) -> list[str]:
    """The cells of a scenario's "value ÷ floor" columns."""
    return [
        row[table["columns"].index(FLOOR_RATIO)]
        for table in result["tables"]
        if FLOOR_RATIO in table["columns"]
        for row in table["rows"]
    ]


@pytest.mark.chain
@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_quick_bench_reports_every_scenario_and_its_checks_hold(tmp_path: Path) -> None:
    page, data = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    env = dict(os.environ)
    for test_name, bench_name in (
        ("PAYOUTS_TEST_DATABASE_URL", "PAYOUTS_BENCH_DATABASE_URL"),
        ("PAYOUTS_TEST_REDIS_URL", "PAYOUTS_BENCH_REDIS_URL"),
    ):
        if env.get(test_name):
            env.setdefault(bench_name, env[test_name])
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(page), "--json", str(data)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads(data.read_text(encoding="utf-8"))["results"]
    assert [r["key"] for r in results] == list(SCENARIOS)
    for result in results:
        assert result["tables"], result["key"]
        assert result["checks"], result["key"]
        assert all(result["checks"].values()), (result["key"], result["checks"])
        ratios = _floor_ratios(result)
        assert ratios, (result["key"], "no floor column")
        if result["key"] not in FLOORLESS:
            assert any(re.fullmatch(r"[0-9.,e-]+x", r) for r in ratios), (result["key"], ratios)
    floored = {
        r["key"]
        for r in results
        for t in r["targets"]
        if "x floor" in t["target"] and t["of_floor"] and t["of_floor"] > 0
    }
    assert floored >= HELD_TO_A_FLOOR, floored
    text = page.read_text(encoding="utf-8")
    assert f"| measured | {FLOOR_RATIO} | met |" in text
    for title in TITLES.values():
        assert f"## {title}" in text
    for fact in ("- command: ", "- date: ", "- machine: "):
        assert fact in text
