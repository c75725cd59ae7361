"""Creators: where they are paid, and what they have earned, are owed and were paid."""

from __future__ import annotations

from typing import Annotated

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
    creator_external_id,
    runtime,
)
from payouts.api.schemas import PAYOUT_ADDRESS, BalanceOut, CreatorOut, PayoutAddressIn
from payouts.ingest import handlers

router = APIRouter(tags=["creators"])

Marketplace = Annotated[int, Depends(marketplace_id)]


@router.put(
    "/v1/creators/{creator_id}",
    responses={200: {"model": CreatorOut}, 201: {"model": CreatorOut}, **ERRORS},
    openapi_extra={**json_body(PayoutAddressIn), **SECURED},
    summary="Register or change a creator's payout address",
)
async def put_creator(
    request: Request, marketplace: Marketplace, creator_id: CreatorId
) -> JSONResponse:
    """A change of an existing address holds the creator's next payout for the configured
    cool-down (a defence against account takeover), recorded in the audit trail. 201 when the
    creator is new, 200 otherwise."""
    external_id = creator_external_id(creator_id, missing_is_404=False)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(PAYOUT_ADDRESS, body)
    change = await run_in_threadpool(
        handlers.set_payout_address,
        runtime(request),
        marketplace,
        external_id,
        data.payout_address,
        actor=f"marketplace:{marketplace}",
    )
    return JSONResponse(
        {**change.creator, "changed": change.changed}, status_code=201 if change.created else 200
    )


@router.get(
    "/v1/creators/{creator_id}/balance",
    responses={200: {"model": BalanceOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="Accrued, in payout and paid, per asset",
)
def get_balance(request: Request, marketplace: Marketplace, creator_id: CreatorId) -> JSONResponse:
    external_id = creator_external_id(creator_id, missing_is_404=True)
    return JSONResponse(handlers.balance(runtime(request), marketplace, external_id))
