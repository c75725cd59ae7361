"""A creator's claim: their current vouchers, and whether they are paid by push or claim."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from payouts.api.auth import marketplace_id
from payouts.api.body import SINGLE_BODY_LIMIT, parse, read_body
from payouts.api.claim_schemas import SETTLE_MODE, CreatorClaimOut, SettleModeIn, SettleModeOut
from payouts.api.openapi import json_body
from payouts.api.routes.common import ERRORS, SECURED, CreatorId, creator_external_id, runtime
from payouts.claims import handlers

router = APIRouter(tags=["claims"])

Marketplace = Annotated[int, Depends(marketplace_id)]


@router.get(
    "/v1/creators/{creator_id}/claim",
    responses={200: {"model": CreatorClaimOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="The creator's current vouchers for the claims escrow",
)
def get_claim(request: Request, marketplace: Marketplace, creator_id: CreatorId) -> JSONResponse:
    """Signed now from the ledger, so always the latest: the newest voucher pays what is left,
    an older one nothing. Give it to the creator, or send its calldata for them."""
    external_id = creator_external_id(creator_id, missing_is_404=True)
    return JSONResponse(handlers.creator_claim(runtime(request), marketplace, external_id))


@router.put(
    "/v1/creators/{creator_id}/settle-mode",
    responses={200: {"model": SettleModeOut}, **ERRORS},
    openapi_extra={**json_body(SettleModeIn), **SECURED},
    summary="Pay a creator by push, by claim, or automatically by what the gas costs",
)
async def put_settle_mode(
    request: Request, marketplace: Marketplace, creator_id: CreatorId
) -> JSONResponse:
    """Applies to the creator's next settlements; the change is in their audit trail."""
    external_id = creator_external_id(creator_id, missing_is_404=True)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(SETTLE_MODE, body)
    changed = await run_in_threadpool(
        handlers.set_settle_mode,
        runtime(request),
        marketplace,
        external_id,
        data.settle_mode,
        actor=f"marketplace:{marketplace}",
    )
    return JSONResponse(changed)
