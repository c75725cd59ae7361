"""What a scenario reports, and the Markdown page all of them make together.

A scenario returns a ``ScenarioResult``: tables of measured values beside their baselines
and their floors (``benchmarks.floors``: the least the server or the node must do for the
same work, measured in the same run), the targets it was held to, the correctness checks
that held (or not) while it ran, and where its time went. ``render`` writes them under the
command, the machine and the date. Hand-written notes between the ``NOTES_BEGIN`` and
``NOTES_END`` markers of an existing page are carried over, so regenerating the figures keeps
the analysis.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

NOTES_BEGIN = "<!-- notes:begin (kept when scripts/bench rewrites this page) -->"
NOTES_END = "<!-- notes:end -->"

# Every scenario's table has this column; 1x is the floor, and the further from 1 (above it
# for times and gas, below it for rates), the further the value is from what the machine allows.
FLOOR_RATIO = "value ÷ floor"


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Target:
    what: str
    measured: str
    target: str
    met: bool
    of_floor: float | None = None  # measured ÷ its floor in the same run, where one is measured


@dataclass
class ScenarioResult:
    key: str  # ingest, rollup, gas, reconcile, end_to_end
    title: str
    setup: str  # sizes and how the stack was run, one paragraph
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    breakdown: list[str] = field(default_factory=list)  # where the time went
    seconds: float = 0.0  # the scenario's own wall time, set-up included

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fmt_int(value: float) -> str:
    return f"{round(value):,}"


def fmt_seconds(value: float) -> str:
    if value < 0.1:  # a quick run's floors take milliseconds
        return f"{value:.3f} s"
    return f"{value:,.2f} s" if value < 100 else f"{value:,.0f} s"


def fmt_ratio(value: float) -> str:
    if value < 0.1:  # two significant digits: a rate far below its floor is not "0.00x"
        return f"{value:.2g}x"
    return f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"


def fmt_mb(value_bytes: int) -> str:
    return f"{value_bytes / 2**20:,.0f} MB"


def floor_ratio(value: float, floor: float | None) -> str:
    return fmt_ratio(value / floor) if floor else "—"


def met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cores": str(os.cpu_count()),
        "memory": memory,
        "cpu": cpu,
        "system": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
    }


def _table(table: Table) -> list[str]:
    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return [*lines, ""]


def _kept_notes(previous: str | None) -> str:
    if previous and NOTES_BEGIN in previous and NOTES_END in previous:
        return previous.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0].strip("\n")
    return "(none yet)"


def render(
    results: list[ScenarioResult],
    *,
    command: str,
    started: datetime,
    seconds: float,
    quick: bool,
    previous: str | None = None,
) -> str:
    facts = machine()
    out = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench`; every figure below was measured in the one run described "
        "here. Each value stands beside a baseline and a floor (the least PostgreSQL or the "
        "node must do for the same work, `benchmarks/floors.py`) measured in the same run on "
        "the same machine and data, because absolute times on a shared machine drift; the "
        "ratios are what to compare between runs.",
        "",
        f"- command: `{command}`"
        + (" (quick: smoke-test sizes, times not judged)" if quick else ""),
        f"- date: {started:%Y-%m-%d %H:%M} UTC; the run took {fmt_seconds(seconds)}",
        f"- machine: {facts['cores']} cores, {facts['memory']} memory, {facts['cpu']}; "
        f"{facts['system']}",
        "",
        "## Summary",
        "",
    ]
    summary = Table(
        ["scenario", "target", "measured", FLOOR_RATIO, "met"],
        [
            [
                r.title,
                t.what + ": " + t.target,
                t.measured,
                "—" if t.of_floor is None else fmt_ratio(t.of_floor),
                met(t.met),
            ]
            for r in results
            for t in r.targets
        ],
    )
    out += _table(summary)
    checks_ok = all(ok for r in results for ok in r.checks.values())
    out += [
        "Correctness checks inside the runs: "
        + ("all held." if checks_ok else "**some failed** (see the scenarios)."),
        "",
    ]
    for result in results:
        out += [f"## {result.title}", "", result.setup, ""]
        for table in result.tables:
            out += _table(table)
        if result.breakdown:
            out += ["Where the time went:", ""]
            out += [f"- {line}" for line in result.breakdown]
            out.append("")
        failed = [name for name, ok in result.checks.items() if not ok]
        out += [
            "Checks: "
            + "; ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in result.checks.items())
            + ("" if not failed else f" — **failed: {', '.join(failed)}**"),
            "",
            f"Scenario wall time, set-up included: {fmt_seconds(result.seconds)}.",
            "",
        ]
    out += ["## Notes", "", NOTES_BEGIN, _kept_notes(previous), NOTES_END, ""]
    return "\n".join(out)
