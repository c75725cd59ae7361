"""The escrow the ledger's claims are for, one per chain, recorded once.

A voucher's cumulative is everything ever made claimable to an address, and an escrow pays it
less what that escrow has paid the address. Pointed at another escrow (a redeployed contract,
a changed ``PAYOUTS_CLAIMS_ADDRESS``), the same cumulative would be paid again from zero.
Settlement and every voucher read bind the configured escrow here first and refuse another.
A ledger with claims already seen on chain is bound to the escrow that paid them.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE claims_escrows (
            chain_id bigint PRIMARY KEY,
            address varchar(42) NOT NULL,
            bound_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TRIGGER claims_escrows_append_only BEFORE UPDATE OR DELETE ON claims_escrows
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER claims_escrows_no_truncate BEFORE TRUNCATE ON claims_escrows
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
        INSERT INTO claims_escrows (chain_id, address)
        SELECT DISTINCT ON (chain_id) chain_id, escrow FROM claims ORDER BY chain_id, id;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE claims_escrows")
