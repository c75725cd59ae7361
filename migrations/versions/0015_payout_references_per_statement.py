"""Payouts check the creator, asset and roll-up run they name once per statement, not per row.

The roll-up inserts a payout per creator in one statement; three foreign keys made that three
after-trigger events and index probes per row, a third of the statement at 100,000 payouts.
They become one statement-level trigger over the inserted rows (as 0014 did for credits and
entries), each distinct value looked up once. The database still refuses an orphan: an
insert naming a missing creator, asset or run fails as the key did
(``foreign_key_violation``); creators and assets refuse DELETE since 0014, roll-up runs now
too (a window's run is what makes it exactly once), and a payout never changes what it names
(0002 keeps creator and asset; its run is kept here). ``batch_id`` keeps its key: settlement
updates it.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# (constraint, column, referenced table) as 0001 created them.
KEYS = (
    ("payouts_creator_id_fkey", "creator_id", "creators"),
    ("payouts_asset_id_fkey", "asset_id", "assets"),
    ("payouts_rollup_run_id_fkey", "rollup_run_id", "rollup_runs"),
)


def _missing(column: str, referenced: str) -> str:
    """0014's statement-level check of one reference (PL/pgSQL), written once."""
    path = Path(__file__).with_name("0014_references_checked_per_statement.py")
    spec = importlib.util.spec_from_file_location("references_0014", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module._missing(column, referenced))


def upgrade() -> None:
    checks = "".join(_missing(column, referenced) for _, column, referenced in KEYS)
    op.execute(
        f"""
        CREATE FUNCTION check_payouts_references() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            missing bigint;
        BEGIN{checks}
            RETURN NULL;
        END $$;

        CREATE TRIGGER payouts_references AFTER INSERT ON payouts
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION check_payouts_references();
        CREATE TRIGGER payouts_run_kept BEFORE UPDATE OF rollup_run_id ON payouts
            FOR EACH ROW WHEN (NEW.rollup_run_id IS DISTINCT FROM OLD.rollup_run_id)
            EXECUTE FUNCTION refuse_immutable_change();
        CREATE TRIGGER rollup_runs_no_delete BEFORE DELETE ON rollup_runs
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER rollup_runs_no_truncate BEFORE TRUNCATE ON rollup_runs
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER rollup_runs_id_kept BEFORE UPDATE OF id ON rollup_runs
            FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
            EXECUTE FUNCTION refuse_immutable_change();
        """
    )
    for constraint, _, _ in KEYS:
        op.execute(f"ALTER TABLE payouts DROP CONSTRAINT {constraint}")


def downgrade() -> None:
    for constraint, column, referenced in KEYS:
        op.execute(
            f"ALTER TABLE payouts ADD CONSTRAINT {constraint}"
            f" FOREIGN KEY ({column}) REFERENCES {referenced} (id)"
        )
    op.execute(
        """
        DROP TRIGGER rollup_runs_id_kept ON rollup_runs;
        DROP TRIGGER rollup_runs_no_truncate ON rollup_runs;
        DROP TRIGGER rollup_runs_no_delete ON rollup_runs;
        DROP TRIGGER payouts_run_kept ON payouts;
        DROP TRIGGER payouts_references ON payouts;
        DROP FUNCTION check_payouts_references();
        """
    )
