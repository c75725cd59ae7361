"""The alert rules and the Grafana dashboard hold together: promtool accepts the rules and
their unit tests pass (deploy/prometheus/alerts.test.yml), every expression parses, and every
metric they name is one the code exports, under the scrape jobs Prometheus is given.

promtool comes with Debian's prometheus package, which scripts/test installs where it can;
without it the rules are checked by parsing and the PromQL checks are skipped (saying why).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from config.settings import Settings
from payouts.ops.metrics import LedgerCollector
from payouts.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "payouts.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
METRIC = re.compile(r"\bpayouts_[a-z0-9_]+\b")
JOB = re.compile(r'job="([^"]+)"')
QUANTILE = re.compile(r"histogram_quantile\((0\.\d+),")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool not installed (scripts/test installs Debian's prometheus package as root)"


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def exported() -> set[str]:
    """Every sample name the API, the worker and the chain client expose."""
    import workers.metrics  # noqa: F401 - the worker's metrics join this process's registry

    families = [*REGISTRY.collect(), *LedgerCollector(Runtime(Settings())).describe()]
    return {f.name + suffix for f in families for suffix in SUFFIXES[f.type]}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_alert_says_what_and_waits_before_firing() -> None:
    found = rules()
    assert {r["alert"] for r in found} >= {
        "PayoutsWalletRunwayLow",
        "PayoutsNotMoving",
        "PayoutsFailureSpike",
        "PayoutsExceptionsAging",
        "PayoutsWorkerDown",
    }
    for rule in found:
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_every_dashboard_expression_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: each panel's query as a recording rule.
    recorded = [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(dashboard_exprs())]
    as_rules = tmp_path / "dashboard.rules.yml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = promtool("check", "rules", str(as_rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_in_the_rules_and_the_dashboard_is_exported() -> None:
    names = exported()
    used = {n for r in rules() for n in METRIC.findall(r["expr"])}
    used |= {n for e in dashboard_exprs() for n in METRIC.findall(e)}
    assert len(used) > 20
    assert used - names == set()


def test_the_dashboard_shows_every_measure() -> None:
    shown = {n for e in dashboard_exprs() for n in METRIC.findall(e)}
    assert shown >= {
        "payouts_payouts_finalized_total",
        "payouts_payout_failures_total",
        "payouts_earning_to_final_seconds_bucket",
        "payouts_payouts",
        "payouts_payouts_value",
        "payouts_batches",
        "payouts_oldest_nonfinal_payout_age_seconds",
        "payouts_exceptions_open",
        "payouts_fee_bumps_total",
        "payouts_reorgs_unwound_total",
        "payouts_rpc_errors_total",
        "payouts_rpc_circuit_open",
        "payouts_wallet_runway_hours",
        "payouts_tasks_total",
        "payouts_task_duration_seconds_bucket",
    }
    quantiles = {
        m.group(1)
        for e in dashboard_exprs()
        if (m := QUANTILE.match(e)) and "payouts_earning_to_final_seconds_bucket" in e
    }
    assert quantiles == {"0.5", "0.99"}


def test_the_dashboard_reads_the_provisioned_datasource_and_scrape_jobs() -> None:
    uids = {t["datasource"]["uid"] for p in dashboard()["panels"] for t in p.get("targets", [])} | {
        p["datasource"]["uid"] for p in dashboard()["panels"] if "datasource" in p
    }
    jobs = {j for r in rules() for j in JOB.findall(r["expr"])}
    jobs |= {j for e in dashboard_exprs() for j in JOB.findall(e)}
    assert jobs == {"payouts-api", "payouts-worker"}
    scrape = PROMETHEUS / "prometheus.yml"
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert uids == {d["uid"] for d in provisioned if d["type"] == "prometheus"}
    config = yaml.safe_load(scrape.read_text())
    assert jobs <= {c["job_name"] for c in config["scrape_configs"]}
    assert any(Path(f).name == RULES.name for f in config["rule_files"])
