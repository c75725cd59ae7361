"""Entries check that their journal is still open once per journal, not once per entry.

The statement-level check of 0002 joined every inserted entry to its journal: ten thousand
index probes of the same journal for an earnings request of ten thousand credits (a fifth of
its reference checks). The distinct journals of the statement are few, so each is looked up
once; the rule is the same: an entry may only join a journal created by the transaction that
inserts it.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def _function(entries_and_journals: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION check_entries_join_open_journal() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM FROM {entries_and_journals}
             WHERE j.created_txid <> txid_current() LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'restrict_violation', MESSAGE =
                    'entries can only join a journal in the transaction that created it';
            END IF;
            RETURN NULL;
        END $$;
        """


def upgrade() -> None:
    op.execute(
        _function(
            "(SELECT DISTINCT journal_id FROM new_rows) n JOIN journals j ON j.id = n.journal_id"
        )
    )


def downgrade() -> None:
    # The same rule, one probe per entry, as 0002 wrote it.
    op.execute(_function("new_rows n JOIN journals j ON j.id = n.journal_id"))
