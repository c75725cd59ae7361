"""The roll-up handler: beat's hourly task and an operator's ``payouts rollup``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from payouts.rollup.runs import roll_up
from payouts.rollup.windows import PayoutRule, RollupResult, window_for
from payouts.runtime import Runtime


def payout_rules(rt: Runtime) -> dict[int, PayoutRule]:
    """Each configured asset's minimum payout and rounding unit, by asset id."""
    ids = rt.asset_ids()
    return {ids[a.symbol]: PayoutRule(a.min_payout, a.rounding_unit) for a in rt.settings.assets}


def rollup(
    rt: Runtime,
    *,
    now: datetime | None = None,
    window_start: datetime | None = None,
    actor: str = "beat",
) -> RollupResult:
    seconds = rt.settings.rollup_window_seconds
    if window_start is None:
        window_start, window_end = window_for(now or datetime.now(UTC), seconds)
    else:
        window_end = window_start + timedelta(seconds=seconds)
    rules = payout_rules(rt)
    with rt.uow() as session:
        result = roll_up(session, window_start, window_end, rules, actor=actor)
        session.commit()
    return result
