"""Bringing a database to the latest schema with Alembic, from code (CLI, demo, tests).

The migrations run as the owner (``PAYOUTS_MIGRATION_DATABASE_URL``); the app connects with
``PAYOUTS_DATABASE_URL``. Where those name different users, the app's user is made a login
member of ``payouts_app``, the role migration 0012 grants to, with the URL's password: the API
and the workers then may insert and read the ledger but never rewrite it. Where they name the
same user (a laptop, the tests), that user owns the tables and nothing is set up.
"""

from __future__ import annotations

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy.engine import make_url

from config.settings import REPO_ROOT
from payouts.errors import InvalidInput

# The group role of migration 0012: it holds the app's grants, its members log in.
APP_ROLE = "payouts_app"


def upgrade(
    database_url: str, revision: str = "head", *, app_database_url: str | None = None
) -> None:
    """Migrate as the owner ``database_url``; then let the user of ``app_database_url``, if
    another one, log in as a member of the app role (created, or its password kept in step)."""
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)
    if app_database_url is not None:
        grant_app_login(database_url, app_database_url)


def grant_app_login(owner_url: str, app_url: str) -> None:
    """Make the app URL's user a login member of the app role (idempotent)."""
    owner, app = make_url(owner_url), make_url(app_url)
    if not app.username or app.username == owner.username:
        return
    with psycopg.connect(
        **owner.translate_connect_args(username="user", database="dbname")
    ) as conn:
        role = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls"
            " OR pg_has_role(rolname, %s, 'MEMBER') FROM pg_roles WHERE rolname = %s",
            [owner.username, app.username],
        ).fetchone()
        if role is not None and role[0]:
            raise InvalidInput(
                f"PAYOUTS_DATABASE_URL connects as {app.username}, which has administrative"
                " rights or the owner's: the app needs an ordinary role of its own",
                field="database_url",
                code="app_role_privileged",
            )
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                sql.SQL("CREATE" if role is None else "ALTER"),
                sql.Identifier(app.username),
                sql.Literal(app.password),
            )
        )
        if app.username != APP_ROLE:  # the app may log in as the group role itself
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(APP_ROLE), sql.Identifier(app.username)
                )
            )
