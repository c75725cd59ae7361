"""Payouts that go by claim: the states, how each payout settled, how each creator wants to.

- a payout may become ``claimable`` (the settlement chose the escrow: its amount waits there
  for a voucher), then ``claimed`` (a Claimed log covers it; back to ``claimable`` when a
  reorg removes that log) and ``finalized`` at depth;
- ``payouts.settled_by`` says whether settlement pushed it in a batch or made it claimable,
  so a voucher's cumulative (every payout to that address in that asset that ever became
  claimable) is one indexed query; once ``claim`` it never changes, so push and pull never
  cover the same cents, and a claimable payout never sits in a batch;
- ``creators.settle_mode``: push, claim, or auto (the policy decides by the gas it costs).

The app role may update the two new columns (settlement writes ``settled_by``, the API a
creator's ``settle_mode``).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

APP_ROLE = "payouts_app"
OLD_PAYOUT_STATES = (
    "pending", "batched", "submitted", "confirmed", "finalized", "cancelled", "held",
)  # fmt: skip
PAYOUT_STATES = (*OLD_PAYOUT_STATES, "claimable", "claimed")


def _listed(states: tuple[str, ...]) -> str:
    return ", ".join(f"'{s}'" for s in states)


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE payouts DROP CONSTRAINT payouts_state_known,
            ADD CONSTRAINT payouts_state_known CHECK (state IN ({_listed(PAYOUT_STATES)}));
        ALTER TABLE creators ADD COLUMN settle_mode text NOT NULL DEFAULT 'auto'
            CONSTRAINT creators_settle_mode_known CHECK (settle_mode IN ('auto', 'push', 'claim'));
        ALTER TABLE payouts ADD COLUMN settled_by text
            CONSTRAINT payouts_settled_by_known CHECK (settled_by IN ('push', 'claim')),
            ADD CONSTRAINT payouts_claim_never_batched
                CHECK (settled_by IS DISTINCT FROM 'claim' OR batch_id IS NULL),
            ADD CONSTRAINT payouts_claim_states_by_claim
                CHECK (state NOT IN ('claimable', 'claimed') OR settled_by = 'claim');

        CREATE TRIGGER payouts_claim_kept BEFORE UPDATE OF settled_by ON payouts
            FOR EACH ROW WHEN (OLD.settled_by = 'claim'
                               AND NEW.settled_by IS DISTINCT FROM OLD.settled_by)
            EXECUTE FUNCTION refuse_immutable_change();

        -- A voucher's cumulative and the payouts a claim covers: by address and asset, in
        -- the order they became claimable.
        CREATE INDEX payouts_claim_idx ON payouts (recipient, asset_id, id)
            WHERE settled_by = 'claim';

        GRANT UPDATE (settled_by) ON payouts TO {APP_ROLE};
        GRANT UPDATE (settle_mode) ON creators TO {APP_ROLE};
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        REVOKE UPDATE (settle_mode) ON creators FROM {APP_ROLE};
        REVOKE UPDATE (settled_by) ON payouts FROM {APP_ROLE};
        DROP INDEX payouts_claim_idx;
        DROP TRIGGER payouts_claim_kept ON payouts;
        ALTER TABLE payouts DROP CONSTRAINT payouts_claim_states_by_claim,
            DROP CONSTRAINT payouts_claim_never_batched, DROP COLUMN settled_by;
        ALTER TABLE creators DROP COLUMN settle_mode;
        ALTER TABLE payouts DROP CONSTRAINT payouts_state_known,
            ADD CONSTRAINT payouts_state_known CHECK (state IN ({_listed(OLD_PAYOUT_STATES)}));
        """
    )
