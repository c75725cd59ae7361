"""Alembic environment: the URL comes from the caller (payouts.db.migrate) or from settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from payouts.db.models import Base

url = context.config.get_main_option("sqlalchemy.url")
if not url:
    from config.settings import get_settings

    url = get_settings().database_url
if not url:
    raise SystemExit("no database URL: set PAYOUTS_DATABASE_URL or run `payouts db upgrade`")

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
