"""Thin tasks: each calls one service function. Every one is safe to deliver twice."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from payouts import services
from payouts.errors import ChainError, TransientChainError
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


@app.task(base=PayoutsTask, name="payouts.submit_batch", autoretry_for=())
def submit_batch(batch_id: int, tier: int = 0) -> dict[str, Any]:
    """One try of a batch's submission; a failure goes to the next retry tier's queue."""
    try:
        result = services.submit(runtime, batch_id, actor="worker")
    except ChainError as exc:
        retry = services.submission_failed(runtime, batch_id, tier=tier, error=exc)
        if retry is None:
            log.error("batch %s: submission failed for good at tier %s: %s", batch_id, tier, exc)
            return {"batch": batch_id, "outcome": "failed", "tier": tier}
        submit_batch.apply_async(
            args=[batch_id], kwargs={"tier": retry.tier}, queue=retry.queue, countdown=retry.delay
        )
        log.warning(
            "batch %s: try %s failed (%s); next in %.0f s on %s",
            batch_id,
            tier,
            exc,
            retry.delay,
            retry.queue,
        )
        return {"batch": batch_id, "outcome": "retrying", "tier": retry.tier}
    return {"batch": batch_id, "outcome": result.outcome, "tx": result.tx_hash}


@app.task(base=PayoutsTask, name="payouts.watch_unmined")
def watch_unmined() -> dict[str, int]:
    """Recovery and care: resend what a lost task left sealed; rebroadcast dropped
    transactions and replace stuck ones."""
    watchlist = services.watchlist(runtime)
    for batch_id, tier in watchlist.due:
        submit_batch.apply_async(
            args=[batch_id], kwargs={"tier": tier}, queue=runtime.retry_tiers().queue(tier)
        )
    outcomes: dict[str, int] = {}
    for batch_id in watchlist.unmined:
        outcome = services.watch(runtime, batch_id).outcome
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"resubmitted": len(watchlist.due), **outcomes}


@app.task(base=PayoutsTask, name="payouts.reconcile")
def reconcile() -> dict[str, int]:
    outcome = services.reconcile(runtime, actor="reconciler")
    return {"included": outcome.scan.included, "finalized": outcome.advance.finalized}
