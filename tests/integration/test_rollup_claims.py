"""Which credits a roll-up run claims: by the commit order it can prove, each exactly once.

A run claims the credits of the transactions that ended before it began. An earning whose
transaction began before a run and commits after it must be taken by the NEXT run, once, and
so must every credit committed after that transaction began (the run cannot tell yet whether
the open transaction will commit below them). Two real connections: one holds a transaction
open with its earning inserted while the other rolls up and commits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from eth_account import Account
from sqlalchemy import text

from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.db import engine_for
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.rollup import handlers as rollups
from payouts.runtime import Runtime
from payouts.tracking import reports
from tests.conftest import ledger_settings
from tests.savepoints import in_transaction, savepoint_units

MARKETPLACE = "market"
HOUR = timedelta(hours=1)


def _earn(rt: Runtime, key: str, creator: str, amount: int) -> int:
    [recorded] = ingest.record(rt, MARKETPLACE, [Earning(key, creator, amount, "USDC")])
    return recorded.credit_id


def _rows(rt: Runtime, sql: str) -> list[tuple[object, ...]]:
    with rt.uow() as session:
        return [tuple(r) for r in session.execute(text(sql)).all()]


def test_a_credit_committed_after_a_run_began_is_taken_by_the_next_run_exactly_once(
    committed_ledger_runtime: Runtime, db_url: str, state_dir: Path
) -> None:
    rt = committed_ledger_runtime
    with rt.uow() as session:
        addresses = {c: str(Account.create().address) for c in ("alice", "bob", "carol")}
        set_payout_addresses(session, ensure_marketplace(session, MARKETPLACE), addresses)
        session.commit()
    early = _earn(rt, "early", "bob", 20_000)
    start = datetime.now(UTC) - timedelta(minutes=1)

    with engine_for(db_url).connect() as connection:
        late_tx = in_transaction(connection)
        late_rt = Runtime(ledger_settings(db_url, state_dir), uow=savepoint_units(connection))
        late = _earn(late_rt, "late", "alice", 50_000)  # inserted, not committed
        # Committed while the late transaction is open: above it in commit order's proof.
        after = _earn(rt, "after", "carol", 30_000)

        first = rollups.rollup(rt, window_start=start)
        assert (first.payouts, first.credits, first.total) == (1, 1, 20_000)
        late_tx.commit()

    second = rollups.rollup(rt, window_start=start + HOUR)
    third = rollups.rollup(rt, window_start=start + 2 * HOUR)
    assert (second.payouts, second.credits, second.total) == (2, 2, 80_000)
    assert (third.payouts, third.credits, third.total) == (0, 0, 0)

    # Each credit in exactly one run's payout, its creator's; every run's range after the last.
    claims = _rows(
        rt,
        "SELECT s.credit_id, r.window_start, p.amount FROM credit_states s"
        " JOIN rollup_runs r ON r.id = s.rollup_run_id JOIN payouts p ON p.id = s.payout_id"
        " ORDER BY s.credit_id",
    )
    assert claims == [
        (early, start, 20_000),
        (late, start + HOUR, 50_000),
        (after, start + HOUR, 30_000),
    ]
    ranges = _rows(rt, "SELECT xid_from, xid_to FROM rollup_runs ORDER BY id")
    assert [r[0] for r in ranges[1:]] == [r[1] for r in ranges[:-1]]
    with rt.uow() as session:
        report = reports.check(session)
    assert report.ok, [r for r in report.results if not r.ok]
