"""Earnings: one at a time with an Idempotency-Key header, or up to 10,000 per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from payouts.api.auth import marketplace_id
from payouts.api.body import BATCH_BODY_LIMIT, SINGLE_BODY_LIMIT, parse, read_body
from payouts.api.errors import ApiError
from payouts.api.group_commit import EarningWriter
from payouts.api.openapi import json_body
from payouts.api.routes.common import ERRORS, MAX_ID, SECURED, asset_symbols, runtime
from payouts.api.schemas import (
    EARNING,
    EARNING_BATCH,
    EarningBatchIn,
    EarningBatchOut,
    EarningIn,
    EarningOut,
)
from payouts.ingest import handlers
from payouts.ingest.earnings import MAX_KEY_LENGTH

router = APIRouter(tags=["earnings"])

Marketplace = Annotated[int, Depends(marketplace_id)]


def _idempotency_key(value: str | None) -> str:
    if value is None or not value.strip():
        raise ApiError(
            400,
            "missing_idempotency_key",
            "send a unique Idempotency-Key header with every earning",
            field="Idempotency-Key",
        )
    if len(value) > MAX_KEY_LENGTH:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be at most {MAX_KEY_LENGTH} characters",
            field="Idempotency-Key",
        )
    return value


@router.post(
    "/v1/earnings",
    status_code=201,
    responses={201: {"model": EarningOut}, **ERRORS},
    openapi_extra={**json_body(EarningIn), **SECURED},
    summary="Record one earning",
)
async def create_earning(
    request: Request,
    marketplace: Marketplace,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=f"Required; 1..{MAX_KEY_LENGTH} characters, unique per earning.",
        ),
    ] = None,
) -> JSONResponse:
    """A replay with the same key and body returns the first response with
    ``Idempotent-Replayed: true``; the same key with another body is 409."""
    key = _idempotency_key(idempotency_key)
    body = await read_body(request, SINGLE_BODY_LIMIT)
    data = parse(EARNING, body, {"assets": asset_symbols(request)})
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
    by index and field. Each item carries its own ``idempotency_key``."""
    body = await read_body(request, BATCH_BODY_LIMIT)
    data = parse(EARNING_BATCH, body, {"assets": asset_symbols(request)})
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
    "/v1/earnings/{earning_id}",
    responses={200: {"model": EarningOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="An earning, its status and the payout it went into",
)
def get_earning(
    request: Request, marketplace: Marketplace, earning_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> JSONResponse:
    return JSONResponse(handlers.earning(runtime(request), marketplace, earning_id))
