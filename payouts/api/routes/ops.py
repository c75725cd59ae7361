"""Operators' endpoints (admin key only): a manual settlement run, the exception queue, holds,
the review queue (what rules held, to approve or reject) and the deny list."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from payouts.api.auth import admin
from payouts.api.body import BATCH_BODY_LIMIT, SINGLE_BODY_LIMIT, parse, read_body
from payouts.api.openapi import json_body
from payouts.api.routes.common import (
    ERRORS,
    SECURED,
    Cursor,
    Limit,
    RowId,
    decode_cursor,
    page_response,
    row_id,
    runtime,
)
from payouts.api.routes.holds import HoldStatus, hold_view, holds_page, state_of
from payouts.api.schemas import (
    CREATOR_HOLD,
    DENY_LIST,
    PAYOUT_HOLD,
    RESOLVE,
    REVIEW_DECISION,
    SETTLEMENT_RUN,
    CreatorHoldIn,
    DenyListImportOut,
    DenyListIn,
    DenyListOut,
    ExceptionOut,
    ExceptionPage,
    HoldOut,
    HoldPage,
    OpsHoldIn,
    PayoutHoldIn,
    ResolveIn,
    ReviewDecisionIn,
    SettlementRunIn,
)
from payouts.ops import handlers
from payouts.ops.handlers import SettlementRun
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.settlement.handlers import HoldTarget

router = APIRouter(prefix="/v1/ops", tags=["ops"], dependencies=[Depends(admin)])

ExceptionId = RowId
HoldId = RowId


class Decision(Protocol):
    def __call__(
        self, rt: Runtime, hold_id: int, resolution: str, *, actor: str, dry_run: bool
    ) -> dict[str, Any]: ...


ACTOR = "ops-api"


def _run_summary(run: SettlementRun, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "assets": {
            symbol: {
                "sealed": [
                    {
                        "batch_id": str(b.public_id),
                        "payouts": b.size,
                        "total": str(b.total),
                        "gas_estimate": b.gas_estimate,
                    }
                    for b in plan.sealed
                ],
                "pending_left": plan.pending_left,
                "wallet_available": str(plan.wallet_available),
                "stopped_because": plan.reason,
            }
            for symbol, plan in run.plans.items()
        },
        "submissions": [
            {"outcome": s.describe(), "nonce": s.nonce, "tx_hash": s.tx_hash}
            for s in run.submissions
        ],
    }


@router.post(
    "/settlement-runs",
    responses={200: {"description": "dry run: the plan"}, 201: {"description": "ran"}, **ERRORS},
    openapi_extra={**json_body(SettlementRunIn, required=False), **SECURED},
    summary="Seal pending payouts into batches now (dry_run: only show the plan)",
)
async def settlement_run(request: Request) -> JSONResponse:
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(SETTLEMENT_RUN, body)
    run = await run_in_threadpool(
        handlers.settlement_run,
        runtime(request),
        dry_run=data.dry_run,
        submit_now=data.submit,
        actor=ACTOR,
    )
    return JSONResponse(_run_summary(run, data.dry_run), status_code=200 if data.dry_run else 201)


@router.get(
    "/exceptions",
    responses={200: {"model": ExceptionPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="What the system could not settle by itself, newest first",
)
def list_exceptions(
    request: Request,
    status: Literal["open", "resolved", "all"] = "open",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> JSONResponse:
    page, last = handlers.list_exceptions(
        runtime(request),
        state=None if status == "all" else status,
        before_id=decode_cursor(cursor),
        limit=limit,
    )
    return page_response(page, last)


@router.get(
    "/exceptions/{exception_id:row_id}",
    responses={200: {"model": ExceptionOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="One exception with its evidence",
)
def get_exception(request: Request, exception_id: ExceptionId) -> JSONResponse:
    return JSONResponse(handlers.get_exception(runtime(request), row_id(exception_id)))


@router.post(
    "/exceptions/{exception_id:row_id}/resolve",
    responses={200: {"model": ExceptionOut}, **ERRORS},
    openapi_extra={**json_body(ResolveIn), **SECURED},
    summary="Close an exception with what was done about it (once)",
)
async def resolve_exception(request: Request, exception_id: ExceptionId) -> JSONResponse:
    target = row_id(exception_id)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(RESOLVE, body)
    resolved = await run_in_threadpool(
        handlers.resolve_exception,
        runtime(request),
        target,
        data.resolution,
        actor=ACTOR,
    )
    return JSONResponse(resolved)


# --- holds and the review queue --------------------------------------------------------------


def _hold_body(body: bytes) -> PayoutHoldIn | CreatorHoldIn:
    """The body's form, by whether it names a payout: each form is strict on its own, so a
    body naming a payout and a creator is refused for the fields the payout form lacks. The
    body is read once more with decimals, for the exact text of a number like ``84.0``."""
    try:
        exact = json.loads(body or b"{}", parse_float=Decimal)
    except (ValueError, RecursionError):
        exact = None  # parse says what is wrong with it
    if isinstance(exact, dict) and "payout_id" in exact:
        return parse(PAYOUT_HOLD, body, {"exact": exact})
    return parse(CREATOR_HOLD, body)


@router.post(
    "/holds",
    status_code=201,
    responses={201: {"model": HoldOut}, **ERRORS},
    openapi_extra={**json_body(OpsHoldIn), **SECURED},
    summary="Hold a payout, or a creator and so all their payouts",
)
async def place_hold(request: Request) -> JSONResponse:
    """A payout must be pending (or held already): 409 ``illegal_transition`` once it is in a
    batch. 404 for a payout, marketplace or creator that does not exist."""
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = _hold_body(body)
    rt = runtime(request)
    if isinstance(data, PayoutHoldIn):
        target = HoldTarget(payout_id=data.payout_id)
    else:
        marketplace = await run_in_threadpool(handlers.marketplace_id, rt, data.marketplace)
        target = HoldTarget(marketplace_id=marketplace, creator_external_id=data.creator_id)
    hold = await run_in_threadpool(
        settlement.place_hold,
        rt,
        target,
        data.reason,
        rule="operator",
        actor=ACTOR,
        expires_at=data.expires_at,
    )
    return JSONResponse(hold_view(hold), status_code=201)


@router.get(
    "/holds",
    responses={200: {"model": HoldPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Holds, whoever placed them, newest first",
)
def list_holds(
    request: Request,
    status: HoldStatus = "active",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> JSONResponse:
    page, last = settlement.list_holds(
        runtime(request), state=state_of(status), before_id=decode_cursor(cursor), limit=limit
    )
    return holds_page(page, last)


@router.get(
    "/review",
    responses={200: {"model": HoldPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="The review queue: active holds that rules placed, newest first",
)
def review_queue(request: Request, cursor: Cursor = None, limit: Limit = 50) -> JSONResponse:
    """What a velocity limit, an outflow ceiling, the deny list or the token's deny check held,
    with the figures that tripped it. Release approves (a rule does not hold that payout
    again); reject cancels the payout into the creator's carried balance and holds the
    creator."""
    page, last = settlement.list_holds(
        runtime(request), review=True, before_id=decode_cursor(cursor), limit=limit
    )
    return holds_page(page, last)


async def _decide(request: Request, hold_id: str, decide: Decision) -> JSONResponse:
    """A review decision on one hold: release (approve) or reject, for real or as a dry run."""
    target = row_id(hold_id)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(REVIEW_DECISION, body)
    hold = await run_in_threadpool(
        decide, runtime(request), target, data.resolution, actor=ACTOR, dry_run=data.dry_run
    )
    return JSONResponse(hold_view(hold))


@router.post(
    "/holds/{hold_id:row_id}/release",
    responses={200: {"model": HoldOut}, **ERRORS},
    openapi_extra={**json_body(ReviewDecisionIn), **SECURED},
    summary="Release a hold, or approve it in review (dry_run: only show the outcome)",
)
async def release_hold(request: Request, hold_id: HoldId) -> JSONResponse:
    """The hold as it is now, or with ``dry_run`` as it would be (nothing is kept). The payout
    or creator goes again once no other hold keeps it; 409 ``illegal_transition`` once the
    hold has ended."""
    return await _decide(request, hold_id, settlement.release_hold)


@router.post(
    "/holds/{hold_id:row_id}/reject",
    responses={200: {"model": HoldOut}, **ERRORS},
    openapi_extra={**json_body(ReviewDecisionIn), **SECURED},
    summary="Reject in review: cancel the payout, hold the creator (dry_run: only show it)",
)
async def reject_hold(request: Request, hold_id: HoldId) -> JSONResponse:
    """The held payout is cancelled and its amount goes back to the creator as carried
    balance (paid with their next payout); the creator is held (``review_rejected``) until an
    operator releases them. 409 ``illegal_transition`` once the hold has ended."""
    return await _decide(request, hold_id, settlement.reject_hold)


# --- the deny list ---------------------------------------------------------------------------


@router.post(
    "/deny-list",
    responses={200: {"model": DenyListImportOut}, **ERRORS},
    openapi_extra={**json_body(DenyListIn), **SECURED},
    summary="List (or unlist) up to 10,000 addresses no payout may go to",
)
async def import_deny_list(request: Request) -> JSONResponse:
    """All or nothing: one bad entry refuses the request, and the 422 lists every bad entry by
    index. Each import is kept (who, when, from which source); ``changed`` counts the
    addresses whose status changed. A payout to a listed address is held for review before it
    reaches a batch."""
    body = await read_body(request, BATCH_BODY_LIMIT)
    data = parse(DENY_LIST, body)
    # The handler reads a deny file's lines: ``address,reason`` (the address checked already).
    lines = [f"{entry.address},{entry.reason}" for entry in data.entries]
    changed = await run_in_threadpool(
        settlement.import_deny_list,
        runtime(request),
        lines,
        source=data.source,
        actor=ACTOR,
        listed=data.listed,
    )
    return JSONResponse({"changed": changed})


@router.get(
    "/deny-list",
    responses={200: {"model": DenyListOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="The addresses denied now",
)
def deny_list(request: Request) -> JSONResponse:
    return JSONResponse({"data": settlement.deny_list(runtime(request))})
