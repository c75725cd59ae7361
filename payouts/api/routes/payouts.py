"""Payouts: state, amount, batch, transaction, block, confirmations and every transition."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from payouts.api.auth import marketplace_id
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
from payouts.api.schemas import PayoutOut, PayoutPage, clean_text
from payouts.errors import InvalidInput
from payouts.tracking import handlers

router = APIRouter(tags=["payouts"])

Marketplace = Annotated[int, Depends(marketplace_id)]


@router.get(
    "/v1/payouts/{payout_id:row_id}",
    responses={200: {"model": PayoutOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="One payout with its transitions",
)
def get_payout(request: Request, marketplace: Marketplace, payout_id: RowId) -> JSONResponse:
    return JSONResponse(handlers.payout(runtime(request), marketplace, row_id(payout_id)))


@router.get(
    "/v1/payouts",
    responses={200: {"model": PayoutPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Payouts, newest first, optionally of one creator",
)
def list_payouts(
    request: Request,
    marketplace: Marketplace,
    creator_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> JSONResponse:
    if creator_id is not None:
        try:
            creator_id = clean_text(creator_id)
        except ValueError:
            raise InvalidInput(
                "creator id must be text without NUL", field="creator_id", code="invalid_creator_id"
            ) from None
    page, last = handlers.payouts(
        runtime(request),
        marketplace,
        creator_external_id=creator_id,
        before_id=decode_cursor(cursor),
        limit=limit,
    )
    return page_response(page, last)
