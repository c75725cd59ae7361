"""Every queue the workers consume, in one place: the submit queue and its retry tiers among
them, so a worker started without ``-Q`` (and the demo and tests that purge them) see all."""

from __future__ import annotations

from config.settings import Settings
from payouts.submission.tiers import tiers_for

ROLLUP = "rollup"
SETTLE = "settle"
SUBMIT = "submit"
RECONCILE = "reconcile"


def queues(settings: Settings) -> list[str]:
    return [ROLLUP, SETTLE, *tiers_for(settings).queues(), RECONCILE]
