"""The Celery app, its queues, routes and beat schedule, in one place a reader can find."""

from __future__ import annotations

# First: prometheus_client chooses multiprocess mode when it is first imported.
import workers.multiproc  # noqa: F401  # isort: skip

import logging
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import after_setup_logger, after_setup_task_logger
from kombu.entity import Queue

from config.observability import configure_logging, init_sentry
from config.settings import get_settings
from payouts.runtime import Runtime
from workers import metrics  # noqa: F401 - connects the metrics' signal handlers
from workers.base import ContextFilter
from workers.queues import RECONCILE, ROLLUP, SETTLE, SUBMIT, WEBHOOKS, queues

settings = get_settings()
LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] [%(context)s] %(message)s"


runtime = Runtime(settings)
app = Celery("payouts", broker=runtime.broker_url, include=["workers.tasks"])

# The submit queue is tier 0; each retry tier waits in a queue of its own (submission.tiers).
QUEUES = queues(settings)

app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue=SETTLE,
    task_routes={
        "payouts.rollup": {"queue": ROLLUP},
        "payouts.settle": {"queue": SETTLE},
        "payouts.submit_batch": {"queue": SUBMIT},
        "payouts.watch_unmined": {"queue": SUBMIT},
        # The hot wallet's own transactions for the escrow: beside its batches' submissions.
        "payouts.claims_escrow": {"queue": SUBMIT},
        "payouts.reconcile": {"queue": RECONCILE},
        "payouts.dispatch_webhooks": {"queue": WEBHOOKS},
        "payouts.deliver_webhooks": {"queue": WEBHOOKS},
    },
    # A task is acknowledged only after it ran, so a killed worker's task is delivered again;
    # every task is written to be safe to run twice.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    # Redis redelivers an unacknowledged task after this long. It must exceed the longest
    # retry tier (a countdown task is unacknowledged while it waits) or the retry would be
    # delivered twice; a task lost with a dead worker is picked up by watch_unmined instead.
    broker_transport_options={
        "visibility_timeout": max(3600, 2 * max(settings.submit_retry_delays_seconds))
    },
    timezone="UTC",
    enable_utc=True,
)


def _rollup_schedule() -> crontab | timedelta:
    if settings.rollup_window_seconds == 3600:
        return crontab(minute=0)  # on the hour, for the hour that just closed
    return timedelta(seconds=settings.rollup_window_seconds)


app.conf.beat_schedule = {
    "rollup-closed-window": {"task": "payouts.rollup", "schedule": _rollup_schedule()},
    "settle-pending-payouts": {
        "task": "payouts.settle",
        "schedule": timedelta(seconds=settings.settle_interval_seconds),
    },
    "watch-unmined-batches": {
        "task": "payouts.watch_unmined",
        "schedule": timedelta(seconds=settings.watch_interval_seconds),
    },
    # Top the claims escrow up to what is claimable, and sweep what sat unclaimed too long.
    "claims-escrow": {
        "task": "payouts.claims_escrow",
        "schedule": timedelta(seconds=settings.settle_interval_seconds),
    },
    "reconcile-chain": {
        "task": "payouts.reconcile",
        "schedule": timedelta(seconds=settings.reconcile_interval_seconds),
    },
    # Number the ready events and hand each endpoint with something due to a delivery task.
    "dispatch-webhooks": {
        "task": "payouts.dispatch_webhooks",
        "schedule": timedelta(seconds=settings.webhook_dispatch_interval_seconds),
    },
}

configure_logging(settings)
init_sentry(settings)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_task_context(logger: logging.Logger, *args: Any, **kwargs: Any) -> None:
    """Every line a worker logs names the task and the ids it works on (workers.base)."""
    for handler in logger.handlers:
        handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
