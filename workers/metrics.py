"""The worker's metrics: every task's outcome and runtime, the beat jobs' last success, and
the time from an earning recorded to its payout final.

Counted in the pool processes (multiprocess mode, see ``workers.multiproc``) and served by the
worker's main process on ``PAYOUTS_METRICS_PORT`` (default 9108), every process merged. A
pool process that exits is marked dead, so its live gauges leave the sum; its counters stay,
as they must.

Time to final is observed here, where payouts become final, rather than computed at scrape
time: a histogram is a counter per bucket, and only the process that finalized a batch knows
those earnings were not counted before. It is observed after the reconciler committed (a
rolled-back finalization counts nothing), from one set-based read per run. Finalizations an
operator runs from the CLI are not observed; they are in the ledger all the same.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from celery import Task, states
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

from config.settings import get_settings
from payouts.errors import PayoutsError
from payouts.ops import measures
from payouts.runtime import Runtime
from workers.multiproc import DIRECTORY

log = logging.getLogger(__name__)

TASKS = Counter("payouts_tasks", "Celery tasks run, by outcome", ["task", "queue", "outcome"])
TASK_SECONDS = Histogram(
    "payouts_task_duration_seconds",
    "How long Celery tasks ran",
    ["task", "queue"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LAST_SUCCESS = Gauge(
    "payouts_task_last_success_timestamp_seconds",
    "When a task (beat's jobs among them) last succeeded, Unix time",
    ["task"],
    multiprocess_mode="max",
)
# An earning waits for its hourly roll-up, a batch and finality: minutes to hours, days when
# something holds it; the small buckets are for dev chains and tests.
FINALITY_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 259200)
EARNING_TO_FINAL = Histogram(
    "payouts_earning_to_final_seconds",
    "Time from an earning recorded to its payout final",
    buckets=FINALITY_BUCKETS,
)

_started: dict[str, float] = {}  # task id -> when it began, in this pool process
_server: list[Any] = []  # the main process's metrics server, to shut down


@task_prerun.connect
def _task_began(task_id: str, **_: Any) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect
def _task_ended(task_id: str, task: Task, state: str | None = None, **_: Any) -> None:
    began = _started.pop(task_id, None)
    queue = (task.request.delivery_info or {}).get("routing_key") or "direct"
    TASKS.labels(task.name, queue, (state or "unknown").lower()).inc()
    if began is not None:
        TASK_SECONDS.labels(task.name, queue).observe(time.perf_counter() - began)
    if state == states.SUCCESS:
        LAST_SUCCESS.labels(task.name).set(time.time())


def observe_time_to_final(
    rt: Runtime, batch_ids: list[int], payout_ids: Sequence[int] = ()
) -> None:
    """The earnings of these just-finalized batches and payouts finalized by claim, into the
    time-to-final histogram."""
    bounds = [float(b) for b in FINALITY_BUCKETS]
    try:
        buckets = measures.earning_ages(rt, batch_ids, bounds, payout_ids)
    except PayoutsError as exc:  # a metric never fails the reconciliation that committed
        log.warning("time to final not observed: %s: %s", type(exc).__name__, exc)
        return
    for _, n, seconds in buckets:
        # Every age in one bucket lies inside it, so their mean does too: the same bucket
        # counts and sum as observing each age.
        for _ in range(n):
            EARNING_TO_FINAL.observe(seconds / n)


@worker_ready.connect
def _serve(**_: Any) -> None:
    port = get_settings().metrics_port
    if not port:
        return
    registry = CollectorRegistry()
    if DIRECTORY is not None:
        multiprocess.MultiProcessCollector(registry, path=str(DIRECTORY))
    else:
        log.warning("metrics are this process's only: prometheus_client loaded before workers")
        from prometheus_client import REGISTRY

        registry = REGISTRY
    try:
        _server.append(start_http_server(port, registry=registry)[0])
    except OSError as exc:
        log.error("metrics not served: port %d: %s", port, exc)
        return
    log.info("metrics on :%d/metrics (%s)", port, DIRECTORY or "in-process")


@worker_process_shutdown.connect
def _pool_process_gone(pid: int | None = None, **_: Any) -> None:
    if DIRECTORY is not None:
        multiprocess.mark_process_dead(pid or os.getpid(), str(DIRECTORY))


@worker_shutdown.connect
def _stop_serving(**_: Any) -> None:
    for server in _server:
        server.shutdown()
