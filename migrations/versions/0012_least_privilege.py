"""Least privilege: the API and the workers connect as a role that cannot rewrite the ledger.

The migrations run as the tables' owner. The app connects as a member of ``payouts_app``,
which may read every table and insert rows, and update only the columns each stage moves
(states, the links and cursors beside them). It is never granted UPDATE on the append-only
tables (journals, entries, the audit trail, batch items, on-chain transfers...), DELETE or
TRUNCATE on anything, and it owns nothing, so it cannot ALTER a table or disable the triggers
of 0002 that guard the ledger: only the owner can, and the owner is not what the app runs as.

Roles are cluster-wide while this runs once per database (tests clone many): the group role
is created only where missing, and a concurrent creation by another database's migration is
taken as done. Tables added later get SELECT and INSERT through default privileges; a later
migration grants the UPDATEs its new columns need.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

APP_ROLE = "payouts_app"

# The columns each stage updates; everything else is written once, on insert.
UPDATES = {
    "credits": ("state", "payout_id"),
    "payouts": ("state", "batch_id"),
    "batches": (
        "state",
        "nonce",
        "tx_hash",
        "block_number",
        "block_hash",
        "gas_used",
        "effective_gas_price",
        "submit_tier",
        "retry_at",
        "last_error",
        "parked_at",
    ),
    "tx_attempts": ("state", "sent_block", "sent_at", "broadcasts"),
    "creators": ("payout_address", "hold_until", "state", "held_reason"),
    "holds": ("state", "ended_by", "ended_at", "resolution"),
    "exceptions": ("state", "resolution", "resolved_at"),
    "rollup_runs": ("payout_count", "credit_count"),
    "nonce_lanes": ("next_nonce",),
    "chain_checkpoints": ("block_number",),
    # The sequencer's one write to an event: its number, once (a trigger refuses the rest).
    "events": ("seq", "sequenced_at"),
    "event_counters": ("last_seq",),
    "webhook_endpoints": (
        "url",
        "event_types",
        "enabled",
        "disabled_reason",
        "disabled_at",
        "delivered_seq",
        "failures",
        "retry_at",
        "failing_since",
        "dispatched_at",
    ),
    "webhook_secrets": ("expires_at",),
    "webhook_redeliveries": ("done_at",),
}


def upgrade() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration created it a moment ago
        END $$;
        DO $$ BEGIN
            EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO {APP_ROLE}',
                           current_database());
        END $$;
        GRANT USAGE ON SCHEMA public TO {APP_ROLE};
        GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {APP_ROLE};
        REVOKE INSERT ON alembic_version FROM {APP_ROLE};
        GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE};
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO {APP_ROLE};
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO {APP_ROLE};
        """
    )
    for table, columns in UPDATES.items():
        op.execute(f"GRANT UPDATE ({', '.join(columns)}) ON {table} TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(
        f"""
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE ON SEQUENCES FROM {APP_ROLE};
        ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT, INSERT ON TABLES FROM {APP_ROLE};
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE};
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE};
        REVOKE USAGE ON SCHEMA public FROM {APP_ROLE};
        """
    )
