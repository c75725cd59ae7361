"""Holds: a payout or a creator kept out of batches, with its rule, reason, actor and expiry.

- ``holds`` records every hold: what it holds (a payout, or a creator and so all their
  payouts), the rule that placed it (an operator, a marketplace, a velocity limit, a deny
  list, the address-change cool-down, a refused transfer), the reason, the figures that
  tripped a rule, who placed it, when it expires, and how it ended (released or rejected,
  by whom, why). Its state (active -> released | rejected) is final once ended, and what it
  holds never changes.
- a payout may be ``held`` (pending -> held -> pending, or cancelled after a rejection);
- creators already held (a token refused their address) get the hold row they lacked.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PAYOUT_STATES = (
    "pending", "batched", "submitted", "confirmed", "finalized", "cancelled", "held",
)  # fmt: skip
OLD_PAYOUT_STATES = PAYOUT_STATES[:-1]


def _payout_check(states: tuple[str, ...]) -> None:
    op.drop_constraint("payouts_state_known", "payouts", type_="check")
    listed = ", ".join(f"'{s}'" for s in states)
    op.create_check_constraint("payouts_state_known", "payouts", f"state IN ({listed})")


def upgrade() -> None:
    _payout_check(PAYOUT_STATES)
    op.create_table(
        "holds",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("creator_id", sa.BigInteger(), sa.ForeignKey("creators.id"), nullable=False),
        sa.Column("payout_id", sa.BigInteger(), sa.ForeignKey("payouts.id"), nullable=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("placed_by", sa.String(64), nullable=False),
        sa.Column(
            "placed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("ended_by", sa.String(64), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('active', 'released', 'rejected')", name="holds_state_known"),
    )
    op.create_index("holds_active_idx", "holds", ["creator_id"], postgresql_where=sa.text(
        "state = 'active'"
    ))  # fmt: skip
    op.create_index("holds_payout_idx", "holds", ["payout_id"])
    op.execute(
        """
        CREATE TRIGGER holds_final_state BEFORE UPDATE OF state ON holds
            FOR EACH ROW WHEN (OLD.state IN ('released', 'rejected')
                               AND NEW.state IS DISTINCT FROM OLD.state)
            EXECUTE FUNCTION refuse_final_state_change();
        CREATE TRIGGER holds_immutable BEFORE UPDATE ON holds
            FOR EACH ROW WHEN (NEW.creator_id IS DISTINCT FROM OLD.creator_id
                               OR NEW.payout_id IS DISTINCT FROM OLD.payout_id
                               OR NEW.rule IS DISTINCT FROM OLD.rule
                               OR NEW.figures IS DISTINCT FROM OLD.figures
                               OR NEW.placed_by IS DISTINCT FROM OLD.placed_by
                               OR NEW.placed_at IS DISTINCT FROM OLD.placed_at)
            EXECUTE FUNCTION refuse_immutable_change();
        CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        """
    )
    # Creators held before holds had rows (a token refused their address): their hold, visible.
    op.execute(
        """
        INSERT INTO holds (creator_id, rule, reason, placed_by)
        SELECT id, 'transfer_failed', coalesce(held_reason, 'held'), 'migration 0008'
          FROM creators WHERE state = 'held'
        """
    )


def downgrade() -> None:
    op.drop_table("holds")
    _payout_check(OLD_PAYOUT_STATES)
