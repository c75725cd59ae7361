"""Events lose the index on (marketplace, subject, id) that nothing reads.

No query filters events by subject: the feed and the webhooks read a marketplace's events by
``seq``, the sequencer unnumbered ones by ``id``. Yet every event written paid for the index:
of the 680 ms that 100,000 ``payout.created`` events took to insert (the roll-up of a million
credits), 250 ms were this index's entries, and a reconciliation writes two events per
payout. A reader by subject, if one comes, brings the index back with the query that needs it.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX events_subject")


def downgrade() -> None:
    op.execute("CREATE INDEX events_subject ON events (marketplace_id, subject, id)")
