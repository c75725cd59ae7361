"""``scripts/bench --quick`` runs every scenario and every correctness check inside it holds.

Times are not judged here (a benchmark is never a timed test); what is checked is that the
harness still drives the real stack end to end and that the pipeline stayed correct under
it: every payout finalized, the ledger balanced, the chain paid what the ledger says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.runner import SCENARIOS, TITLES
from config.settings import REPO_ROOT


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
    text = page.read_text(encoding="utf-8")
    for title in TITLES.values():
        assert f"## {title}" in text
    for fact in ("- command: ", "- date: ", "- machine: "):
        assert fact in text
