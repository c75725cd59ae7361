"""Webhook delivery's bookkeeping: whether an endpoint is on, which endpoint is handed to a
task, and redelivery of everything after a sequence number.

An endpoint is on or off (``enabled``, with ``disabled_reason`` and ``disabled_at``): a
switch with its reason, not a state of a lifecycle (``payouts.lifecycle`` is the only writer
of ``state`` columns, each move audited), so the ``state`` column of 0010 becomes the flag.

``webhook_endpoints.dispatched_at`` is when beat last handed the endpoint to a delivery task;
beat does not hand it out again until the task is done (it clears the column) or the lease
has passed (a worker killed mid-delivery), so a slow receiver does not pile up tasks. A
redelivery asks for one event (``event_id``) or for everything after a sequence number
(``after_seq``: the endpoint's cursor goes back to it when the request is served).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE webhook_endpoints
            ADD COLUMN enabled boolean NOT NULL DEFAULT true,
            ADD COLUMN dispatched_at timestamptz,
            ADD COLUMN disabled_at timestamptz,
            ADD CONSTRAINT webhook_endpoints_cursor CHECK (delivered_seq >= 0 AND failures >= 0);
        UPDATE webhook_endpoints SET enabled = (state = 'enabled');
        ALTER TABLE webhook_endpoints DROP COLUMN state;
        ALTER TABLE webhook_redeliveries
            ALTER COLUMN event_id DROP NOT NULL,
            ADD COLUMN after_seq bigint CHECK (after_seq >= 0),
            ADD CONSTRAINT webhook_redeliveries_one_kind
                CHECK ((event_id IS NULL) <> (after_seq IS NULL));
        CREATE INDEX webhook_secrets_live ON webhook_secrets (endpoint_id)
            WHERE expires_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX webhook_secrets_live;
        DELETE FROM webhook_redeliveries WHERE event_id IS NULL;
        ALTER TABLE webhook_redeliveries
            DROP CONSTRAINT webhook_redeliveries_one_kind,
            DROP COLUMN after_seq,
            ALTER COLUMN event_id SET NOT NULL;
        ALTER TABLE webhook_endpoints
            ADD COLUMN state text NOT NULL DEFAULT 'enabled'
                CHECK (state IN ('enabled', 'disabled'));
        UPDATE webhook_endpoints SET state = CASE WHEN enabled THEN 'enabled' ELSE 'disabled' END;
        ALTER TABLE webhook_endpoints
            DROP COLUMN enabled,
            DROP CONSTRAINT webhook_endpoints_cursor,
            DROP COLUMN disabled_at,
            DROP COLUMN dispatched_at;
        """
    )
