"""Operators' endpoints (admin key only): a manual settlement run and the exception queue."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from payouts.api.auth import admin
from payouts.api.body import SINGLE_BODY_LIMIT, parse, read_body
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
from payouts.api.schemas import (
    RESOLVE,
    SETTLEMENT_RUN,
    ExceptionOut,
    ExceptionPage,
    ResolveIn,
    SettlementRunIn,
)
from payouts.ops import handlers
from payouts.ops.handlers import SettlementRun

router = APIRouter(prefix="/v1/ops", tags=["ops"], dependencies=[Depends(admin)])

ExceptionId = RowId


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
        actor="ops-api",
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
        actor="ops-api",
    )
    return JSONResponse(resolved)
