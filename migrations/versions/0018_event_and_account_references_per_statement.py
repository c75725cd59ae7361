"""Events and accounts check the marketplace and asset they name once per statement.

The roll-up writes a ``payout.created`` event per payout and a carry account per creator it
first leaves dust with, 100,000 of each in one statement at a million credits: their foreign
keys were an after-trigger event and an index probe per row (0.6 s and 0.3 s of a roll-up).
They become statement-level triggers over the inserted rows, as 0014 and 0015 did for
credits, entries and payouts, each distinct value looked up once.

The database still refuses an orphan: an insert naming a missing marketplace (events) or asset
(accounts) fails as the key did (``foreign_key_violation``); marketplaces and assets refuse
DELETE, TRUNCATE and a new id since 0014; events are append-only but for their sequence
number (0010) and an account never changes its asset (guarded here).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import runpy
from pathlib import Path

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# (table, constraint, column, referenced table) as 0001 and 0010 created them.
KEYS = (
    ("events", "events_marketplace_id_fkey", "marketplace_id", "marketplaces"),
    ("accounts", "accounts_asset_id_fkey", "asset_id", "assets"),
)


def _missing(column: str, referenced: str) -> str:
    """0014's statement-level check of one reference (PL/pgSQL), written once."""
    path = Path(__file__).with_name("0014_references_checked_per_statement.py")
    return str(runpy.run_path(str(path))["_missing"](column, referenced))


def upgrade() -> None:
    for table, constraint, column, referenced in KEYS:
        op.execute(
            f"""
            CREATE FUNCTION check_{table}_references() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                missing bigint;
            BEGIN{_missing(column, referenced)}
                RETURN NULL;
            END $$;

            CREATE TRIGGER {table}_references AFTER INSERT ON {table}
                REFERENCING NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION check_{table}_references();
            ALTER TABLE {table} DROP CONSTRAINT {constraint};
            """
        )
    # The key also refused re-pointing an account at a missing asset; an account's asset is
    # part of what its entries mean, so it never changes at all.
    op.execute(
        """
        CREATE TRIGGER accounts_asset_kept BEFORE UPDATE OF asset_id ON accounts
            FOR EACH ROW WHEN (NEW.asset_id IS DISTINCT FROM OLD.asset_id)
            EXECUTE FUNCTION refuse_immutable_change();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER accounts_asset_kept ON accounts")
    for table, constraint, column, referenced in KEYS:
        op.execute(
            f"""
            ALTER TABLE {table} ADD CONSTRAINT {constraint}
                FOREIGN KEY ({column}) REFERENCES {referenced} (id);
            DROP TRIGGER {table}_references ON {table};
            DROP FUNCTION check_{table}_references();
            """
        )
