"""Bringing a database to the latest schema with Alembic, from code (CLI, demo, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from config.settings import REPO_ROOT


def upgrade(database_url: str, revision: str = "head") -> None:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)
