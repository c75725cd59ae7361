"""Entries and payouts inserted by the hundred thousand check what they name by one join.

The statement-level checks of 0014 and 0015 look up each distinct value of the inserted rows
by its index, a plan PL/pgSQL prepares once per session (a transition table has no
statistics, so it is planned for a couple of hundred values). The roll-up's statement inserts
200,000 entries naming 200,000 accounts, and 100,000 payouts naming 100,000 creators: a hash
of every value, then as many index probes, each fetching its row from a page the visibility
map does not yet cover (the accounts were created by the same statement). Above a thousand
rows the check is now planned for the statement at hand (``EXECUTE``, which sees the
transition table's row count), so PostgreSQL hashes the referenced table once and anti-joins
the inserted rows against it; small statements, ingest's single requests among them, keep the
prepared plan. The check is the same: a statement naming a missing row fails as the key did
(``foreign_key_violation``).

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import runpy
from pathlib import Path

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# (table, ((column, referenced table), ...)) as 0014 and 0015 check them.
CHECKED = (
    ("entries", (("account_id", "accounts"), ("journal_id", "journals"))),
    (
        "payouts",
        (("creator_id", "creators"), ("asset_id", "assets"), ("rollup_run_id", "rollup_runs")),
    ),
)
LARGE = 1000  # rows of one statement above which it is planned for its own size


def _sized(column: str, referenced: str) -> str:
    """PL/pgSQL refusing the statement when a value of ``column`` names no row."""
    return f"""
            IF large THEN
                EXECUTE 'SELECT n.{column} FROM new_rows n WHERE NOT EXISTS'
                     || ' (SELECT FROM {referenced} r WHERE r.id = n.{column}) LIMIT 1'
                   INTO missing;
            ELSE
                SELECT n.v INTO missing FROM (SELECT DISTINCT {column} AS v FROM new_rows) n
                 WHERE NOT EXISTS (SELECT FROM {referenced} r WHERE r.id = n.v) LIMIT 1;
            END IF;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION '%: {column} % names no row of {referenced}', TG_TABLE_NAME,
                    missing USING ERRCODE = 'foreign_key_violation';
            END IF;"""


def _replace(table: str, checks: str, declared: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION check_{table}_references() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            missing bigint;{declared}
        BEGIN{checks}
            RETURN NULL;
        END $$;
        """
    )


def upgrade() -> None:
    for table, keys in CHECKED:
        _replace(
            table,
            "".join(_sized(column, referenced) for column, referenced in keys),
            f"\n            large boolean := (SELECT count(*) > {LARGE} FROM new_rows);",
        )


def downgrade() -> None:
    path = Path(__file__).with_name("0014_references_checked_per_statement.py")
    missing = runpy.run_path(str(path))["_missing"]
    for table, keys in CHECKED:
        _replace(table, "".join(missing(column, referenced) for column, referenced in keys), "")
