"""When each payout became claimable, so the risk limits count claims as they count batches.

Velocity limits and outflow ceilings weigh what went out in the last hour and day; a batch
says when it was sealed, and a claimable payout now says when it became claimable
(``payouts.claimable_at``, set by the move), indexed for the day's window. Without it a
creator on claim would pass every limit.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

APP_ROLE = "payouts_app"


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE payouts ADD COLUMN claimable_at timestamptz;
        CREATE INDEX payouts_claimable_at_idx ON payouts (asset_id, claimable_at)
            WHERE claimable_at IS NOT NULL;
        GRANT UPDATE (claimable_at) ON payouts TO {APP_ROLE};
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        REVOKE UPDATE (claimable_at) ON payouts FROM {APP_ROLE};
        DROP INDEX payouts_claimable_at_idx;
        ALTER TABLE payouts DROP COLUMN claimable_at;
        """
    )
