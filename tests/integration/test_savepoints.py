"""The savepoint units of work the ledger tests run in behave like real ones where it matters.

A commit keeps the work for the next unit of work and runs the deferred checks a real commit
runs; a rollback keeps nothing; and nothing reaches the shared database, where another
connection sees none of it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payouts.db import unit_of_work
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.ledger.journals import Leg, post
from payouts.runtime import Runtime


def _credits(rt: Runtime) -> int:
    with rt.uow() as session:
        return int(session.execute(text("SELECT count(*) FROM credits")).scalar_one())


def test_a_committed_unit_is_seen_by_the_next_and_by_no_other_connection(
    ledger_runtime: Runtime, shared_db_url: str
) -> None:
    ingest.record(ledger_runtime, "m", [Earning("k-1", "alice", 100, "USDC")])
    assert _credits(ledger_runtime) == 1
    with unit_of_work(shared_db_url) as outside:
        assert outside.execute(text("SELECT count(*) FROM credits")).scalar_one() == 0


def test_a_unit_that_does_not_commit_leaves_nothing(ledger_runtime: Runtime) -> None:
    ingest.record(ledger_runtime, "m", [Earning("k-1", "alice", 100, "USDC")])
    with ledger_runtime.uow() as session:
        session.execute(text("UPDATE creators SET payout_address = NULL"))
        session.execute(
            text("INSERT INTO marketplaces (name) VALUES ('never committed')")
        )  # no commit: rolled back to the savepoint
    with ledger_runtime.uow() as session:
        names = session.execute(text("SELECT name FROM marketplaces")).scalars().all()
    assert names == ["m"]
    assert _credits(ledger_runtime) == 1


def test_a_commit_runs_the_deferred_zero_sum_check(ledger_runtime: Runtime) -> None:
    with ledger_runtime.uow() as session:
        usdc = ledger_runtime.sync_assets(session)["USDC"]
        ids = ensure_accounts(
            session,
            [(AccountKind.HOT_WALLET, None, usdc), (AccountKind.MARKETPLACE_FUNDING, 1, usdc)],
        )
        session.commit()
    with ledger_runtime.uow() as session:
        post(
            session,
            "test",
            "off by one",
            [
                Leg(ids[(AccountKind.HOT_WALLET, None, usdc)], 100),
                Leg(ids[(AccountKind.MARKETPLACE_FUNDING, 1, usdc)], -99),
            ],
        )
        with pytest.raises(DBAPIError, match="does not balance"):
            session.commit()
    with ledger_runtime.uow() as session:
        assert session.execute(text("SELECT count(*) FROM journals")).scalar_one() == 0
