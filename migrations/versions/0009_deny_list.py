"""The deny list: addresses no payout may go to, imported by operators, kept as history.

Each import appends rows (an address listed or unlisted, the reason, the file it came from,
who imported it and when); the latest row of an address says whether it is denied now.
Rows are never changed or deleted, so the list's history is its audit trail.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deny_list",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_by", sa.String(64), nullable=False),
        sa.Column(
            "imported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("deny_list_address_idx", "deny_list", ["address", "id"])
    op.execute(
        """
        CREATE TRIGGER deny_list_append_only BEFORE UPDATE OR DELETE ON deny_list
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER deny_list_no_truncate BEFORE TRUNCATE ON deny_list
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
        """
    )


def downgrade() -> None:
    op.drop_table("deny_list")
