"""A credit is written once: its state follows from the roll-up run that claimed it.

- ``credits.created_xid``: the inserting transaction's id (``pg_current_xact_id()``, by
  default, so every insert path records it). A roll-up run claims the credits whose ids lie in
  ``[rollup_runs.xid_from, xid_to)``, a range it proves finished (see ``payouts.rollup.runs``),
  so a credit committed late is taken by the next run, never skipped, never twice. A run
  never claims its own transaction's range; the credits its own transaction inserted before it
  (tests roll up in the transaction that earned) it claims by id (``own_xid``, ``own_id_to``),
  and a later range leaves those out;
- ``credits.payout_id`` goes and ``credits.state`` says only what every credit is recorded
  as (``accrued``): ``credit_states`` derives the state and the payout from the run and the
  payout of the credit's creator, asset and run; credits refuse any UPDATE (as DELETE);
- ``account_balances``: the balance of each carry account (``creator_dust``), kept by the
  statements that post to it, so a roll-up reads what a creator carries instead of summing
  the account's whole history;
- ``rollup_runs.actor``: who ran it (a credit's history names it); an audit row may record a
  creation (``from_state`` NULL): the roll-up writes one per payout, none per credit.

Existing rows: each run so far gets a one-id range of its own and a credit linked to a payout
takes its run's id, so it stays with that payout; the credits no run linked take the id after
the last, so the next run claims them. The synthetic ids are below any real transaction id
(every run and credit so far used one).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

APP_ROLE = "payouts_app"


def upgrade() -> None:
    op.execute(
        f"""
        ALTER TABLE rollup_runs
            ADD COLUMN xid_from xid8 NOT NULL DEFAULT '0',
            ADD COLUMN xid_to xid8 NOT NULL DEFAULT '0',
            ADD COLUMN actor varchar(64) NOT NULL DEFAULT 'beat',
            ADD COLUMN own_xid xid8,
            ADD COLUMN own_id_to bigint,
            ADD CONSTRAINT rollup_runs_own_claim CHECK ((own_xid IS NULL) = (own_id_to IS NULL));
        UPDATE rollup_runs SET xid_from = CAST(CAST(id AS text) AS xid8),
                               xid_to = CAST(CAST(id + 1 AS text) AS xid8);
        ALTER TABLE rollup_runs ALTER COLUMN xid_from DROP DEFAULT,
                                ALTER COLUMN xid_to DROP DEFAULT,
                                ALTER COLUMN actor DROP DEFAULT;
        CREATE INDEX rollup_runs_xid_idx ON rollup_runs (xid_to);
        CREATE INDEX rollup_runs_own_idx ON rollup_runs (own_xid, own_id_to)
            WHERE own_xid IS NOT NULL;

        ALTER TABLE credits ADD COLUMN created_xid xid8 NOT NULL DEFAULT '0';
        UPDATE credits c SET created_xid = CAST(CAST(p.rollup_run_id AS text) AS xid8)
          FROM payouts p WHERE p.id = c.payout_id;
        UPDATE credits SET created_xid = (
            SELECT CAST(CAST(coalesce(max(id), 0) + 1 AS text) AS xid8) FROM rollup_runs)
         WHERE payout_id IS NULL;
        ALTER TABLE credits ALTER COLUMN created_xid SET DEFAULT pg_current_xact_id();
        DROP TRIGGER credits_final_state ON credits;
        DROP INDEX credits_accrued_idx;
        UPDATE credits SET state = 'accrued' WHERE state <> 'accrued';
        ALTER TABLE credits DROP CONSTRAINT credits_state_known,
            ADD CONSTRAINT credits_recorded_accrued CHECK (state = 'accrued'),
            DROP COLUMN payout_id;
        CREATE INDEX credits_claim_idx ON credits (creator_id, asset_id, created_xid);
        CREATE INDEX credits_xid_idx ON credits (created_xid);
        CREATE TRIGGER credits_written_once BEFORE UPDATE ON credits
            FOR EACH ROW EXECUTE FUNCTION refuse_change();

        ALTER TABLE transitions ALTER COLUMN from_state DROP NOT NULL;

        -- No foreign key: every row is written by a statement that joined the account (its
        -- entries name it), and payouts check compares each balance with its entries; a
        -- per-row check cost the roll-up a fifth of its journal.
        CREATE TABLE account_balances (
            account_id bigint PRIMARY KEY,
            balance numeric(78, 0) NOT NULL
        );
        INSERT INTO account_balances (account_id, balance)
        SELECT e.account_id, sum(e.amount) FROM entries e
          JOIN accounts a ON a.id = e.account_id AND a.kind = 'creator_dust'
         GROUP BY e.account_id;
        GRANT SELECT, INSERT, UPDATE (balance) ON account_balances TO {APP_ROLE};
        REVOKE UPDATE (state) ON credits FROM {APP_ROLE};

        CREATE VIEW credit_states AS
        SELECT c.id AS credit_id, r.id AS rollup_run_id, p.id AS payout_id,
               CASE WHEN r.id IS NULL THEN 'accrued'
                    WHEN p.state = 'finalized' THEN 'paid'
                    WHEN p.state IS NULL OR p.state = 'cancelled' THEN 'carried'
                    ELSE 'rolled_up' END AS state
          FROM credits c
          LEFT JOIN LATERAL (
               SELECT coalesce(
                   (SELECT o.id FROM rollup_runs o
                     WHERE o.own_xid = c.created_xid AND o.own_id_to >= c.id
                     ORDER BY o.own_id_to, o.id LIMIT 1),
                   (SELECT r.id FROM rollup_runs r
                     WHERE r.xid_to > c.created_xid AND r.xid_from <= c.created_xid
                     ORDER BY r.xid_to, r.id LIMIT 1)) AS id) r ON true
          LEFT JOIN payouts p ON p.rollup_run_id = r.id AND p.creator_id = c.creator_id
               AND p.asset_id = c.asset_id;
        GRANT SELECT ON credit_states TO {APP_ROLE};
        """
    )


def downgrade() -> None:
    # Credits take back the state and payout their run gave them; a carried credit goes back
    # to accrued though its amount stays in the carry account, and the audit rows of payouts'
    # creations stay (append-only), so from_state stays nullable.
    op.execute(
        f"""
        DROP TRIGGER credits_written_once ON credits;
        ALTER TABLE credits DROP CONSTRAINT credits_recorded_accrued,
            ADD COLUMN payout_id bigint REFERENCES payouts (id);
        UPDATE credits c SET payout_id = s.payout_id,
                             state = CASE WHEN s.state = 'paid' THEN 'paid' ELSE 'rolled_up' END
          FROM credit_states s
         WHERE s.credit_id = c.id AND s.state IN ('rolled_up', 'paid');
        DROP VIEW credit_states;
        DROP TABLE account_balances;
        DROP INDEX credits_claim_idx, credits_xid_idx;
        ALTER TABLE credits DROP COLUMN created_xid,
            ADD CONSTRAINT credits_state_known
                CHECK (state IN ('accrued', 'rolled_up', 'held', 'paid', 'voided'));
        CREATE INDEX credits_accrued_idx ON credits (creator_id, asset_id)
            WHERE state = 'accrued';
        CREATE INDEX credits_payout_idx ON credits (payout_id);
        CREATE TRIGGER credits_final_state BEFORE UPDATE OF state ON credits
            FOR EACH ROW
            WHEN (OLD.state IN ('paid', 'voided') AND NEW.state IS DISTINCT FROM OLD.state)
            EXECUTE FUNCTION refuse_final_state_change();
        GRANT UPDATE (state, payout_id) ON credits TO {APP_ROLE};
        ALTER TABLE rollup_runs DROP COLUMN xid_from, DROP COLUMN xid_to, DROP COLUMN actor,
            DROP COLUMN own_xid, DROP COLUMN own_id_to;
        """
    )
