"""PostgreSQL itself refuses what the ledger must never contain (migration 0002's triggers).

Every test talks to a migrated database through plain SQL, as a careless script or a buggy
service would: the refusal must come from the database, not from our Python code. Most run in
a rolled-back transaction (tests/savepoints.py); the checks that only a commit runs (the
deferred zero-sum check, a journal closed by its commit) commit for real on a database of
their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from payouts.db import UnitOfWork, unit_of_work, units_of_work
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.ledger.journals import Leg, open_journal, post
from payouts.rollup import handlers as rollups
from payouts.runtime import Runtime

RESTRICT_VIOLATION = "23001"
CHECK_VIOLATION = "23514"
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@dataclass(frozen=True)
class Books:
    usdc: int
    eth: int
    hot_usdc: int
    funding_usdc: int
    hot_eth: int
    gas_eth: int


def _books(rt: Runtime) -> Books:
    """Two assets and a few house accounts, committed."""
    with rt.uow() as session:
        assets = rt.sync_assets(session)
        usdc, eth = assets["USDC"], assets["ETH"]
        ids = ensure_accounts(
            session,
            [
                (AccountKind.HOT_WALLET, None, usdc),
                (AccountKind.MARKETPLACE_FUNDING, 1, usdc),
                (AccountKind.HOT_WALLET, None, eth),
                (AccountKind.GAS_EXPENSE, None, eth),
            ],
        )
        session.commit()
    return Books(
        usdc=usdc,
        eth=eth,
        hot_usdc=ids[(AccountKind.HOT_WALLET, None, usdc)],
        funding_usdc=ids[(AccountKind.MARKETPLACE_FUNDING, 1, usdc)],
        hot_eth=ids[(AccountKind.HOT_WALLET, None, eth)],
        gas_eth=ids[(AccountKind.GAS_EXPENSE, None, eth)],
    )


@pytest.fixture
def books(ledger_runtime: Runtime) -> Books:
    return _books(ledger_runtime)


@pytest.fixture
def committed_books(committed_ledger_runtime: Runtime) -> Books:
    """The accounts on a database of its own, for the checks that only a real commit runs."""
    return _books(committed_ledger_runtime)


def _journal(uow: UnitOfWork, books: Books) -> int:
    with uow() as session:
        journal_id = post(
            session,
            "test",
            "fund the hot wallet",
            [Leg(books.hot_usdc, 500), Leg(books.funding_usdc, -500)],
        )
        session.commit()
    return journal_id


@pytest.fixture
def committed_journal(uow: UnitOfWork, books: Books) -> int:
    return _journal(uow, books)


@pytest.fixture
def journal_committed_for_real(db_url: str, committed_books: Books) -> int:
    return _journal(units_of_work(db_url), committed_books)


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def _count(uow: UnitOfWork, table: str) -> int:
    with uow() as session:
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _refused(uow: UnitOfWork, sql: str, params: dict[str, object], match: str) -> DBAPIError:
    with uow() as session:
        with pytest.raises(DBAPIError, match=match) as raised:
            session.execute(text(sql), params)
        session.rollback()
    return raised.value


# -- append-only tables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "sql"),
    [
        ("entries", "UPDATE entries SET amount = amount * 2 WHERE journal_id = :j"),
        ("entries", "UPDATE entries SET credit_id = NULL WHERE journal_id = :j"),
        ("entries", "DELETE FROM entries WHERE journal_id = :j"),
        ("journals", "UPDATE journals SET cause = 'rewritten' WHERE id = :j"),
        ("journals", "DELETE FROM journals WHERE id = :j"),
    ],
)
def test_entries_and_journals_refuse_update_and_delete(
    uow: UnitOfWork, committed_journal: int, table: str, sql: str
) -> None:
    verb = sql.split()[0]
    error = _refused(uow, sql, {"j": committed_journal}, f"{table} is append-only: {verb}")
    assert _sqlstate(error) == RESTRICT_VIOLATION
    with uow() as session:
        legs = session.execute(
            text("SELECT amount FROM entries WHERE journal_id = :j ORDER BY amount"),
            {"j": committed_journal},
        ).scalars()
        assert [int(a) for a in legs] == [-500, 500]


def _audit_row(uow: UnitOfWork) -> int:
    with uow() as session:
        row_id = session.execute(
            text(
                "INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)"
                " VALUES ('payout', 1, 'pending', 'batched', 'test', 'test') RETURNING id"
            )
        ).scalar_one()
        session.commit()
    return int(row_id)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE transitions SET to_state = 'finalized' WHERE id = :id",
        "UPDATE transitions SET at = now() - interval '1 day' WHERE id = :id",
        "DELETE FROM transitions WHERE id = :id",
    ],
)
def test_the_audit_trail_refuses_update_and_delete(uow: UnitOfWork, sql: str) -> None:
    row_id = _audit_row(uow)
    error = _refused(uow, sql, {"id": row_id}, "transitions is append-only")
    assert _sqlstate(error) == RESTRICT_VIOLATION
    assert _count(uow, "transitions") == 1


@pytest.mark.parametrize("table", ["entries", "journals", "transitions"])
def test_truncate_of_the_append_only_tables_is_refused(
    uow: UnitOfWork, committed_journal: int, table: str
) -> None:
    _audit_row(uow)
    # CASCADE so that no foreign key answers before the trigger does.
    error = _refused(uow, f"TRUNCATE {table} CASCADE", {}, "is append-only: TRUNCATE refused")
    assert _sqlstate(error) == RESTRICT_VIOLATION
    assert _count(uow, "entries") == 2
    assert _count(uow, "journals") == 1
    assert _count(uow, "transitions") == 1


# -- balanced journals -----------------------------------------------------------------------


def test_a_balanced_journal_commits(db_url: str, committed_books: Books) -> None:
    with unit_of_work(db_url) as session:
        journal_id = post(
            session,
            "test",
            "balanced in two assets",
            [
                Leg(committed_books.hot_usdc, 700),
                Leg(committed_books.funding_usdc, -700),
                Leg(committed_books.gas_eth, 21_000),
                Leg(committed_books.hot_eth, -21_000),
            ],
        )
        session.commit()
    with unit_of_work(db_url) as session:
        total = session.execute(
            text("SELECT sum(amount) FROM entries WHERE journal_id = :j"), {"j": journal_id}
        ).scalar_one()
        assert total == 0


def test_an_unbalanced_journal_is_refused_at_commit_not_before(
    db_url: str, committed_books: Books
) -> None:
    with unit_of_work(db_url) as session:
        journal_id = post(
            session,
            "test",
            "off by one",
            [Leg(committed_books.hot_usdc, 100), Leg(committed_books.funding_usdc, -99)],
        )
        # Deferred: inside the transaction the half-written journal is allowed...
        assert (
            session.execute(
                text("SELECT count(*) FROM entries WHERE journal_id = :j"), {"j": journal_id}
            ).scalar_one()
            == 2
        )
        # ...but it cannot commit.
        with pytest.raises(DBAPIError, match=f"journal {journal_id} does not balance") as raised:
            session.commit()
        assert _sqlstate(raised.value) == CHECK_VIOLATION
    assert _count(units_of_work(db_url), "journals") == 0
    assert _count(units_of_work(db_url), "entries") == 0


def test_a_journal_must_balance_per_asset_not_only_in_total(
    db_url: str, committed_books: Books
) -> None:
    with unit_of_work(db_url) as session:
        post(
            session,
            "test",
            "sums to zero across two assets",
            [Leg(committed_books.hot_usdc, 100), Leg(committed_books.hot_eth, -100)],
        )
        with pytest.raises(DBAPIError, match="does not balance: asset"):
            session.commit()
    assert _count(units_of_work(db_url), "entries") == 0


def test_a_journal_with_no_entries_is_refused_at_commit(
    db_url: str, committed_books: Books
) -> None:
    with unit_of_work(db_url) as session:
        journal_id = open_journal(session, "test", "empty")
        with pytest.raises(DBAPIError, match=f"journal {journal_id} has no entries") as raised:
            session.commit()
        assert _sqlstate(raised.value) == CHECK_VIOLATION
    assert _count(units_of_work(db_url), "journals") == 0


def test_the_balance_check_reads_a_journals_entries_by_index_whatever_the_history(
    db_url: str, committed_books: Books
) -> None:
    """A ledger of a few large journals made a generic plan of the commit-time check scan
    every entry ever written for each new journal (migration 0027). Its plans, as
    auto_explain reports them to this session, read ``entries`` by index every time, past
    the five calls after which PL/pgSQL would settle on a generic plan."""
    with unit_of_work(db_url) as session:
        for n in range(3):
            legs = [Leg(committed_books.hot_usdc, 1 + i) for i in range(1000)]
            legs.append(Leg(committed_books.funding_usdc, -sum(leg.amount for leg in legs)))
            post(session, "test", f"large journal {n}", legs)
        session.commit()
        session.execute(text("ANALYZE entries"))
        session.commit()
    plans: list[str] = []
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.connect() as conn:
        conn.connection.dbapi_connection.add_notice_handler(  # type: ignore[union-attr]
            lambda notice: plans.append(notice.message_primary or "")
        )
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_level = notice",
            "SET client_min_messages = notice",
        ):
            conn.execute(text(setting))
        conn.commit()
        for n in range(8):
            with Session(conn) as session:
                post(
                    session,
                    "test",
                    f"small journal {n}",
                    [Leg(committed_books.hot_usdc, 5), Leg(committed_books.funding_usdc, -5)],
                )
                session.commit()
    engine.dispose()
    checks = [plan for plan in plans if "FROM entries WHERE journal_id = NEW.id" in plan]
    assert len(checks) == 8
    assert all("Index" in plan and "Seq Scan on entries" not in plan for plan in checks), checks


def test_post_refuses_a_journal_of_only_zero_legs(uow: UnitOfWork, books: Books) -> None:
    with uow() as session, pytest.raises(ValueError, match="non-zero leg"):
        post(session, "test", "nothing", [Leg(books.hot_usdc, 0)])


def test_a_zero_entry_is_refused_by_the_database(uow: UnitOfWork, books: Books) -> None:
    with uow() as session:
        journal_id = open_journal(session, "test", "zero leg")
        with pytest.raises(DBAPIError, match="entry_amount_nonzero"):
            session.execute(
                text("INSERT INTO entries (journal_id, account_id, amount) VALUES (:j, :a, 0)"),
                {"j": journal_id, "a": books.hot_usdc},
            )


def test_entries_cannot_join_a_journal_committed_earlier(
    db_url: str, committed_books: Books, journal_committed_for_real: int
) -> None:
    # Even a balanced pair is refused: a committed journal is closed for good.
    with (
        unit_of_work(db_url) as session,
        pytest.raises(
            DBAPIError, match="entries can only join a journal in the transaction that created it"
        ) as raised,
    ):
        session.execute(
            text(
                "INSERT INTO entries (journal_id, account_id, amount)"
                " VALUES (:j, :hot, 1), (:j, :funding, -1)"
            ),
            {
                "j": journal_committed_for_real,
                "hot": committed_books.hot_usdc,
                "funding": committed_books.funding_usdc,
            },
        )
    assert _sqlstate(raised.value) == RESTRICT_VIOLATION
    assert _count(units_of_work(db_url), "entries") == 2


# -- credits and payouts ---------------------------------------------------------------------


def _one_credit(rt: Runtime) -> int:
    [recorded] = ingest.record(
        rt, "guards", [Earning("k-1", "creator-1", 12_345, "USDC", reference="r")]
    )
    return recorded.credit_id


def _one_payout(rt: Runtime) -> int:
    with rt.uow() as session:
        rt.sync_assets(session)
        marketplace_id = int(
            session.execute(
                text("INSERT INTO marketplaces (name) VALUES ('guards') RETURNING id")
            ).scalar_one()
        )
        session.execute(
            text(
                "INSERT INTO creators (marketplace_id, external_id, payout_address)"
                " VALUES (:m, 'creator-1', :a)"
            ),
            {"m": marketplace_id, "a": ADDRESS},
        )
        session.commit()
    ingest.record(rt, "guards", [Earning("k-1", "creator-1", 20_000, "USDC")])
    result = rollups.rollup(rt, window_start=datetime.now(UTC))
    assert result.payouts == 1
    with rt.uow() as session:
        return int(session.execute(text("SELECT id FROM payouts")).scalar_one())


def _force(uow: UnitOfWork, sql: str, params: dict[str, object]) -> None:
    with uow() as session:
        session.execute(text(sql), params)
        session.commit()


def _state(uow: UnitOfWork, table: str, row_id: int) -> str:
    with uow() as session:
        return str(
            session.execute(
                text(f"SELECT state FROM {table} WHERE id = :id"), {"id": row_id}
            ).scalar_one()
        )


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE credits SET reference = 'rewritten' WHERE id = :id",
        "UPDATE credits SET state = state WHERE id = :id",
    ],
)
def test_a_credit_is_written_once(ledger_runtime: Runtime, uow: UnitOfWork, sql: str) -> None:
    """Its state follows from the roll-up run that claimed it: nothing ever updates it."""
    credit_id = _one_credit(ledger_runtime)
    error = _refused(uow, sql, {"id": credit_id}, "credits is append-only: UPDATE refused")
    assert _sqlstate(error) == RESTRICT_VIOLATION


@pytest.mark.parametrize(
    ("final", "back_to"),
    [("finalized", "pending"), ("finalized", "confirmed"), ("cancelled", "pending")],
)
def test_a_payout_in_a_final_state_keeps_it(
    ledger_runtime: Runtime, uow: UnitOfWork, final: str, back_to: str
) -> None:
    payout_id = _one_payout(ledger_runtime)
    assert _state(uow, "payouts", payout_id) == "pending"
    _force(uow, "UPDATE payouts SET state = :s WHERE id = :id", {"s": final, "id": payout_id})
    _refused(
        uow,
        "UPDATE payouts SET state = :s WHERE id = :id",
        {"s": back_to, "id": payout_id},
        f"payouts {payout_id} is in final state {final}: refused change to {back_to}",
    )
    assert _state(uow, "payouts", payout_id) == final


def test_a_final_row_may_be_rewritten_with_the_same_state(
    ledger_runtime: Runtime, uow: UnitOfWork
) -> None:
    payout_id = _one_payout(ledger_runtime)
    _force(uow, "UPDATE payouts SET state = 'finalized' WHERE id = :id", {"id": payout_id})
    _force(uow, "UPDATE payouts SET state = 'finalized' WHERE id = :id", {"id": payout_id})
    assert _state(uow, "payouts", payout_id) == "finalized"


CREDIT_MONEY_CHANGES = [
    "amount = amount + 1",
    "amount = 1",
    "marketplace_id = marketplace_id + 1",
    "asset_id = asset_id + 1",
    "creator_id = creator_id + 1000",
    "idempotency_key = 'another-key'",
    "request_hash = '0000'",
    "journal_id = journal_id + 1",
]


def test_money_columns_of_a_credit_never_change(ledger_runtime: Runtime, uow: UnitOfWork) -> None:
    credit_id = _one_credit(ledger_runtime)
    for change in CREDIT_MONEY_CHANGES:
        error = _refused(
            uow,
            f"UPDATE credits SET {change} WHERE id = :id",
            {"id": credit_id},
            "credits: money-bearing columns never change",
        )
        assert _sqlstate(error) == RESTRICT_VIOLATION, change
    with uow() as session:
        row = session.execute(
            text("SELECT amount, idempotency_key FROM credits WHERE id = :id"), {"id": credit_id}
        ).one()
    assert (row.amount, row.idempotency_key) == (12_345, "k-1")


@pytest.mark.parametrize(
    ("column", "referenced"),
    [("creator_id", "creators"), ("asset_id", "assets"), ("rollup_run_id", "rollup_runs")],
)
def test_a_payout_naming_a_missing_row_is_refused(
    ledger_runtime: Runtime, uow: UnitOfWork, column: str, referenced: str
) -> None:
    """Checked once per statement (0015), still refused as the foreign key refused it."""
    payout_id = _one_payout(ledger_runtime)
    shifted = {c: c for c in ("creator_id", "asset_id", "rollup_run_id")}
    shifted[column] = f"{column} + 1000000"
    error = _refused(
        uow,
        "INSERT INTO payouts (creator_id, asset_id, amount, recipient, window_start,"
        f" rollup_run_id) SELECT {shifted['creator_id']}, {shifted['asset_id']}, amount,"
        f" recipient, window_start + interval '1 hour', {shifted['rollup_run_id']}"
        " FROM payouts WHERE id = :id",
        {"id": payout_id},
        f"payouts: {column} \\d+ names no row of {referenced}",
    )
    assert _sqlstate(error) == "23503"  # foreign_key_violation


def test_a_credit_cannot_be_deleted(ledger_runtime: Runtime, uow: UnitOfWork) -> None:
    credit_id = _one_credit(ledger_runtime)
    _refused(uow, "DELETE FROM credits WHERE id = :id", {"id": credit_id}, "append-only")
    assert _count(uow, "credits") == 1


PAYOUT_MONEY_CHANGES = [
    "amount = amount * 2",
    "recipient = '0x0000000000000000000000000000000000000001'",
    "creator_id = creator_id + 1",
    "window_start = window_start + interval '1 hour'",
]


def test_money_columns_of_a_payout_never_change(ledger_runtime: Runtime, uow: UnitOfWork) -> None:
    payout_id = _one_payout(ledger_runtime)
    for change in PAYOUT_MONEY_CHANGES:
        _refused(
            uow,
            f"UPDATE payouts SET {change} WHERE id = :id",
            {"id": payout_id},
            "payouts: money-bearing columns never change",
        )
    with uow() as session:
        assert (
            session.execute(
                text("SELECT amount FROM payouts WHERE id = :id"), {"id": payout_id}
            ).scalar_one()
            == 20_000
        )
