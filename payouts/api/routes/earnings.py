"""Earnings: one at a time with an Idempotency-Key header, or up to 10,000 per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from payouts.api.auth import marketplace_id
from payouts.api.body import BATCH_BODY_LIMIT, SINGLE_BODY_LIMIT, parse, read_body
from payouts.api.contract import KEY_PATTERN
from payouts.api.errors import ApiError
from payouts.api.group_commit import EarningWriter
from payouts.api.openapi import json_body
from payouts.api.routes.common import ERRORS, SECURED, RowId, asset_ceilings, row_id, runtime
from payouts.api.schemas import (
    EARNING,
    EARNING_BATCH,
    EarningBatchIn,
    EarningBatchOut,
    EarningIn,
    EarningOut,
)
from payouts.ingest import handlers
from payouts.ingest.earnings import MAX_KEY_LENGTH, valid_key

router = APIRouter(tags=["earnings"])

Marketplace = Annotated[int, Depends(marketplace_id)]


# Declared here rather than as a FastAPI parameter: a missing key is our 400, not a 422.
IDEMPOTENCY_KEY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": (
        f"Unique per earning: 1..{MAX_KEY_LENGTH} visible ASCII characters (0x21-0x7E),"
        " the same alphabet as a batch item's idempotency_key."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": KEY_PATTERN,
    },
}


def _idempotency_key(request: Request) -> str:
    # Header bytes arrive decoded as Latin-1: a UTF-8 key shows up as characters past 0x7F.
    values = request.headers.getlist("idempotency-key")
    if len(values) > 1:
        raise ApiError(
            422,
            "invalid_idempotency_key",
            "send one Idempotency-Key header, not several",
            field="Idempotency-Key",
        )
    value = values[0] if values else None
    if value is None or not value.strip():
        raise ApiError(
            400,
            "missing_idempotency_key",
            "send a unique Idempotency-Key header with every earning",
            field="Idempotency-Key",
        )
    if not valid_key(value):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} visible ASCII characters (0x21-0x7E)",
            field="Idempotency-Key",
        )
    return value


@router.post(
    "/v1/earnings",
    status_code=201,
    responses={201: {"model": EarningOut}, **ERRORS},
    openapi_extra={
        **json_body(EarningIn),
        **SECURED,
        "parameters": [IDEMPOTENCY_KEY_HEADER],
    },
    summary="Record one earning",
)
async def create_earning(request: Request, marketplace: Marketplace) -> JSONResponse:
    """A replay with the same key and body returns the first response with
    ``Idempotent-Replayed: true``; the same key with another body is 409."""
    key = _idempotency_key(request)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(EARNING, body, {"assets": asset_ceilings(request)})
    writer: EarningWriter = request.app.state.earning_writer
    created, replayed = await writer.record(marketplace, data.to_earning(key))
    return JSONResponse(
        created,
        status_code=201,
        headers={"Idempotent-Replayed": "true" if replayed else "false"},
    )


@router.post(
    "/v1/earnings/batch",
    responses={200: {"model": EarningBatchOut}, **ERRORS},
    openapi_extra={**json_body(EarningBatchIn), **SECURED},
    summary="Record up to 10,000 earnings at once",
)
async def create_earnings(request: Request, marketplace: Marketplace) -> JSONResponse:
    """All or nothing: one bad item refuses the whole batch, and the 422 lists every bad item
    by index and field. Each item carries its own ``idempotency_key``; an item sent twice in
    one batch is recorded once and its second occurrence answered as a replay."""
    body = await read_body(request, BATCH_BODY_LIMIT)
    data = parse(EARNING_BATCH, body, {"assets": asset_ceilings(request)})
    earnings = [e.to_earning(e.idempotency_key) for e in data.earnings]
    recorded = await run_in_threadpool(handlers.record_for, runtime(request), marketplace, earnings)
    replayed = sum(r.replayed for r in recorded)
    return JSONResponse(
        {
            "created": len(recorded) - replayed,
            "replayed": replayed,
            "results": [
                {
                    "index": i,
                    "id": r.credit_id,
                    "idempotency_key": r.idempotency_key,
                    "result": "replayed" if r.replayed else "created",
                }
                for i, r in enumerate(recorded)
            ],
        }
    )


@router.get(
    "/v1/earnings/{earning_id:row_id}",
    responses={200: {"model": EarningOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="An earning, its status and the payout it went into",
)
def get_earning(request: Request, marketplace: Marketplace, earning_id: RowId) -> JSONResponse:
    return JSONResponse(handlers.earning(runtime(request), marketplace, row_id(earning_id)))
