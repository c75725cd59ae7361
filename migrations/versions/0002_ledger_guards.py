"""PostgreSQL itself refuses what the ledger must never contain.

- journals, entries, batch items and the audit trail are append-only (no UPDATE, DELETE or
  TRUNCATE);
- entries may only be added to a journal in the transaction that created it, and at commit
  every journal must have entries that sum to zero per asset (deferred constraint trigger,
  as django-hordak does for its legs);
- the money-bearing columns of credits and payouts never change after insert;
- a row in a final state keeps it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = ("journals", "entries", "transitions", "batch_items", "onchain_transfers")

# Final states per table; keep in step with payouts.lifecycle.
FINAL_STATES = {
    "credits": ("paid", "voided"),
    "payouts": ("finalized", "cancelled"),
    "batches": ("finalized", "failed"),
    "tx_attempts": ("replaced", "failed"),
}

IMMUTABLE_COLUMNS = {
    "credits": (
        "marketplace_id",
        "creator_id",
        "asset_id",
        "amount",
        "idempotency_key",
        "request_hash",
        "journal_id",
    ),
    "payouts": ("creator_id", "asset_id", "amount", "recipient", "window_start"),
    "batches": ("public_id", "asset_id", "chain_id", "payer", "item_count", "total"),
    "tx_attempts": ("batch_id", "chain_id", "sender", "nonce", "tx_hash", "raw"),
}


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$;

        CREATE FUNCTION check_entries_join_open_journal() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM new_rows n JOIN journals j ON j.id = n.journal_id
                       WHERE j.created_txid <> txid_current()) THEN
                RAISE EXCEPTION 'entries can only join a journal in the transaction that created it'
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NULL;
        END $$;

        CREATE FUNCTION check_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            bad record;
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM entries WHERE journal_id = NEW.id) THEN
                RAISE EXCEPTION 'journal % has no entries', NEW.id
                    USING ERRCODE = 'check_violation';
            END IF;
            SELECT a.asset_id, sum(e.amount) AS total INTO bad
              FROM entries e JOIN accounts a ON a.id = e.account_id
             WHERE e.journal_id = NEW.id
             GROUP BY a.asset_id HAVING sum(e.amount) <> 0 LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'journal % does not balance: asset % sums to %',
                    NEW.id, bad.asset_id, bad.total USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$;

        CREATE FUNCTION refuse_final_state_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% % is in final state %: refused change to %',
                TG_TABLE_NAME, OLD.id, OLD.state, NEW.state USING ERRCODE = 'restrict_violation';
        END $$;

        CREATE FUNCTION refuse_immutable_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '%: money-bearing columns never change (row %)', TG_TABLE_NAME, OLD.id
                USING ERRCODE = 'restrict_violation';
        END $$;

        CREATE TRIGGER entries_join_open_journal AFTER INSERT ON entries
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION check_entries_join_open_journal();

        CREATE CONSTRAINT TRIGGER journal_balanced AFTER INSERT ON journals
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION check_journal_balanced();
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"""
            CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION refuse_change();
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
            """
        )
    for table, finals in FINAL_STATES.items():
        states = ", ".join(f"'{s}'" for s in finals)
        op.execute(
            f"""
            CREATE TRIGGER {table}_final_state BEFORE UPDATE OF state ON {table}
                FOR EACH ROW WHEN (OLD.state IN ({states}) AND NEW.state IS DISTINCT FROM OLD.state)
                EXECUTE FUNCTION refuse_final_state_change();
            """
        )
    for table, columns in IMMUTABLE_COLUMNS.items():
        changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in columns)
        op.execute(
            f"""
            CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table}
                FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION refuse_immutable_change();
            CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION refuse_change();
            """
        )


def downgrade() -> None:
    for table in IMMUTABLE_COLUMNS:
        op.execute(f"DROP TRIGGER {table}_immutable ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_delete ON {table}")
    for table in FINAL_STATES:
        op.execute(f"DROP TRIGGER {table}_final_state ON {table}")
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
    op.execute(
        """
        DROP TRIGGER journal_balanced ON journals;
        DROP TRIGGER entries_join_open_journal ON entries;
        DROP FUNCTION refuse_immutable_change(); DROP FUNCTION refuse_final_state_change();
        DROP FUNCTION check_journal_balanced(); DROP FUNCTION check_entries_join_open_journal();
        DROP FUNCTION refuse_change();
        """
    )
