"""Matched transfers inserted by the hundred thousand check what they name by one join.

0019's statement-level check looks up each distinct payout of the inserted transfers by its
index, in a plan PL/pgSQL prepares once per session for a transition table of a couple of
hundred rows. A reconciliation inserts a transfer per payout paid: at 100,000 that check took
365 ms of the 1.9 s statement (EXPLAIN ANALYZE in ``scripts/bench``'s reconciliation). As
0021 did for entries and payouts, above a thousand rows the check is planned for the
statement at hand (``EXECUTE``), so PostgreSQL can hash and anti-join instead; small
statements keep the prepared plan. A transfer tied to no payout (the exact path could not
place it) is still not looked up, and an orphan is still refused as the key refused it
(``foreign_key_violation``).

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

import runpy
from pathlib import Path

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

KEYS = (("batch_id", "batches"), ("payout_id", "payouts"))
_HERE = Path(__file__)
# 0021's writer of a check function and its size threshold, reused as they were.
_0021 = runpy.run_path(str(_HERE.with_name("0021_large_statements_check_references_by_join.py")))
LARGE: int = _0021["LARGE"]


def _sized(column: str, referenced: str) -> str:
    """0021's sized check, but a NULL (a transfer tied to no payout) names nothing."""
    return f"""
            IF large THEN
                EXECUTE 'SELECT n.{column} FROM new_rows n WHERE n.{column} IS NOT NULL'
                     || ' AND NOT EXISTS (SELECT FROM {referenced} r WHERE r.id = n.{column})'
                     || ' LIMIT 1'
                   INTO missing;
            ELSE
                SELECT n.v INTO missing FROM (SELECT DISTINCT {column} AS v FROM new_rows) n
                 WHERE n.v IS NOT NULL
                   AND NOT EXISTS (SELECT FROM {referenced} r WHERE r.id = n.v) LIMIT 1;
            END IF;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'onchain_transfers: {column} % names no row of {referenced}',
                    missing USING ERRCODE = 'foreign_key_violation';
            END IF;"""


def upgrade() -> None:
    _0021["_replace"](
        "onchain_transfers",
        "".join(_sized(column, referenced) for column, referenced in KEYS),
        f"\n            large boolean := (SELECT count(*) > {LARGE} FROM new_rows);",
    )


def downgrade() -> None:
    missing = runpy.run_path(str(_HERE.with_name("0019_transfer_references_per_statement.py")))
    _0021["_replace"](
        "onchain_transfers",
        "".join(missing["_missing"](column, referenced) for column, referenced in KEYS),
        "",
    )
