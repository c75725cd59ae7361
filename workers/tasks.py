"""Thin tasks: each calls one handler. Every one is safe to deliver twice."""

from __future__ import annotations

import logging
from typing import Any

from payouts.claims import relay, topups
from payouts.errors import ChainError
from payouts.notify import handlers as webhooks
from payouts.reconcile.handlers import reconcile as reconcile_chain
from payouts.rollup.handlers import rollup as roll_up
from payouts.settlement.handlers import settle as seal
from payouts.submission import handlers as submission
from payouts.submission.tiers import tiers_for
from workers import metrics
from workers.app import app
from workers.base import PayoutsTask

log = logging.getLogger(__name__)


@app.task(base=PayoutsTask, bind=True, name="payouts.rollup")
def rollup(self: PayoutsTask) -> dict[str, Any]:
    result = roll_up(self.runtime, actor="beat")
    if result.payouts:
        settle.delay()
    return {
        "window": result.window_start.isoformat(),
        "payouts": result.payouts,
        "created": result.created,
    }


@app.task(base=PayoutsTask, bind=True, name="payouts.settle")
def settle(self: PayoutsTask) -> dict[str, Any]:
    plans = seal(self.runtime, actor="beat")
    for plan in plans.values():
        for batch in plan.sealed:
            submit_batch.delay(batch.batch_id)
    if any(plan.claimable for plan in plans.values()):
        # Newly claimable cents: the escrow should hold them before anyone claims.
        claims_escrow.delay()
    return {
        s: {"sealed": len(p.sealed), "claimable": p.claimable, "reason": p.reason}
        for s, p in plans.items()
    }


@app.task(base=PayoutsTask, bind=True, name="payouts.claims_escrow")
def claims_escrow(self: PayoutsTask) -> dict[str, int]:
    """Top the escrow up where it holds less than is claimable; submit the vouchers of what
    sat claimable past the sweep age. Both go through the hot wallet's nonce lane."""
    topped = topups.top_up(self.runtime, actor="beat")
    swept = relay.sweep(self.runtime)
    return {"topped_up": len(topped), "swept": len(swept)}


@app.task(base=PayoutsTask, bind=True, name="payouts.submit_batch")
def submit_batch(self: PayoutsTask, batch_id: int, tier: int = 0) -> dict[str, Any]:
    """One try of a batch's submission; a failure goes to the next retry tier's queue."""
    try:
        result = submission.submit(self.runtime, batch_id, actor="worker")
    except ChainError as exc:
        retry = submission.submission_failed(self.runtime, batch_id, tier=tier, error=exc)
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
    return {"batch": batch_id, "outcome": result.describe(), "tx": result.tx_hash}


@app.task(base=PayoutsTask, bind=True, name="payouts.watch_unmined")
def watch_unmined(self: PayoutsTask) -> dict[str, int]:
    """Recovery and care: resend what a lost task left sealed; rebroadcast dropped
    transactions and replace stuck ones."""
    rt = self.runtime
    watchlist = submission.watchlist(rt)
    tiers = tiers_for(rt.settings)
    for batch_id, tier in watchlist.due:
        submit_batch.apply_async(args=[batch_id], kwargs={"tier": tier}, queue=tiers.queue(tier))
    outcomes: dict[str, int] = {}
    for batch_id in watchlist.unmined:
        outcome = str(submission.watch(rt, batch_id).outcome)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"resubmitted": len(watchlist.due), **outcomes}


@app.task(base=PayoutsTask, bind=True, name="payouts.reconcile")
def reconcile(self: PayoutsTask) -> dict[str, int]:
    outcome = reconcile_chain(self.runtime, actor="reconciler")
    claims = outcome.claims
    by_claim = claims.finalized_payout_ids if claims else []
    metrics.observe_time_to_final(self.runtime, outcome.advance.finalized_batches, by_claim)
    return {
        "included": outcome.scan.included,
        "finalized": outcome.advance.finalized,
        "claimed": claims.claimed_payouts if claims else 0,
        "finalized_by_claim": claims.finalized_payouts if claims else 0,
    }


@app.task(base=PayoutsTask, bind=True, name="payouts.dispatch_webhooks")
def dispatch_webhooks(self: PayoutsTask) -> dict[str, int]:
    """Number the ready events; one delivery task per endpoint with something due."""
    endpoint_ids = webhooks.dispatch(self.runtime)
    for endpoint_id in endpoint_ids:
        deliver_webhooks.delay(endpoint_id=endpoint_id)
    return {"dispatched": len(endpoint_ids)}


@app.task(base=PayoutsTask, bind=True, name="payouts.deliver_webhooks")
def deliver_webhooks(self: PayoutsTask, endpoint_id: int) -> dict[str, int]:
    """One endpoint's due events, in order (a second task for it finds the row locked). A
    run that spent its budget goes on in a new task at the back of the queue: a backlog
    drains at the worker's speed, not one budget per dispatch, and other endpoints' tasks
    take their turns in between."""
    run = webhooks.deliver(self.runtime, endpoint_id)
    if run.more:
        deliver_webhooks.delay(endpoint_id=endpoint_id)
    return {
        "endpoint": endpoint_id,
        "delivered": run.count("delivered"),
        "failed": run.count("retry") + run.count("gone"),
    }
