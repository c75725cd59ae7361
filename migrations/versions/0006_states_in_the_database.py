"""Every state column says which states exist, and creators and exceptions have a lifecycle.

- a CHECK constraint per state column lists its states (the same names as the enums of
  ``payouts.states``; a test proves they agree), so a misspelt state never lands;
- creators get a ``state`` (active / held) beside ``held_reason``: a hold is a move of the
  creator lifecycle like any other, audited by the same function;
- a resolved exception keeps its state, as every final state does (trigger as in 0002).

The names are written out here, not imported: a migration is history and must not change
when the code does.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = {
    "credits": ("accrued", "rolled_up", "held", "paid", "voided"),
    "payouts": ("pending", "batched", "submitted", "confirmed", "finalized", "cancelled"),
    "batches": ("open", "sealed", "broadcast", "included", "confirmed", "finalized", "failed"),
    "tx_attempts": ("signed", "broadcast", "mined", "replaced", "failed"),
    "creators": ("active", "held"),
    "exceptions": ("open", "resolved"),
}


def upgrade() -> None:
    op.add_column(
        "creators",
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
    )
    op.execute("UPDATE creators SET state = 'held' WHERE held_reason IS NOT NULL")
    for table, states in STATES.items():
        listed = ", ".join(f"'{s}'" for s in states)
        op.create_check_constraint(f"{table}_state_known", table, f"state IN ({listed})")
    op.execute(
        """
        CREATE TRIGGER exceptions_final_state BEFORE UPDATE OF state ON exceptions
            FOR EACH ROW WHEN (OLD.state IN ('resolved') AND NEW.state IS DISTINCT FROM OLD.state)
            EXECUTE FUNCTION refuse_final_state_change();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER exceptions_final_state ON exceptions")
    for table in STATES:
        op.drop_constraint(f"{table}_state_known", table, type_="check")
    op.drop_column("creators", "state")
