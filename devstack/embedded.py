"""The embedded-servers backend the runtime loads by name (``PAYOUTS_EMBEDDED_SERVERS``).

Where the settings name no database or broker, a real PostgreSQL and a real redis-server are
started under ``state_dir`` and their URLs returned, so that a fresh checkout runs the whole
pipeline with nothing installed. Production leaves the setting empty and names its servers.
"""

from __future__ import annotations

from config.settings import Settings
from devstack.postgres import postgres_url
from devstack.redis_server import redis_url


def database_url(settings: Settings) -> str:
    return postgres_url(settings)


def broker_url(settings: Settings) -> str:
    return redis_url(settings)
