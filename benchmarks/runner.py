"""``scripts/bench``: run every scenario and write the Markdown page (and, on request, JSON).

Exit code 0 when every scenario ran and every correctness check inside it held, 1 otherwise;
a target not met is reported, never a failure (times are not judged here, see the page).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import claims, end_to_end, gas, ingest, reconcile, rollup, stack, webhooks
from benchmarks.report import ScenarioResult, render
from benchmarks.seed import Templates
from config.settings import REPO_ROOT


@dataclass(frozen=True)
class Sizes:
    ingest: ingest.IngestSizes
    rollup: rollup.RollupSizes
    gas: gas.GasSizes
    reconcile: reconcile.ReconcileSizes
    end_to_end: end_to_end.EndToEndSizes
    webhooks: webhooks.WebhookSizes
    claims: claims.ClaimsSizes


FULL = Sizes(
    ingest=ingest.IngestSizes(
        creators=10_000, bulk=200_000, orm=3_000, http_batch=100_000, http_single=20_000,
        concurrency=256,
    ),
    rollup=rollup.RollupSizes(credits=1_000_000, creators=100_000, baseline_creators=10_000),
    gas=gas.GasSizes(batch_sizes=(1, 10, 100), transfers=20),
    reconcile=reconcile.ReconcileSizes(payouts=100_000),
    end_to_end=end_to_end.EndToEndSizes(
        credits=1_000_000, creators=100_000, window_seconds=5, timeout=1200
    ),
    webhooks=webhooks.WebhookSizes(backlog=5_000, rate=100, seconds=20, timeout=600),
    claims=claims.ClaimsSizes(creators=1_000, hours=720),
)  # fmt: skip
QUICK = Sizes(
    ingest=ingest.IngestSizes(
        creators=500, bulk=5_000, orm=100, http_batch=2_000, http_single=300, concurrency=64
    ),
    rollup=rollup.RollupSizes(credits=10_000, creators=1_000, baseline_creators=200),
    gas=gas.GasSizes(batch_sizes=(1, 10), transfers=3),
    reconcile=reconcile.ReconcileSizes(payouts=1_000),
    end_to_end=end_to_end.EndToEndSizes(
        credits=10_000, creators=1_000, window_seconds=1, timeout=120
    ),
    webhooks=webhooks.WebhookSizes(backlog=300, rate=50, seconds=3, timeout=90),
    claims=claims.ClaimsSizes(creators=60, hours=48),
)

SCENARIOS = ("ingest", "rollup", "gas", "reconcile", "end_to_end", "webhooks", "claims")
TITLES = {
    "ingest": "1. Ingest",
    "rollup": "2. Roll-up",
    "gas": "3. Gas per payout",
    "reconcile": "4. Reconciliation",
    "end_to_end": "5. End to end",
    "webhooks": "6. Webhooks",
    "claims": "7. Push or claim",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (well under 60 s)")
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS.md", help="Markdown page"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the end-to-end worker with py-spy"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    return parser


def _scenarios(
    sizes: Sizes, servers: stack.Servers, templates: Templates, profile: bool
) -> dict[str, Callable[[], ScenarioResult]]:
    return {
        "ingest": lambda: ingest.run(servers, sizes.ingest),
        "rollup": lambda: rollup.run(servers, sizes.rollup, templates),
        "gas": lambda: gas.run(servers, sizes.gas),
        "reconcile": lambda: reconcile.run(servers, sizes.reconcile),
        "end_to_end": lambda: end_to_end.run(servers, sizes.end_to_end, templates, profile=profile),
        "webhooks": lambda: webhooks.run(servers, sizes.webhooks),
        "claims": lambda: claims.run(servers, sizes.claims),
    }


def _failed(key: str, error: BaseException) -> ScenarioResult:
    return ScenarioResult(
        key=key,
        title=TITLES[key],
        setup=f"**The scenario failed:** `{type(error).__name__}: {error}`",
        checks={"scenario ran to the end": False},
    )


def _write(
    args: argparse.Namespace,
    results: list[ScenarioResult],
    *,
    command: str,
    started_at: datetime,
    seconds: float,
    previous: str | None,
) -> bool:
    """Write the page (and JSON) for the scenarios so far; returns whether every check held."""
    ok = all(all(r.checks.values()) for r in results)
    page = render(
        results,
        command=command,
        started=started_at,
        seconds=seconds,
        quick=args.quick,
        previous=previous,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page, encoding="utf-8")
    if args.json:
        args.json.write_text(
            json.dumps({"ok": ok, "results": [r.to_json() for r in results]}, indent=2),
            encoding="utf-8",
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wanted = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    sizes = QUICK if args.quick else FULL
    command = " ".join(
        [
            os.environ.get("PAYOUTS_BENCH_COMMAND", "python -m benchmarks"),
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    previous = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    state_dir = Path(tempfile.mkdtemp(prefix="payouts-bench-"))
    servers = stack.find_servers(state_dir)
    templates = Templates(servers)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    results: list[ScenarioResult] = []
    ok = True
    try:
        runners = _scenarios(sizes, servers, templates, args.profile)
        for key in wanted:
            print(f"==> {TITLES[key]}", file=sys.stderr, flush=True)
            scenario_started = time.perf_counter()
            try:
                result = runners[key]()
            except Exception as exc:  # noqa: BLE001 - reported in the page, the run goes on
                traceback.print_exc()
                result = _failed(key, exc)
            result.seconds = time.perf_counter() - scenario_started
            results.append(result)
            print(f"    {result.seconds:.1f} s", file=sys.stderr, flush=True)
            # After every scenario, so a long run that is stopped still leaves its figures.
            ok = _write(
                args, results, command=command, started_at=started_at,
                seconds=time.perf_counter() - started, previous=previous,
            )  # fmt: skip
    finally:
        templates.close()
    if ok and not args.keep_logs:
        shutil.rmtree(state_dir, ignore_errors=True)
    else:
        print(f"logs of anvil, the API and Celery: {state_dir}", file=sys.stderr)
    print(f"wrote {args.output}" + ("" if ok else " (some checks failed)"), file=sys.stderr)
    return 0 if ok else 1
