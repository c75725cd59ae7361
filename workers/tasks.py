"""Thin tasks: each calls one service function. Every one is safe to deliver twice."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from payouts import services
from payouts.errors import TransientChainError
from workers.app import app, runtime

log = logging.getLogger(__name__)


class PayoutsTask(Task):  # type: ignore[misc]
    """Owns the retry rule: an unreachable node is retried later, anything else surfaces."""

    autoretry_for = (TransientChainError,)
    retry_backoff = 15
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 8
    acks_late = True


@app.task(base=PayoutsTask, name="payouts.rollup")
def rollup() -> dict[str, Any]:
    result = services.rollup(runtime, actor="beat")
    if result.payouts:
        settle.delay()
    return {
        "window": result.window_start.isoformat(),
        "payouts": result.payouts,
        "created": result.created,
    }


@app.task(base=PayoutsTask, name="payouts.settle")
def settle() -> dict[str, Any]:
    plans = services.settle(runtime, actor="beat")
    for plan in plans.values():
        for batch in plan.sealed:
            submit_batch.delay(batch.batch_id)
    return {s: {"sealed": len(p.sealed), "reason": p.reason} for s, p in plans.items()}


@app.task(base=PayoutsTask, name="payouts.submit_batch")
def submit_batch(batch_id: int) -> dict[str, Any]:
    result = services.submit(runtime, batch_id, actor="worker")
    return {"batch": batch_id, "outcome": result.outcome, "tx": result.tx_hash}


@app.task(base=PayoutsTask, name="payouts.resubmit_unsent")
def resubmit_unsent() -> int:
    """Recovery: a batch left sealed by a dead worker is sent from its stored bytes."""
    batches = services.unsent_batches(runtime)
    for batch_id in batches:
        submit_batch.delay(batch_id)
    return len(batches)


@app.task(base=PayoutsTask, name="payouts.reconcile")
def reconcile() -> dict[str, int]:
    outcome = services.reconcile(runtime, actor="reconciler")
    return {"included": outcome.scan.included, "finalized": outcome.advance.finalized}
