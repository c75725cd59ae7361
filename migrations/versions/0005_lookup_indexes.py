"""Indexes for the lookups that run per batch and per roll-up at scale.

Measured by scripts/bench at 100,000 payouts: ``payouts check``'s "paid on chain exactly
once" joined onchain_transfers by payout without an index (a plan that ran for minutes), the
reconciler moves a batch's payouts by ``batch_id`` (a sequential scan of payouts per batch),
and the roll-up links credits to the payouts of its run by ``rollup_run_id``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("onchain_transfers_payout_idx", "onchain_transfers", ["payout_id"])
    op.create_index("payouts_batch_idx", "payouts", ["batch_id"])
    op.create_index("payouts_rollup_run_idx", "payouts", ["rollup_run_id"])


def downgrade() -> None:
    op.drop_index("payouts_rollup_run_idx", table_name="payouts")
    op.drop_index("payouts_batch_idx", table_name="payouts")
    op.drop_index("onchain_transfers_payout_idx", table_name="onchain_transfers")
