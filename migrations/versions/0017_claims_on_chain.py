"""Claims on chain: each Claimed log of the escrow, the payouts it covers, and the hot wallet's
own transactions beside its batches (escrow top-ups, vouchers it submits).

- ``claims``: one row per Claimed log, unique per (tx hash, log index, block hash): the same
  claim mined again in another block after a reorg is a row of its own, and the first one is
  kept with ``unwound_at`` set (what a reorg took away stays on record). ``block_hash`` is what
  the reconciler re-checks; ``final_at`` is set once the claim is deep enough. The money
  columns never change and no row is deleted.
- ``claim_payouts``: which payouts a claim covered, written once (append-only).
- ``wallet_transactions``: a transaction of the hot wallet that is not a batch, signed and
  stored under the nonce lane's lock before it is sent (so a crash resends the same bytes),
  with the block it landed in and the journal that booked it. Its money columns never change.

The app role may update only the columns the reconciler and the sender move.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

APP_ROLE = "payouts_app"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE claims (
            id bigserial PRIMARY KEY,
            chain_id bigint NOT NULL,
            escrow varchar(42) NOT NULL,
            asset_id bigint NOT NULL REFERENCES assets (id),
            recipient varchar(42) NOT NULL,
            cumulative numeric(78, 0) NOT NULL CHECK (cumulative > 0),
            paid numeric(78, 0) NOT NULL CHECK (paid > 0),
            tx_hash varchar(66) NOT NULL,
            log_index bigint NOT NULL,
            block_number bigint NOT NULL,
            block_hash varchar(66) NOT NULL,
            seen_at timestamptz NOT NULL DEFAULT now(),
            unwound_at timestamptz,
            final_at timestamptz,
            CONSTRAINT claims_log_once UNIQUE (tx_hash, log_index, block_hash)
        );
        CREATE INDEX claims_open_idx ON claims (block_number)
            WHERE unwound_at IS NULL AND final_at IS NULL;
        CREATE INDEX claims_recipient_idx ON claims (recipient, asset_id)
            WHERE unwound_at IS NULL;
        CREATE TRIGGER claims_immutable BEFORE UPDATE ON claims FOR EACH ROW WHEN (
                NEW.asset_id IS DISTINCT FROM OLD.asset_id
                OR NEW.recipient IS DISTINCT FROM OLD.recipient
                OR NEW.cumulative IS DISTINCT FROM OLD.cumulative
                OR NEW.paid IS DISTINCT FROM OLD.paid
                OR NEW.tx_hash IS DISTINCT FROM OLD.tx_hash
                OR NEW.block_hash IS DISTINCT FROM OLD.block_hash)
            EXECUTE FUNCTION refuse_immutable_change();
        CREATE TRIGGER claims_no_delete BEFORE DELETE ON claims
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER claims_no_truncate BEFORE TRUNCATE ON claims
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

        CREATE TABLE claim_payouts (
            claim_id bigint NOT NULL REFERENCES claims (id),
            payout_id bigint NOT NULL REFERENCES payouts (id),
            PRIMARY KEY (claim_id, payout_id)
        );
        CREATE INDEX claim_payouts_payout_idx ON claim_payouts (payout_id);
        CREATE TRIGGER claim_payouts_append_only BEFORE UPDATE OR DELETE ON claim_payouts
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER claim_payouts_no_truncate BEFORE TRUNCATE ON claim_payouts
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

        CREATE TABLE wallet_transactions (
            id bigserial PRIMARY KEY,
            purpose text NOT NULL CHECK (purpose IN ('topup', 'claim')),
            chain_id bigint NOT NULL,
            sender varchar(42) NOT NULL,
            nonce bigint NOT NULL,
            to_address varchar(42) NOT NULL,
            asset_id bigint NOT NULL REFERENCES assets (id),
            amount numeric(78, 0) NOT NULL CHECK (amount >= 0),
            tx_hash varchar(66) NOT NULL UNIQUE,
            raw bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz,
            block_number bigint,
            block_hash varchar(66),
            reverted boolean,
            journal_id bigint REFERENCES journals (id),
            CONSTRAINT wallet_transactions_nonce_once UNIQUE (chain_id, sender, nonce)
        );
        CREATE INDEX wallet_transactions_open_idx ON wallet_transactions (id)
            WHERE block_number IS NULL;
        CREATE TRIGGER wallet_transactions_immutable BEFORE UPDATE ON wallet_transactions
            FOR EACH ROW WHEN (
                NEW.purpose IS DISTINCT FROM OLD.purpose OR NEW.sender IS DISTINCT FROM OLD.sender
                OR NEW.nonce IS DISTINCT FROM OLD.nonce OR NEW.amount IS DISTINCT FROM OLD.amount
                OR NEW.asset_id IS DISTINCT FROM OLD.asset_id
                OR NEW.tx_hash IS DISTINCT FROM OLD.tx_hash OR NEW.raw IS DISTINCT FROM OLD.raw)
            EXECUTE FUNCTION refuse_immutable_change();
        CREATE TRIGGER wallet_transactions_no_delete BEFORE DELETE ON wallet_transactions
            FOR EACH ROW EXECUTE FUNCTION refuse_change();

        GRANT UPDATE (unwound_at, final_at) ON claims TO {APP_ROLE};
        GRANT UPDATE (sent_at, block_number, block_hash, reverted, journal_id)
            ON wallet_transactions TO {APP_ROLE};
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE wallet_transactions;
        DROP TABLE claim_payouts;
        DROP TABLE claims;
        """
    )
