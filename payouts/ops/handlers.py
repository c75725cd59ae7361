"""Operators' handlers: a settlement run sent at once, the exception queue, marketplaces.

The CLI and the ops endpoints of the API call these; beat's runs go through the stages' own
handlers, so an operator's run and a scheduled one share every line below this layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payouts import catalog, exception_queue, holds
from payouts.errors import NotFound
from payouts.ops import dashboard
from payouts.runtime import Runtime
from payouts.settlement.handlers import settle
from payouts.settlement.sealing import SettlementPlan
from payouts.submission.handlers import SubmitResult, submit


@dataclass(frozen=True)
class SettlementRun:
    plans: dict[str, SettlementPlan]
    submissions: list[SubmitResult]


def settlement_run(
    rt: Runtime, *, dry_run: bool = False, submit_now: bool = True, actor: str = "operator"
) -> SettlementRun:
    """An operator's run: seal what is pending and, unless told otherwise, send it at once.

    Beat's run is ``settle`` with the sending left to the submit queue.
    """
    plans = settle(rt, dry_run=dry_run, actor=actor)
    sent: list[SubmitResult] = []
    if not dry_run and submit_now:
        for plan in plans.values():
            sent.extend(submit(rt, b.batch_id, actor=actor) for b in plan.sealed)
    return SettlementRun(plans, sent)


def list_exceptions(
    rt: Runtime, *, state: str | None = "open", before_id: int | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], int | None]:
    with rt.uow() as session:
        return exception_queue.list_exceptions(
            session, state=state, before_id=before_id, limit=limit
        )


def get_exception(rt: Runtime, exception_id: int) -> dict[str, Any]:
    with rt.uow() as session:
        return exception_queue.get_exception(session, exception_id)


def get_hold(rt: Runtime, hold_id: int) -> dict[str, Any]:
    """One hold with its rule, reason and figures (a review decision is made on these)."""
    with rt.uow() as session:
        return holds.get(session, hold_id)


def resolve_exception(
    rt: Runtime, exception_id: int, resolution: str, *, actor: str, dry_run: bool = False
) -> dict[str, Any]:
    """Close an exception; ``dry_run`` shows it closed (and any hold it releases) and keeps
    nothing."""
    with rt.uow() as session:
        closed = exception_queue.resolve_exception(session, exception_id, resolution, actor=actor)
        if not dry_run:
            session.commit()
    return closed


def create_marketplace(rt: Runtime, name: str) -> catalog.NewMarketplace:
    with rt.uow() as session:
        created = catalog.create_marketplace(session, name)
        session.commit()
    return created


def marketplace_id(rt: Runtime, name: str) -> int:
    """A marketplace's id by its name; NotFound if there is none."""
    with rt.uow() as session:
        found = catalog.marketplace_by_name(session, name)
    if found is None:
        raise NotFound(f"marketplace {name!r}")
    return found


# The ops page's reads (payouts.ops.dashboard), one unit of work each.


def chart(rt: Runtime, name: str) -> dashboard.Series:
    """One of ``dashboard.CHARTS`` by name; NotFound for another."""
    draw = dashboard.CHARTS.get(name)
    if draw is None:
        raise NotFound(f"chart {name!r}")
    with rt.uow() as session:
        return draw(session)


def tiles(rt: Runtime) -> dict[str, int]:
    with rt.uow() as session:
        return dashboard.tiles(session)


def batch_timelines(rt: Runtime, *, limit: int = 20) -> list[dict[str, Any]]:
    with rt.uow() as session:
        return dashboard.batches(session, limit=limit)


@dataclass(frozen=True)
class Found:
    """What a search for a transaction hash or a creator found: batches and payouts."""

    batches: list[dict[str, Any]]
    payouts: list[dict[str, Any]]


def find_tx(rt: Runtime, tx_hash: str) -> Found:
    """The batch a transaction hash paid (or tried to) and the payouts sealed in it."""
    with rt.uow() as session:
        ids = dashboard.batches_of_tx(session, tx_hash)
        if not ids:
            raise NotFound(f"transaction {tx_hash}")
        return Found(
            dashboard.batches(session, ids=ids, limit=len(ids)),
            dashboard.payouts_of_batches(session, ids),
        )


def find_creator(rt: Runtime, needle: str) -> Found:
    """A creator's payouts, by their id at their marketplace or their payout address."""
    with rt.uow() as session:
        found = dashboard.payouts_of_creator(session, needle)
        if not found:
            raise NotFound(f"creator {needle!r} (or no payout of theirs yet)")
        ids = sorted({p["batch_id"] for p in found if p["batch_id"] is not None})
        return Found(dashboard.batches(session, ids=ids, limit=len(ids)) if ids else [], found)
