"""The hot wallet's transactions may rotate the escrow's claim signer too.

``payouts claims rotate-signer`` sends ``setSigner`` from the escrow's owner, which ``payouts
chain deploy`` makes the hot wallet; a hot wallet has one nonce lane, so the rotation is a
wallet transaction like a top-up (its asset the chain's native currency, its amount 0).

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE wallet_transactions DROP CONSTRAINT wallet_transactions_purpose_check,
            ADD CONSTRAINT wallet_transactions_purpose_check
                CHECK (purpose IN ('topup', 'claim', 'signer'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE wallet_transactions DROP CONSTRAINT wallet_transactions_purpose_check,
            ADD CONSTRAINT wallet_transactions_purpose_check
                CHECK (purpose IN ('topup', 'claim'));
        """
    )
