"""Events: what happened to a marketplace's money, written with the change itself.

``events`` is a transactional outbox: the lifecycle writes an event row in the statement (or
the transaction) that changes the state, so there is no event without its change and no change
without its event. Rows are append-only except for ``seq``, the per-marketplace sequence number
the sequencer gives each event after its transaction committed (see ``payouts.events``).

``event_counters`` holds each marketplace's last sequence number. ``webhook_endpoints``,
``webhook_secrets`` and ``webhook_attempts`` hold where events are pushed, how they are signed
(several secrets during a rotation), and every delivery attempt.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            id bigserial PRIMARY KEY,
            marketplace_id bigint NOT NULL REFERENCES marketplaces (id),
            seq bigint,
            type text NOT NULL,
            subject text NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            sequenced_at timestamptz,
            CONSTRAINT events_seq_once CHECK ((seq IS NULL) = (sequenced_at IS NULL)),
            CONSTRAINT events_seq_unique UNIQUE (marketplace_id, seq)
        );
        CREATE INDEX events_unsequenced ON events (id) WHERE seq IS NULL;
        CREATE INDEX events_subject ON events (marketplace_id, subject, id);

        -- Append-only, but for the one write the sequencer makes: seq from NULL to a number.
        CREATE FUNCTION events_sequence_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.seq IS NULL AND NEW.seq IS NOT NULL
               AND (NEW.id, NEW.marketplace_id, NEW.type, NEW.subject, NEW.payload,
                    NEW.created_at)
                   IS NOT DISTINCT FROM
                   (OLD.id, OLD.marketplace_id, OLD.type, OLD.subject, OLD.payload,
                    OLD.created_at)
            THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'events are append-only: only seq is set, once'
                USING ERRCODE = 'restrict_violation';
        END $$;
        CREATE TRIGGER events_append_only BEFORE UPDATE ON events
            FOR EACH ROW EXECUTE FUNCTION events_sequence_only();
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

        CREATE TABLE event_counters (
            marketplace_id bigint PRIMARY KEY REFERENCES marketplaces (id),
            last_seq bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
        );

        CREATE TABLE webhook_endpoints (
            id bigserial PRIMARY KEY,
            marketplace_id bigint NOT NULL REFERENCES marketplaces (id),
            url text NOT NULL,
            event_types text[] NOT NULL DEFAULT '{}',
            state text NOT NULL DEFAULT 'enabled'
                CHECK (state IN ('enabled', 'disabled')),
            disabled_reason text,
            -- The last sequence number delivered (or skipped as unwanted) in order.
            delivered_seq bigint NOT NULL DEFAULT 0,
            -- The head event's failed tries, when it is tried next, since when it fails.
            failures int NOT NULL DEFAULT 0,
            retry_at timestamptz,
            failing_since timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX webhook_endpoints_marketplace ON webhook_endpoints (marketplace_id, id);

        CREATE TABLE webhook_secrets (
            id bigserial PRIMARY KEY,
            endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id),
            secret text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            -- Set when a newer secret replaces it: both sign until then (the overlap).
            expires_at timestamptz
        );
        CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id, id);

        -- Redeliveries asked for by an operator or the marketplace, served before the cursor.
        CREATE TABLE webhook_redeliveries (
            id bigserial PRIMARY KEY,
            endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id),
            event_id bigint NOT NULL REFERENCES events (id),
            requested_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            done_at timestamptz
        );
        CREATE INDEX webhook_redeliveries_due ON webhook_redeliveries (endpoint_id, id)
            WHERE done_at IS NULL;

        CREATE TABLE webhook_attempts (
            id bigserial PRIMARY KEY,
            endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id),
            event_id bigint NOT NULL REFERENCES events (id),
            attempt int NOT NULL,
            status int,
            error text,
            latency_ms int NOT NULL,
            response text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
        CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id);
        CREATE TRIGGER webhook_attempts_append_only BEFORE UPDATE OR DELETE ON webhook_attempts
            FOR EACH ROW EXECUTE FUNCTION refuse_change();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE webhook_attempts, webhook_redeliveries, webhook_secrets, webhook_endpoints,
            event_counters, events;
        DROP FUNCTION events_sequence_only();
        """
    )
