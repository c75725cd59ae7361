"""The commit-time balance check of a journal reads that journal's entries by their index.

``check_journal_balanced`` (0002) runs once per journal at commit. PL/pgSQL keeps a generic
plan of its ``NOT EXISTS (SELECT 1 FROM entries WHERE journal_id = NEW.id)`` once five calls
have run, and a generic plan estimates a journal's entries as all entries over the number of
journals: on a ledger of a few large journals (bulk ingests of 10,000, a roll-up's 300,000)
that is tens of thousands of rows, so the planner prefers a sequential scan it expects to
stop early. A new journal's entries are at the end of the table, so the scan read every
entry ever written: 6 to 10 ms of each 7.8 ms COMMIT of a group of single earnings
(``scripts/bench``'s ingest, 112,000 entries; auto_explain), and more as the ledger grows.
Planned for the journal at hand, the estimate is that journal's own (a new id is not among
the common values) and the index answers, whatever the size of the history.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER FUNCTION check_journal_balanced() SET plan_cache_mode = force_custom_plan")


def downgrade() -> None:
    op.execute("ALTER FUNCTION check_journal_balanced() RESET plan_cache_mode")
