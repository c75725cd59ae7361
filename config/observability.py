"""Logging and Sentry, initialised once per process from settings."""

from __future__ import annotations

import logging

from config.settings import Settings


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def init_sentry(settings: Settings) -> bool:
    """Report errors to Sentry when a DSN is configured; returns whether it was initialised."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=[CeleryIntegration(monitor_beat_tasks=True)],
        send_default_pii=False,
    )
    return True
