"""What settlement needs to survive a misbehaving chain.

- tx_attempts: the block height at which an attempt was last sent and how often, so a
  transaction that sits unmined for N blocks can be told from one that was just sent;
- batches: the retry tier a failing submission is in, when it is due, the last error (the
  evidence an operator sees when the tiers run out) and when it was parked for an operator;
  the business-finality depth chosen for its largest payout;
- creators: an open-ended hold with its reason (a token refused to pay their address), which
  keeps their payouts out of batches until an operator releases it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tx_attempts", sa.Column("sent_block", sa.BigInteger(), nullable=True))
    op.add_column("tx_attempts", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "tx_attempts",
        sa.Column("broadcasts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "batches", sa.Column("submit_tier", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("batches", sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("batches", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("batches", sa.Column("finality_depth", sa.Integer(), nullable=True))
    op.add_column("creators", sa.Column("held_reason", sa.Text(), nullable=True))
    op.create_index(
        "batches_live_idx",
        "batches",
        ["state"],
        postgresql_where=sa.text("state IN ('sealed', 'broadcast', 'included', 'confirmed')"),
    )


def downgrade() -> None:
    op.drop_index("batches_live_idx", table_name="batches")
    op.drop_column("creators", "held_reason")
    for column in ("finality_depth", "parked_at", "last_error", "retry_at", "submit_tier"):
        op.drop_column("batches", column)
    for column in ("broadcasts", "sent_at", "sent_block"):
        op.drop_column("tx_attempts", column)
