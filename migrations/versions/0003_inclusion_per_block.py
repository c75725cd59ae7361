"""A payout as the chain reported it, per block: the same transaction can be included twice.

After a reorg the same signed transaction may land again in another block, at another or the
same log index. Keying the reported transfers by (block hash, tx hash, log index) keeps each
inclusion's rows (the orphaned ones stay as history, the table is append-only), and readers
pick the rows of the block the batch is in now.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("onchain_transfers_tx_hash_log_index_key", "onchain_transfers")
    op.create_unique_constraint(
        "onchain_transfers_block_hash_tx_hash_log_index_key",
        "onchain_transfers",
        ["block_hash", "tx_hash", "log_index"],
    )


def downgrade() -> None:
    op.drop_constraint("onchain_transfers_block_hash_tx_hash_log_index_key", "onchain_transfers")
    op.create_unique_constraint(
        "onchain_transfers_tx_hash_log_index_key", "onchain_transfers", ["tx_hash", "log_index"]
    )
