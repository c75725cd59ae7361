"""Posting a small journal (a handful of legs) through one INSERT of its entries.

Bulk postings (earnings, roll-ups) write their entries with set-based SQL in their own
modules; PostgreSQL checks every journal balances at commit either way. Whoever posts to a
carry account also moves its row of ``account_balances`` in the same statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

# The balances kept beside the entries (``account_balances``), from a CTE ``legs`` of the
# entries just posted (account_id, amount): the carry accounts, which the roll-up reads for
# every creator it settles and would otherwise sum over all their history.
KEEP_BALANCES = """
    INSERT INTO account_balances (account_id, balance)
    SELECT l.account_id, sum(l.amount) FROM legs l
      JOIN accounts a ON a.id = l.account_id AND a.kind = 'creator_dust'
     GROUP BY l.account_id
    ON CONFLICT (account_id) DO UPDATE SET balance = account_balances.balance + EXCLUDED.balance
"""


@dataclass(frozen=True)
class Leg:
    account_id: int
    amount: int  # signed: debit positive, credit negative
    payout_id: int | None = None
    credit_id: int | None = None


def open_journal(session: Session, kind: str, cause: str) -> int:
    return int(
        session.execute(
            text("INSERT INTO journals (kind, cause) VALUES (:kind, :cause) RETURNING id"),
            {"kind": kind, "cause": cause},
        ).scalar_one()
    )


def post(session: Session, kind: str, cause: str, legs: Sequence[Leg]) -> int:
    """Write one journal with its legs; zero legs are dropped, the rest must balance."""
    legs = [leg for leg in legs if leg.amount != 0]
    if not legs:
        raise ValueError("a journal needs at least one non-zero leg")
    journal_id = open_journal(session, kind, cause)
    session.execute(
        text(
            f"""
            WITH legs AS (
                INSERT INTO entries (journal_id, account_id, amount, payout_id, credit_id)
                SELECT :journal, * FROM unnest(CAST(:accounts AS bigint[]),
                    CAST(:amounts AS numeric[]), CAST(:payouts AS bigint[]),
                    CAST(:credits AS bigint[]))
                RETURNING account_id, amount
            )
            {KEEP_BALANCES}
            """
        ),
        {
            "journal": journal_id,
            "accounts": [leg.account_id for leg in legs],
            "amounts": [leg.amount for leg in legs],
            "payouts": [leg.payout_id for leg in legs],
            "credits": [leg.credit_id for leg in legs],
        },
    )
    return journal_id


@dataclass(frozen=True)
class Posting:
    """One small journal of many posted together (``post_many``)."""

    kind: str
    cause: str
    legs: Sequence[Leg]


def post_many(session: Session, postings: Sequence[Posting]) -> list[int]:
    """Write many small journals in three statements, whatever their number (a reconcile
    finalizing hundreds of batches posts two each); the same rules as ``post``. Returns the
    journals' ids, in order."""
    postings = [Posting(p.kind, p.cause, [leg for leg in p.legs if leg.amount]) for p in postings]
    if any(not p.legs for p in postings):
        raise ValueError("a journal needs at least one non-zero leg")
    if not postings:
        return []
    # Ids first, so each entry can name its journal without relying on RETURNING's order.
    ids = [
        int(i)
        for i in session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('journals', 'id'))"
                " FROM generate_series(1, :n)"
            ),
            {"n": len(postings)},
        ).scalars()
    ]
    session.execute(
        text(
            """
            INSERT INTO journals (id, kind, cause)
            SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:kinds AS text[]),
                                 CAST(:causes AS text[]))
            """
        ),
        {"ids": ids, "kinds": [p.kind for p in postings], "causes": [p.cause for p in postings]},
    )
    legs = [
        (journal_id, leg) for journal_id, p in zip(ids, postings, strict=True) for leg in p.legs
    ]
    session.execute(
        text(
            f"""
            WITH legs AS (
                INSERT INTO entries (journal_id, account_id, amount, payout_id, credit_id)
                SELECT * FROM unnest(CAST(:journals AS bigint[]), CAST(:accounts AS bigint[]),
                    CAST(:amounts AS numeric[]), CAST(:payouts AS bigint[]),
                    CAST(:credits AS bigint[]))
                RETURNING account_id, amount
            )
            {KEEP_BALANCES}
            """
        ),
        {
            "journals": [j for j, _ in legs],
            "accounts": [leg.account_id for _, leg in legs],
            "amounts": [leg.amount for _, leg in legs],
            "payouts": [leg.payout_id for _, leg in legs],
            "credits": [leg.credit_id for _, leg in legs],
        },
    )
    return ids
