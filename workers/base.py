"""The one base task: every task's runtime, log context, outcome count and retry rule.

A task body is a few lines that call one handler with ``self.runtime``; the handler opens its
units of work through the runtime's factory. What the base class adds around it:

- log context: every log line of a task carries the task's name and id and the ids it works
  on (its keyword arguments: batch, payout, exception), so one batch can be followed through
  the worker's log;
- retry: an error the project marks ``recoverable`` (database or broker unavailable, the node
  unreachable) is retried with exponential backoff and jitter; anything else surfaces (Sentry,
  the exception queue), because retrying a bug only repeats it;
- upstream errors never reach Celery unmapped: the handlers map them at the boundary, and a
  stray one is logged with the task's context before it propagates.
"""

from __future__ import annotations

import contextvars
import logging
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from celery import Task

from payouts.errors import PayoutsError
from payouts.runtime import Runtime

log = logging.getLogger(__name__)

# The ids a log line is about, set for the duration of one task.
LOG_CONTEXT: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "payouts_log_context", default=MappingProxyType({})
)
_CONTEXT_KEYS = ("batch_id", "payout_id", "exception_id", "request_id", "tier", "endpoint_id")


class ContextFilter(logging.Filter):
    """Adds the current task's ids to every record (``%(context)s`` in the format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = LOG_CONTEXT.get()
        record.context = " ".join(f"{k}={v}" for k, v in context.items()) if context else "-"
        return True


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    token = LOG_CONTEXT.set({**LOG_CONTEXT.get(), **ids})
    try:
        yield
    finally:
        LOG_CONTEXT.reset(token)


class PayoutsTask(Task):  # type: ignore[misc]
    """Celery's Task with the project's runtime, log context and retry rule."""

    abstract = True
    acks_late = True
    _runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        """One runtime per worker process, built from settings on first use."""
        if PayoutsTask._runtime is None:
            from workers.app import runtime

            PayoutsTask._runtime = runtime
        return PayoutsTask._runtime

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids = {k: kwargs[k] for k in _CONTEXT_KEYS if k in kwargs}
        if args and "batch_id" not in ids and self.name == "payouts.submit_batch":
            ids["batch_id"] = args[0]
        with log_context(task=self.name, task_id=self.request.id, **ids):
            try:
                return super().__call__(*args, **kwargs)
            except PayoutsError as exc:
                if not exc.recoverable or self.request.called_directly:
                    raise
                settings = self.runtime.settings
                retries = self.request.retries
                if retries >= settings.task_max_retries:
                    log.error("gave up after %d retries: %s: %s", retries, type(exc).__name__, exc)
                    raise
                wait = self.backoff(retries)
                log.warning("recoverable: %s: %s; retry in %.1f s", type(exc).__name__, exc, wait)
                raise self.retry(exc=exc, countdown=wait, max_retries=None) from exc
            except Exception:
                log.exception("unmapped error in %s", self.name)
                raise

    def backoff(self, retries: int) -> float:
        """Exponential, capped, with full jitter, so tasks that failed together spread out."""
        settings = self.runtime.settings
        base, cap = settings.task_retry_backoff_seconds, settings.task_retry_backoff_max_seconds
        return random.uniform(0, min(cap, base * 2**retries))
