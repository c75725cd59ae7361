"""Which inclusions a reorg orphaned: an append-only record, so readers count canonical ones.

``onchain_transfers`` keeps every inclusion the reconciler read (append-only, per block since
0003). When a reorg takes away the block that carried a batch, the unwind records that
inclusion here, keyed by (block hash, tx hash), with the batch, the block number, when it was
seen and the audit row of the batch's move back to broadcast (``unwound_by``). Every check,
report and count reads the transfers of canonical inclusions only: those not recorded here,
and the one its batch stands in now (a block that comes back is taken back by the scan).

Existing databases: an inclusion that is not its batch's current one was left behind by a
reorg (the batcher executes a batch id once, so at most one inclusion of a batch is on the
chain, and the reconciler keeps the batch on that one). Those are recorded here now, with the
batch's last move to broadcast as ``unwound_by``; without them a reorg that a fee-bumped
replacement followed would keep failing ``payouts check``.

Like 0002's tables, PostgreSQL refuses UPDATE, DELETE and TRUNCATE of it (``refuse_change``).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orphaned_inclusions",
        sa.Column("block_hash", sa.String(length=66), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("unwound_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.ForeignKeyConstraint(["unwound_by"], ["transitions.id"]),
        sa.PrimaryKeyConstraint("block_hash", "tx_hash"),
    )
    op.create_index("orphaned_inclusions_batch_idx", "orphaned_inclusions", ["batch_id"])
    op.execute(
        """
        INSERT INTO orphaned_inclusions (block_hash, tx_hash, batch_id, block_number, unwound_by)
        SELECT o.block_hash, o.tx_hash, o.batch_id, min(o.block_number),
               (SELECT max(t.id) FROM transitions t WHERE t.entity = 'batch'
                   AND t.entity_id = o.batch_id AND t.to_state = 'broadcast')
          FROM onchain_transfers o JOIN batches b ON b.id = o.batch_id
         WHERE (o.block_hash, o.tx_hash) IS DISTINCT FROM (b.block_hash, b.tx_hash)
         GROUP BY o.block_hash, o.tx_hash, o.batch_id
        ON CONFLICT DO NOTHING
        """
    )
    op.execute(
        """
        CREATE TRIGGER orphaned_inclusions_append_only BEFORE UPDATE OR DELETE
            ON orphaned_inclusions FOR EACH ROW EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER orphaned_inclusions_no_truncate BEFORE TRUNCATE
            ON orphaned_inclusions FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER orphaned_inclusions_no_truncate ON orphaned_inclusions")
    op.execute("DROP TRIGGER orphaned_inclusions_append_only ON orphaned_inclusions")
    op.drop_index("orphaned_inclusions_batch_idx", table_name="orphaned_inclusions")
    op.drop_table("orphaned_inclusions")
