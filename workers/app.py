"""The Celery app, its queues, routes and beat schedule, in one place a reader can find."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.schedules import crontab
from kombu import Queue

from config.observability import configure_logging, init_sentry
from config.settings import get_settings
from payouts.runtime import Runtime

settings = get_settings()


runtime = Runtime(settings)
app = Celery("payouts", broker=runtime.broker_url, include=["workers.tasks"])

QUEUES = ("rollup", "settle", "submit", "reconcile")

app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="settle",
    task_routes={
        "payouts.rollup": {"queue": "rollup"},
        "payouts.settle": {"queue": "settle"},
        "payouts.submit_batch": {"queue": "submit"},
        "payouts.resubmit_unsent": {"queue": "submit"},
        "payouts.reconcile": {"queue": "reconcile"},
    },
    # A task is acknowledged only after it ran, so a killed worker's task is delivered again;
    # every task is written to be safe to run twice.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    # Redis redelivers an unacknowledged task after this long; longer than any task runs.
    broker_transport_options={"visibility_timeout": 3600},
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
    "resubmit-unsent-batches": {
        "task": "payouts.resubmit_unsent",
        "schedule": timedelta(seconds=max(settings.reconcile_interval_seconds * 4, 10)),
    },
    "reconcile-chain": {
        "task": "payouts.reconcile",
        "schedule": timedelta(seconds=settings.reconcile_interval_seconds),
    },
}

configure_logging(settings)
init_sentry(settings)
