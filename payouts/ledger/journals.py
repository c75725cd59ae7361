"""Posting a small journal (a handful of legs) through one INSERT of its entries.

Bulk postings (earnings, roll-ups) write their entries with set-based SQL in their own
modules; PostgreSQL checks every journal balances at commit either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


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
            """
            INSERT INTO entries (journal_id, account_id, amount, payout_id, credit_id)
            SELECT :journal, * FROM unnest(CAST(:accounts AS bigint[]),
                CAST(:amounts AS numeric[]), CAST(:payouts AS bigint[]), CAST(:credits AS bigint[]))
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
