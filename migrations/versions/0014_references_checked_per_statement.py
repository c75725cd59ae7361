"""Credits and entries check their references once per statement, not once per row.

A foreign key checks each inserted row on its own: an after-trigger event and an index probe
per row and per key, four keys on a credit and two on an entry, most of the time an earnings
insert took. They become statement-level triggers over the inserted rows (a transition table,
as the open-journal check of 0002 already is), each looking up the distinct values once.

The database still refuses an orphan:
- a statement inserting a credit or an entry that names a marketplace, creator, asset,
  journal or account that does not exist fails as the key did (``foreign_key_violation``);
- a row once named never goes: journals already refuse UPDATE, DELETE and TRUNCATE, and now
  marketplaces, creators, assets and accounts refuse DELETE, TRUNCATE and a change of id (the
  keys refused deleting a referenced row, so no lock is needed any more to keep one);
- credits and entries never change what they name (0002: immutable columns, append-only).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# (table, constraint, column, referenced table) as 0001 created them.
KEYS = (
    ("credits", "credits_marketplace_id_fkey", "marketplace_id", "marketplaces"),
    ("credits", "credits_creator_id_fkey", "creator_id", "creators"),
    ("credits", "credits_asset_id_fkey", "asset_id", "assets"),
    ("credits", "credits_journal_id_fkey", "journal_id", "journals"),
    ("entries", "entries_account_id_fkey", "account_id", "accounts"),
    ("entries", "entries_journal_id_fkey", "journal_id", "journals"),
)
# Named by credits or entries and not guarded yet (journals are append-only since 0002).
KEPT = ("marketplaces", "creators", "assets", "accounts")


def _missing(column: str, referenced: str) -> str:
    """PL/pgSQL refusing the statement when a distinct value of ``column`` names no row."""
    return f"""
            SELECT n.v INTO missing FROM (SELECT DISTINCT {column} AS v FROM new_rows) n
             WHERE NOT EXISTS (SELECT FROM {referenced} r WHERE r.id = n.v) LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION '%: {column} % names no row of {referenced}', TG_TABLE_NAME,
                    missing USING ERRCODE = 'foreign_key_violation';
            END IF;"""


def upgrade() -> None:
    for table in ("credits", "entries"):
        checks = "".join(_missing(c, r) for t, _, c, r in KEYS if t == table)
        op.execute(
            f"""
            CREATE FUNCTION check_{table}_references() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                missing bigint;
            BEGIN{checks}
                RETURN NULL;
            END $$;

            CREATE TRIGGER {table}_references AFTER INSERT ON {table}
                REFERENCING NEW TABLE AS new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION check_{table}_references();
            """
        )
    for table, constraint, _, _ in KEYS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}")
    for table in KEPT:
        op.execute(
            f"""
            CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION refuse_change();
            CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
            CREATE TRIGGER {table}_id_kept BEFORE UPDATE OF id ON {table}
                FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
                EXECUTE FUNCTION refuse_immutable_change();
            """
        )


def downgrade() -> None:
    for table in KEPT:
        op.execute(
            f"""
            DROP TRIGGER {table}_id_kept ON {table};
            DROP TRIGGER {table}_no_truncate ON {table};
            DROP TRIGGER {table}_no_delete ON {table};
            """
        )
    for table, constraint, column, referenced in KEYS:
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {constraint}"
            f" FOREIGN KEY ({column}) REFERENCES {referenced} (id)"
        )
    for table in ("credits", "entries"):
        op.execute(
            f"""
            DROP TRIGGER {table}_references ON {table};
            DROP FUNCTION check_{table}_references();
            """
        )
