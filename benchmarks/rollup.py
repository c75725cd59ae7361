"""Scenario 2: a window of a million credits rolled up into payouts, in seconds and memory.

The roll-up under test is the handler ``payouts.rollup.handlers.rollup`` (set-based SQL in
``payouts.rollup.runs``). The baseline is the loop a first version would write: per
creator, read its accrued credits, sum them in Python, insert its payout, move its credits and
post its legs. Both run on copies of one seeded ledger, for the same window, each in a fresh
process whose peak RSS is reported. The baseline is linear in creators (one loop iteration
each), so on a full-size run it is measured on the first ``baseline_creators`` creators and
scaled; the table says so.

The floor is one GROUP BY of the same credits into a payouts look-alike plus one entry per
payout (``benchmarks.floors``), on a third copy of the same ledger.

``payouts check`` is then timed on the rolled-up ledger, as an operator runs it (the handler
``payouts.tracking.handlers.check``, in a fresh process), once the planner statistics are as
autovacuum would leave them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from benchmarks import floors, stack
from benchmarks.checks import ledger_invariants_hold
from benchmarks.child import in_child
from benchmarks.report import (
    FLOOR_RATIO,
    ScenarioResult,
    Table,
    Target,
    floor_ratio,
    fmt_mb,
    fmt_ratio,
    fmt_seconds,
    met,
)
from benchmarks.seed import Templates
from benchmarks.timing import peak_rss_bytes, stopwatch, time_statements
from payouts.db import engine_for, unit_of_work
from payouts.ledger.accounts import AccountKind, account_id
from payouts.ledger.journals import open_journal
from payouts.rollup import handlers as rollups
from payouts.rollup.handlers import payout_rules
from payouts.rollup.windows import PayoutRule
from payouts.tracking import handlers as tracking
from payouts.tracking.reports import CheckResult

TARGET_SECONDS = 5.0
TARGET_RSS = 300 * 2**20
TARGET_OF_FLOOR = 3.0
TARGET_CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class RollupSizes:
    credits: int
    creators: int
    baseline_creators: int  # creators the per-creator baseline loops over


@dataclass(frozen=True)
class ChildRun:
    seconds: float
    peak_rss: int
    payouts: int
    credits: int
    statements: list[tuple[str, float, int]]  # the slowest, with seconds and calls


def _set_based(env: dict[str, str], window_start: datetime) -> ChildRun:
    rt = stack.runtime_for(env)
    rt.asset_ids()
    with time_statements(engine_for(rt.database_url)) as timer, stopwatch() as watch:
        result = rollups.rollup(rt, window_start=window_start, actor="bench")
    return ChildRun(watch.seconds, peak_rss_bytes(), result.payouts, result.credits, timer.top(6))


@dataclass(frozen=True)
class CheckRun:
    seconds: float
    ok: bool
    slowest: list[tuple[str, float]]  # the checks by name, slowest first, with seconds


def _timed_check(env: dict[str, str]) -> CheckRun:
    rt = stack.runtime_for(env)
    seconds: list[tuple[str, float]] = []
    last = [time.perf_counter()]

    def lap(result: CheckResult) -> None:
        now = time.perf_counter()
        seconds.append((result.name, now - last[0]))
        last[0] = now

    with stopwatch() as watch:
        report = tracking.check(rt, lap)
    return CheckRun(watch.seconds, report.ok, sorted(seconds, key=lambda s: -s[1])[:3])


def _per_creator(env: dict[str, str], window_start: datetime, limit: int) -> ChildRun:
    rt = stack.runtime_for(env)
    window_end = window_start + timedelta(seconds=rt.settings.rollup_window_seconds)
    asset_id = rt.asset_ids()["USDC"]
    rule = payout_rules(rt)[asset_id]
    payouts = credits = 0
    with stopwatch() as watch, rt.uow() as session:
        run_id = session.execute(
            text(
                "INSERT INTO rollup_runs (window_start, window_end, actor, xid_from, xid_to)"
                " VALUES (:s, :e, 'bench', '1', pg_snapshot_xmin(pg_current_snapshot()))"
                " RETURNING id"
            ),
            {"s": window_start, "e": window_end},
        ).scalar_one()
        journal_id = open_journal(session, "rollup", f"per-creator roll-up of {window_start}")
        in_flight = account_id(session, AccountKind.PAYOUTS_IN_FLIGHT, None, asset_id)
        creators = session.execute(
            text(
                "SELECT id, payout_address FROM creators WHERE payout_address IS NOT NULL"
                " ORDER BY id LIMIT :n"
            ),
            {"n": limit},
        ).all()
        for creator in creators:
            moved = _roll_one_creator(
                session, creator, asset_id, rule, window_start, window_end, run_id,
                journal_id, in_flight,
            )  # fmt: skip
            if moved:
                payouts += 1
                credits += moved
        session.commit()
    return ChildRun(watch.seconds, peak_rss_bytes(), payouts, credits, [])


def _roll_one_creator(
    session: Session,
    creator: object,
    asset_id: int,
    rule: PayoutRule,
    window_start: datetime,
    window_end: datetime,
    run_id: int,
    journal_id: int,
    in_flight: int,
) -> int:
    """One iteration of the baseline; returns how many credits it rolled up."""
    creator_id = creator.id  # type: ignore[attr-defined]
    rows = session.execute(
        text(
            "SELECT id, amount FROM credits WHERE creator_id = :c AND asset_id = :a"
            " AND state = 'accrued' AND created_at < :end"
        ),
        {"c": creator_id, "a": asset_id, "end": window_end},
    ).all()
    credited = sum(int(r.amount) for r in rows)
    dust_account = account_id(session, AccountKind.CREATOR_DUST, creator_id, asset_id)
    carried = -int(
        session.execute(
            text("SELECT coalesce(sum(amount), 0) FROM entries WHERE account_id = :a"),
            {"a": dust_account},
        ).scalar_one()
    )
    amount = (credited + carried) // rule.rounding_unit * rule.rounding_unit
    if amount < rule.min_payout or amount <= 0:
        return 0
    payout_id = session.execute(
        text(
            "INSERT INTO payouts (creator_id, asset_id, amount, recipient, window_start,"
            " rollup_run_id) VALUES (:c, :a, :amount, :r, :s, :run) RETURNING id"
        ),
        {
            "c": creator_id,
            "a": asset_id,
            "amount": amount,
            "r": creator.payout_address,  # type: ignore[attr-defined]
            "s": window_start,
            "run": run_id,
        },
    ).scalar_one()
    ids = [r.id for r in rows]  # credits are written once: nothing to move, the run says
    payable = account_id(session, AccountKind.CREATOR_PAYABLE, creator_id, asset_id)
    legs = [(payable, credited), (in_flight, -amount)]
    if carried - (credited + carried - amount):
        legs.append((dust_account, carried - (credited + carried - amount)))
    for account, value in legs:
        session.execute(
            text(
                "INSERT INTO entries (journal_id, account_id, amount, payout_id)"
                " VALUES (:j, :a, :v, :p)"
            ),
            {"j": journal_id, "a": account, "v": value, "p": payout_id},
        )
    return len(ids)


def _payouts_of(url: str, limit: int) -> dict[int, int]:
    with unit_of_work(url) as session:
        rows = session.execute(
            text(
                "SELECT creator_id, amount FROM payouts WHERE creator_id IN"
                " (SELECT id FROM creators ORDER BY id LIMIT :n)"
            ),
            {"n": limit},
        ).all()
    return {r.creator_id: int(r.amount) for r in rows}


def _payout_totals(url: str) -> tuple[int, int]:
    """How many payouts there are and what they pay in all."""
    with unit_of_work(url) as session:
        count, total = session.execute(
            text("SELECT count(*), coalesce(sum(amount), 0) FROM payouts")
        ).one()
    return int(count), int(total)


def _balanced(url: str, credited_total: int) -> dict[str, bool]:
    with unit_of_work(url) as session:
        row = session.execute(
            text(
                """
                SELECT (SELECT coalesce(sum(amount), 0) FROM payouts) AS paid,
                       (SELECT coalesce(-sum(e.amount), 0) FROM entries e
                          JOIN accounts a ON a.id = e.account_id
                         WHERE a.kind = 'creator_dust') AS dust,
                       (SELECT count(*) FROM credit_states
                         WHERE state NOT IN ('rolled_up', 'carried')) AS left_over
                """
            )
        ).one()
    return {
        "payouts + dust carried = credits": int(row.paid) + int(row.dust) == credited_total,
        "every credit rolled up or carried": row.left_over == 0,
        "ledger invariants (payouts check)": ledger_invariants_hold(url),
    }


def run(servers: stack.Servers, sizes: RollupSizes, templates: Templates) -> ScenarioResult:
    source, seeded, seed_seconds = templates.ledger(sizes.credits, sizes.creators)
    env_of = {}
    # One window for both: it closes a second from now, after every seeded credit.
    window_start = datetime.now(UTC) + timedelta(seconds=1) - timedelta(hours=1)
    sample = min(sizes.baseline_creators, sizes.creators)
    # Both copies at once, so the roll-up and its floor read the same ledger: autovacuum may
    # visit the seeded source between two copies made apart, and a copy it has vacuumed (hint
    # bits set, pages all-visible) is read faster than one it has not.
    with (
        stack.cloned_db(servers, source, "rollup") as url,
        stack.cloned_db(servers, source, "rollup_floor") as floor_url,
    ):
        env_of["fast"] = stack.bench_env(servers, url)
        fast = in_child(_set_based, env_of["fast"], window_start)
        checks = _balanced(url, seeded.total)
        audit = in_child(_timed_check, env_of["fast"])
        checks["`payouts check` (timed) finds the ledger sound"] = audit.ok
        fast_sample = _payouts_of(url, sample)
        fast_totals = _payout_totals(url)
        floor = floors.group_by_rollup(
            floor_url, window_start=window_start, rounding_unit=stack.ROUNDING_UNIT,
            min_payout=stack.MIN_PAYOUT,
        )  # fmt: skip
    with stack.cloned_db(servers, source, "rollup_loop") as url:
        slow = in_child(_per_creator, stack.bench_env(servers, url), window_start, sample)
        slow_sample = _payouts_of(url, sample)
    checks["baseline pays the sampled creators the same amounts"] = fast_sample == slow_sample
    checks["one payout per creator"] = fast.payouts == sizes.creators
    checks["the floor made the same payouts (count and total)"] = fast_totals == (
        floor.payouts,
        floor.total,
    )
    of_floor = fast.seconds / floor.seconds

    scale = sizes.creators / sample
    baseline_seconds = slow.seconds * scale
    scaled = (
        ""
        if scale == 1
        else f" (measured on {sample:,} creators in {fmt_seconds(slow.seconds)}, x{scale:g})"
    )
    rows = [
        [
            "seconds",
            fmt_seconds(fast.seconds),
            fmt_seconds(baseline_seconds) + scaled,
            fmt_ratio(baseline_seconds / fast.seconds),
            fmt_seconds(floor.seconds),
            floor_ratio(fast.seconds, floor.seconds),
            f"≤ {fmt_seconds(TARGET_SECONDS)}; ≤ {TARGET_OF_FLOOR:g}x floor",
            f"{met(fast.seconds <= TARGET_SECONDS)}; {met(of_floor <= TARGET_OF_FLOOR)}",
        ],
        [
            "peak RSS of the process",
            fmt_mb(fast.peak_rss),
            fmt_mb(slow.peak_rss) + ("" if scale == 1 else f" (on {sample:,} creators)"),
            fmt_ratio(slow.peak_rss / fast.peak_rss),
            "—",
            "—",
            f"≤ {fmt_mb(TARGET_RSS)}",
            met(fast.peak_rss <= TARGET_RSS),
        ],
    ]
    rows.append(
        [
            "`payouts check` on the rolled-up ledger",
            fmt_seconds(audit.seconds),
            "—",
            "—",
            "—",
            "—",
            f"≤ {fmt_seconds(TARGET_CHECK_SECONDS)}",
            met(audit.seconds <= TARGET_CHECK_SECONDS),
        ]
    )
    breakdown = [
        f"{secs:,.2f} s ({secs / fast.seconds:.0%}) in {calls} x `{sql}`"
        for sql, secs, calls in fast.statements
    ]
    breakdown.append(
        "`payouts check`, its slowest checks (those over the entries are one statement, "
        "counted under the first): "
        + ", ".join(f"{name} {fmt_seconds(secs)}" for name, secs in audit.slowest)
    )
    if seeded.first_insert is not None:
        breakdown.append(
            "seeding, EXPLAIN ANALYZE of its first journal: " + seeded.first_insert.summary()
        )
    return ScenarioResult(
        key="rollup",
        title="2. Roll-up",
        setup=(
            f"{sizes.credits:,} accrued credits over {sizes.creators:,} creators, seeded in "
            f"{fmt_seconds(seed_seconds)} by `benchmarks/seed.py` (generate_series, ledger "
            "guards on; then vacuumed and analysed), rolled up by `rollup.handlers.rollup` into "
            f"{fast.payouts:,} payouts. Baseline: a Python loop per creator (read its credits, "
            "sum, insert the payout, move the credits, post the legs), on a copy of the same "
            "ledger. Each ran in a fresh process (peak RSS is that process's). Floor: one "
            "statement on a third copy of the ledger, a bare GROUP BY of every credit into a "
            "look-alike of `payouts` (rounded to the unit, the minimum applied) with one entry "
            "per payout on the creator's payable account, committed; no run, states, audit "
            "rows, dust or holds (`benchmarks/floors.py`), with the roll-up's own `work_mem`. "
            "The RSS has no floor. Then `payouts check` (the handler, in a fresh process) is "
            "timed on the rolled-up ledger, its statistics analysed first as autovacuum would."
        ),
        tables=[
            Table(
                [
                    "measure",
                    "set-based",
                    "baseline: per-creator loop",
                    "ratio (baseline ÷ value)",
                    "floor: GROUP BY + one entry per creator",
                    FLOOR_RATIO,
                    "target",
                    "met",
                ],
                rows,
            )
        ],
        targets=[
            Target(
                f"roll-up of {sizes.credits:,} credits",
                fmt_seconds(fast.seconds),
                f"≤ {fmt_seconds(TARGET_SECONDS)}",
                fast.seconds <= TARGET_SECONDS,
                of_floor=of_floor,
            ),
            Target(
                f"roll-up of {sizes.credits:,} credits against its floor",
                f"{fmt_seconds(fast.seconds)}, floor {fmt_seconds(floor.seconds)}",
                f"≤ {TARGET_OF_FLOOR:g}x floor",
                of_floor <= TARGET_OF_FLOOR,
                of_floor=of_floor,
            ),
            Target(
                f"`payouts check` on the ledger of {sizes.credits:,} credits",
                fmt_seconds(audit.seconds),
                f"≤ {fmt_seconds(TARGET_CHECK_SECONDS)}",
                audit.seconds <= TARGET_CHECK_SECONDS,
            ),
            Target(
                "roll-up peak RSS",
                fmt_mb(fast.peak_rss),
                f"≤ {fmt_mb(TARGET_RSS)}",
                fast.peak_rss <= TARGET_RSS,
            ),
        ],
        checks=checks,
        breakdown=breakdown,
    )
