"""Matched transfers check the batch and payout they name once per statement, not per row.

The reconciler keeps a row of ``onchain_transfers`` per payout paid, 100,000 in one INSERT for
a large reconcile; two foreign keys made that two after-trigger events and index probes per
row. They become one statement-level trigger over the inserted rows, as 0014, 0015 and 0018
did for the ledger's tables, each distinct value looked up once (a transfer the exact path
could not tie to a payout names none, and is not looked up).

The database still refuses an orphan: an insert naming a missing batch or payout fails as the
key did (``foreign_key_violation``); batches and payouts refused DELETE already (0002) and now
refuse TRUNCATE and a new id too, so a row once named never goes; a transfer is append-only
(0002), so it never re-points either.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# (constraint, column, referenced table) as 0001 created them.
KEYS = (
    ("onchain_transfers_batch_id_fkey", "batch_id", "batches"),
    ("onchain_transfers_payout_id_fkey", "payout_id", "payouts"),
)
KEPT = ("batches", "payouts")


def _missing(column: str, referenced: str) -> str:
    """PL/pgSQL refusing the statement when a distinct non-null ``column`` names no row."""
    return f"""
            SELECT n.v INTO missing FROM (SELECT DISTINCT {column} AS v FROM new_rows) n
             WHERE n.v IS NOT NULL
               AND NOT EXISTS (SELECT FROM {referenced} r WHERE r.id = n.v) LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'onchain_transfers: {column} % names no row of {referenced}',
                    missing USING ERRCODE = 'foreign_key_violation';
            END IF;"""


def upgrade() -> None:
    checks = "".join(_missing(column, referenced) for _, column, referenced in KEYS)
    op.execute(
        f"""
        CREATE FUNCTION check_onchain_transfers_references() RETURNS trigger
            LANGUAGE plpgsql AS $$
        DECLARE
            missing bigint;
        BEGIN{checks}
            RETURN NULL;
        END $$;

        CREATE TRIGGER onchain_transfers_references AFTER INSERT ON onchain_transfers
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION check_onchain_transfers_references();
        """
    )
    for table in KEPT:
        op.execute(
            f"""
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
            CREATE TRIGGER {table}_id_kept BEFORE UPDATE OF id ON {table}
                FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
                EXECUTE FUNCTION refuse_immutable_change();
            """
        )
    op.execute(
        "ALTER TABLE onchain_transfers " + ", ".join(f"DROP CONSTRAINT {c}" for c, _, _ in KEYS)
    )


def downgrade() -> None:
    keys = ", ".join(
        f"ADD CONSTRAINT {constraint} FOREIGN KEY ({column}) REFERENCES {referenced} (id)"
        for constraint, column, referenced in KEYS
    )
    op.execute(f"ALTER TABLE onchain_transfers {keys}")
    for table in KEPT:
        op.execute(
            f"""
            DROP TRIGGER {table}_id_kept ON {table};
            DROP TRIGGER {table}_no_truncate ON {table};
            """
        )
    op.execute(
        """
        DROP TRIGGER onchain_transfers_references ON onchain_transfers;
        DROP FUNCTION check_onchain_transfers_references();
        """
    )
