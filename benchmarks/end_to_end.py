"""Scenario 5: a million credits to finalized, reconciled payouts, by a real worker and beat.

A copy of the seeded ledger (the roll-up scenario's), a fresh anvil, and the processes an
operator runs: ``celery worker`` (prefork, 2 processes) and ``celery beat`` on Redis. The
clock starts when they are started and stops when every payout is finalized; the bench
watches the tables meanwhile, so it can say when each stage was done, and reads the
worker's log for the time each kind of task ran.

anvil runs with ``--mixed-mining``: a transaction is mined as soon as it arrives (automine)
and a block is also made every second, so confirmations keep coming after the last batch.

No floor is measured here: the wall time is set by beat's schedule, anvil's blocks and the
confirmation depth as much as by work, and sending batches has no floor of its own; the
floors of the stages that do the work (roll-up, reconciliation) are in their scenarios,
at the same sizes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

import devstack
from benchmarks import chainwork, stack
from benchmarks.reconcile import settle_all
from benchmarks.report import (
    FLOOR_RATIO,
    ScenarioResult,
    Table,
    Target,
    fmt_ratio,
    fmt_seconds,
    met,
)
from benchmarks.seed import Templates
from benchmarks.timing import stopwatch
from devstack import processes
from payouts.db import unit_of_work
from payouts.reconcile import handlers as reconciler
from payouts.rollup import handlers as rollups

TARGET_SECONDS = 90.0  # issue 14: 1M credits to finalized
ANVIL_ARGS = ("--mixed-mining",)
_TASK_DONE = re.compile(r"Task (payouts\.\w+)\[[^\]]+\] succeeded in ([0-9.]+)s")


@dataclass(frozen=True)
class EndToEndSizes:
    credits: int
    creators: int
    window_seconds: int  # roll-up window: the first roll-up comes at most this long after start
    timeout: float


class Milestones:
    """When (seconds after the start) each stage of the pipeline was first seen complete."""

    STAGES = (
        ("rolled up", "payouts exist (the roll-up committed)"),
        ("sealed", "no payout pending: every one is in a sealed batch"),
        ("sent", "every batch broadcast or further"),
        ("on chain", "every batch included or further"),
        ("finalized", "every payout finalized"),
    )

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def observe(self, elapsed: float, payouts: dict[str, int], batches: dict[str, int]) -> bool:
        """Record what is done; returns True when every payout is finalized."""
        total = sum(payouts.values())
        reached = {
            "rolled up": total > 0,
            "sealed": total > 0 and not payouts.get("pending"),
            "sent": total > 0 and not payouts.get("pending") and not batches.get("sealed"),
            "on chain": total > 0
            and not payouts.get("pending")
            and not any(batches.get(s) for s in ("sealed", "broadcast")),
            "finalized": total > 0 and payouts.get("finalized") == total,
        }
        for stage, done in reached.items():
            if done:
                self.at.setdefault(stage, elapsed)
        return reached["finalized"]


def _task_times(log: Path) -> dict[str, tuple[int, float]]:
    totals: dict[str, list[float]] = defaultdict(list)
    for match in _TASK_DONE.finditer(log.read_text(encoding="utf-8", errors="replace")):
        totals[match[1]].append(float(match[2]))
    return {name: (len(times), sum(times)) for name, times in totals.items()}


def _py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample the worker (and its pool processes) for the whole run, if py-spy is there."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        return None
    return subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
         "--rate", "50", "--duration", str(int(seconds)), "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def top_frames(raw: Path, n: int = 8) -> list[tuple[str, float]]:
    """Where the worker processes spent their CPU: each sample goes to the innermost frame
    of our code (payouts/, workers/) on its stack, or to the innermost frame if none is."""
    counts: dict[str, int] = defaultdict(int)
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in stack_text.split(";") if not f.startswith("process ")]
        ours = [f for f in frames if "(payouts/" in f or "(workers/" in f]
        counts[(ours or frames or ["(idle)"])[-1]] += int(count)
        total += int(count)
    ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return [(frame, c / total) for frame, c in ranked] if total else []


def _settings(
    servers: stack.Servers,
    url: str,
    anvil: devstack.Anvil,
    deployment: devstack.DevDeployment,
    sizes: EndToEndSizes,
) -> dict[str, str]:
    if deployment.token_address != stack.USDC_ADDRESS:
        raise RuntimeError(f"the token is at {deployment.token_address}, not where the seed put it")
    return stack.bench_env(
        servers, url, rpc_url=anvil.url, deployment=deployment,
        rollup_window_seconds=sizes.window_seconds, settle_interval_seconds=2,
        reconcile_interval_seconds=1, confirmation_depth=2, finality_depth=3, log_level="INFO",
    )  # fmt: skip


def serial(servers: stack.Servers, sizes: EndToEndSizes, source: str) -> float:
    """The baseline: the same handlers called one after the other from this process."""
    with (
        stack.chain(servers, block_time=1, extra_args=ANVIL_ARGS) as (anvil, deployment),
        stack.cloned_db(servers, source, "end_to_end_serial") as url,
    ):
        rt = stack.runtime_for(_settings(servers, url, anvil, deployment, sizes))
        with stopwatch() as watch:
            start = datetime.now(UTC) - timedelta(seconds=sizes.window_seconds - 1)
            rollups.rollup(rt, window_start=start, actor="bench")
            settle_all(rt)
            rt.chain.rpc("anvil_mine", [hex(rt.settings.finality_depth)])
            while chainwork.states(url, "payouts").keys() != {"finalized"}:
                reconciler.reconcile(rt, actor="bench")
        return watch.seconds


def run(
    servers: stack.Servers, sizes: EndToEndSizes, templates: Templates, *, profile: bool
) -> ScenarioResult:
    source, _, seed_seconds = templates.ledger(sizes.credits, sizes.creators)
    baseline = serial(servers, sizes, source)
    logs = servers.state_dir / "end_to_end"
    with (
        stack.chain(servers, block_time=1, extra_args=ANVIL_ARGS) as (anvil, deployment),
        stack.cloned_db(servers, source, "end_to_end") as url,
    ):
        env = _settings(servers, url, anvil, deployment, sizes)
        rt = stack.runtime_for(env)
        processes.purge_queues(rt.settings, servers.redis_url)
        milestones = Milestones()
        started = time.monotonic()
        started_wall = time.time()
        worker = processes.start_celery("worker", env, logs)
        beat = processes.start_celery("beat", env, logs)
        spy = _py_spy(worker.pid, sizes.timeout, logs / "worker.pyspy") if profile else None
        done = False
        try:
            while not done and time.monotonic() - started < sizes.timeout:
                time.sleep(0.5)
                done = milestones.observe(
                    time.monotonic() - started,
                    chainwork.states(url, "payouts"),
                    chainwork.states(url, "batches"),
                )
            wall = time.monotonic() - started
        finally:
            with ThreadPoolExecutor() as pool:  # both shut down at once: seconds each
                list(pool.map(processes.stop, (beat, worker)))
            if spy is not None:
                spy.wait(30)
        with unit_of_work(url) as session:
            first_rollup = session.execute(
                text("SELECT extract(epoch FROM min(created_at)) FROM rollup_runs")
            ).scalar()
            batches, gas = session.execute(
                text("SELECT count(*), coalesce(sum(gas_used), 0) FROM batches")
            ).one()
        checks = chainwork.ledger_matches_chain(rt)
        checks["every payout finalized"] = done
        # A credit's state is derived from its run and its payout (credits are written once).
        paid = chainwork.states(url, "credit_states") == {"paid": sizes.credits}
        checks["every credit paid"] = paid
    tasks = _task_times(logs / "worker.log")
    breakdown = [f"{stage}: {milestones.at[stage]:,.1f} s after start ({what})"
                 for stage, what in Milestones.STAGES if stage in milestones.at]  # fmt: skip
    if first_rollup is not None:
        breakdown.insert(
            0,
            f"the first roll-up began {float(first_rollup) - started_wall:,.1f} s "
            f"after start (beat's window is {sizes.window_seconds} s)",
        )
    breakdown += [
        f"worker time in `{name}`: {secs:,.1f} s over {count} tasks"
        for name, (count, secs) in sorted(tasks.items(), key=lambda kv: -kv[1][1])
    ]
    if spy is not None and (logs / "worker.pyspy").exists():
        breakdown += [
            f"py-spy, worker processes: {share:.0%} of samples in `{frame}`"
            for frame, share in top_frames(logs / "worker.pyspy")
        ]
    payouts = sizes.creators
    return ScenarioResult(
        key="end_to_end",
        title="5. End to end",
        setup=(
            f"{sizes.credits:,} accrued credits over {sizes.creators:,} creators (a copy of the "
            f"seeded ledger; seeding took {fmt_seconds(seed_seconds)} and is not counted) → "
            f"{payouts:,} payouts in {batches} batches, paid and reconciled by `celery worker` "
            "(prefork, concurrency 2) and `celery beat` on Redis, against anvil "
            f"`--block-time 1 {' '.join(ANVIL_ARGS)}`. Settings: roll-up window "
            f"{sizes.window_seconds} s, settle every 2 s, reconcile every 1 s, confirmation "
            "depth 2, finality depth 3, MAX_BATCH_SIZE 500. Gas per payout: "
            f"{int(gas) // max(1, payouts):,}. No floor: the wall time is set by beat's "
            "schedule, anvil's blocks and the confirmation depth as much as by work, and "
            "sending has no floor measured; the floors of the roll-up and the reconciliation "
            "are in scenarios 2 and 4, at the same sizes."
        ),
        tables=[
            Table(
                [
                    "measure",
                    "worker + beat",
                    "baseline: handlers in sequence, one process",
                    "ratio (baseline ÷ value)",
                    "floor",
                    FLOOR_RATIO,
                    "target",
                    "met",
                ],
                [
                    [
                        f"wall time, {sizes.credits:,} credits → every payout finalized",
                        fmt_seconds(wall) + ("" if done else " (timed out)"),
                        fmt_seconds(baseline),
                        fmt_ratio(baseline / wall),
                        "—",
                        "—",
                        f"≤ {fmt_seconds(TARGET_SECONDS)}",
                        met(done and wall <= TARGET_SECONDS),
                    ],
                    [
                        "throughput",
                        f"{sizes.credits / wall:,.0f} credits/s, {payouts / wall:,.0f} payouts/s",
                        f"{sizes.credits / baseline:,.0f} credits/s",
                        "—",
                        "—",
                        "—",
                        "—",
                        "—",
                    ],
                ],
            )
        ],
        targets=[
            Target(
                f"end to end, {sizes.credits:,} credits",
                fmt_seconds(wall),
                f"≤ {fmt_seconds(TARGET_SECONDS)}",
                done and wall <= TARGET_SECONDS,
            )
        ],
        checks=checks,
        breakdown=breakdown,
    )
