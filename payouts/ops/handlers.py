"""Operators' handlers: a settlement run sent at once, the exception queue, marketplaces.

The CLI and the ops endpoints of the API call these; beat's runs go through the stages' own
handlers, so an operator's run and a scheduled one share every line below this layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from payouts import catalog, exception_queue
from payouts.errors import NotFound
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


def resolve_exception(
    rt: Runtime, exception_id: int, resolution: str, *, actor: str
) -> dict[str, Any]:
    with rt.uow() as session:
        closed = exception_queue.resolve_exception(session, exception_id, resolution, actor=actor)
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
