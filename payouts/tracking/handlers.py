"""Tracking handlers: the pipeline's status, the ledger's proof, one item's trace, and a
marketplace's payouts, read in one unit of work each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from payouts import events as outbox
from payouts.claims import audit
from payouts.claims.escrow import escrow_of
from payouts.runtime import Runtime
from payouts.tracking import payouts as payout_views
from payouts.tracking import reports


def status(rt: Runtime) -> dict[str, Any]:
    with rt.uow() as session:
        return reports.status(session)


def check(
    rt: Runtime, on_result: Callable[[reports.CheckResult], None] | None = None
) -> reports.CheckReport:
    with rt.uow() as session:
        report = reports.check(session, on_result)
        escrow = escrow_of(rt)
        for name, offending in audit.chain_checks(session, rt.chain, escrow) if escrow else []:
            report.results.append(reports.CheckResult(name, not offending, "; ".join(offending)))
            if on_result is not None:
                on_result(report.results[-1])
        return report


def awaiting_depth(rt: Runtime, head: int) -> list[dict[str, Any]]:
    """Each batch not final yet and the blocks it still needs at ``head``: to be confirmed
    and to be final (None while it is not in a block)."""
    with rt.uow() as session:
        batches = reports.awaiting_depth(session, rt.settings.finality_depth)
    for b in batches:
        depth = None if b["block_number"] is None else head - int(b["block_number"]) + 1
        b["blocks_to_confirm"] = (
            None if depth is None else max(0, rt.settings.confirmation_depth - depth)
        )
        b["blocks_to_final"] = None if depth is None else max(0, int(b["final_at"]) - depth)
    return batches


def trace(rt: Runtime, kind: str, item_id: int) -> dict[str, Any]:
    with rt.uow() as session:
        return reports.trace(session, kind, item_id)


def payout(rt: Runtime, marketplace_id: int, payout_id: int) -> dict[str, Any]:
    with rt.uow() as session:
        return payout_views.payout(session, marketplace_id, payout_id)


def payouts(
    rt: Runtime,
    marketplace_id: int,
    *,
    creator_external_id: str | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    with rt.uow() as session:
        return payout_views.payouts(
            session,
            marketplace_id,
            creator_external_id=creator_external_id,
            before_id=before_id,
            limit=limit,
        )


def events(
    rt: Runtime,
    marketplace_id: int,
    *,
    after: int,
    limit: int,
    types: list[str] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """A marketplace's events after sequence number ``after``, oldest first, and whether
    more follow. What has ended is numbered first (a try-lock: nothing to wait for when
    another reader or the beat is numbering), so a reader does not wait for a beat."""
    with rt.uow() as session:
        outbox.sequence(session)
        session.commit()
        page = outbox.list_events(
            session, marketplace_id, after=after, limit=limit + 1, types=types
        )
    return page[:limit], len(page) > limit
