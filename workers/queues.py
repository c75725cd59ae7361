"""Every queue the workers consume, in one place: the submit queue and its retry tiers among
them, so a worker started without ``-Q`` (and the demo and tests that purge them) see all."""

from __future__ import annotations

from config.settings import Settings
from payouts.submission.tiers import tiers_for

ROLLUP = "rollup"
SETTLE = "settle"
SUBMIT = "submit"
RECONCILE = "reconcile"
# Webhook delivery: its own queue, so a slow receiver never delays settlement.
WEBHOOKS = "webhooks"


def queues(settings: Settings) -> list[str]:
    return [ROLLUP, SETTLE, *tiers_for(settings).queues(), RECONCILE, WEBHOOKS]
