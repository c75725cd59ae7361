"""Holds a marketplace places on its own creators: nothing of a held creator's is paid until
the hold ends (released by the marketplace or an operator, or expired).

A marketplace sees the holds on its own creators, whoever placed them, and releases only those
it placed; anything else answers 404, as a hold that does not exist does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from payouts.api.auth import marketplace_id
from payouts.api.body import SINGLE_BODY_LIMIT, parse, read_body
from payouts.api.openapi import json_body
from payouts.api.routes.common import (
    ERRORS,
    SECURED,
    CreatorId,
    Cursor,
    Limit,
    RowId,
    creator_external_id,
    decode_cursor,
    page_response,
    row_id,
    runtime,
)
from payouts.api.schemas import HOLD, RELEASE, HoldIn, HoldOut, HoldPage, ReleaseIn
from payouts.settlement import handlers
from payouts.settlement.handlers import HoldTarget

router = APIRouter(tags=["holds"])

Marketplace = Annotated[int, Depends(marketplace_id)]
HoldStatus = Literal["active", "released", "rejected", "all"]
# What the API shows of a hold: the domain's row also carries the internal creator key and
# marketplace id, which stay inside (a field added there is not shown until it is named here).
HOLD_FIELDS = tuple(HoldOut.model_fields)


def hold_view(hold: dict[str, Any]) -> dict[str, Any]:
    return {name: hold[name] for name in HOLD_FIELDS}


def holds_page(page: list[dict[str, Any]], last_id: int | None) -> JSONResponse:
    return page_response([hold_view(h) for h in page], last_id)


def state_of(status: HoldStatus) -> str | None:
    return None if status == "all" else status


def _actor(marketplace: int) -> str:
    return f"marketplace:{marketplace}"


@router.post(
    "/v1/creators/{creator_id}/holds",
    status_code=201,
    responses={201: {"model": HoldOut}, **ERRORS},
    openapi_extra={**json_body(HoldIn), **SECURED},
    summary="Hold one of your creators: none of their payouts goes until it is released",
)
async def place_hold(
    request: Request, marketplace: Marketplace, creator_id: CreatorId
) -> JSONResponse:
    """The creator must exist (404 otherwise). Payouts already in a batch are not recalled;
    every payout not yet batched waits until no hold on the creator is left."""
    external_id = creator_external_id(creator_id, missing_is_404=True)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(HOLD, body)
    hold = await run_in_threadpool(
        handlers.place_hold,
        runtime(request),
        HoldTarget(marketplace_id=marketplace, creator_external_id=external_id),
        data.reason,
        rule="marketplace",
        actor=_actor(marketplace),
        expires_at=data.expires_at,
    )
    return JSONResponse(hold_view(hold), status_code=201)


@router.get(
    "/v1/creators/{creator_id}/holds",
    responses={200: {"model": HoldPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Holds on one of your creators and on their payouts, newest first",
)
def list_holds(
    request: Request,
    marketplace: Marketplace,
    creator_id: CreatorId,
    status: HoldStatus = "active",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> JSONResponse:
    """Whoever placed them: you, an operator, or a rule (a velocity limit, screening). A
    creator id that names none of your creators has no holds: an empty page."""
    external_id = creator_external_id(creator_id, missing_is_404=True)
    page, last = handlers.list_holds(
        runtime(request),
        state=state_of(status),
        marketplace_id=marketplace,
        creator_external_id=external_id,
        before_id=decode_cursor(cursor),
        limit=limit,
    )
    return holds_page(page, last)


@router.post(
    "/v1/holds/{hold_id:row_id}/release",
    responses={200: {"model": HoldOut}, **ERRORS},
    openapi_extra={**json_body(ReleaseIn), **SECURED},
    summary="Release a hold you placed",
)
async def release_hold(request: Request, marketplace: Marketplace, hold_id: RowId) -> JSONResponse:
    """Only a hold you placed on one of your creators (404 for any other); 409
    ``illegal_transition`` once it has ended. The creator's payouts go again once no other
    hold keeps them."""
    target = row_id(hold_id)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(RELEASE, body)
    hold = await run_in_threadpool(
        handlers.release_hold,
        runtime(request),
        target,
        data.resolution,
        actor=_actor(marketplace),
        marketplace_id=marketplace,
    )
    return JSONResponse(hold_view(hold))
