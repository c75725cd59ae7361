"""Webhook endpoints: a marketplace registers where its events are pushed, rotates the
signing secret, reads every attempt and asks for redeliveries; operators do the same for any
endpoint under ``/v1/ops/webhooks``.

A marketplace sees only its own endpoints: another's answers 404, as one that does not exist.
The secret is in the answer that creates it (and the one that rotates it), never again.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from payouts.api.auth import admin, marketplace_id
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
from payouts.api.webhook_schemas import (
    ENDPOINT,
    ENDPOINT_UPDATE,
    REDELIVER_AFTER,
    REDELIVER_EVENT,
    AttemptPage,
    EndpointCreatedOut,
    EndpointIn,
    EndpointOut,
    EndpointPage,
    EndpointUpdateIn,
    RedeliverEventIn,
    RedeliverIn,
    RedeliveryOut,
    SecretRotatedOut,
)
from payouts.notify import handlers

router = APIRouter(tags=["webhooks"])

Marketplace = Annotated[int, Depends(marketplace_id)]
ADMIN = [Depends(admin)]
ENDPOINTS = "/v1/webhooks/endpoints"
OPS_ENDPOINTS = "/v1/ops/webhooks/endpoints"
ONE = "/{endpoint_id:row_id}"
OPS_ACTOR = "ops-api"


@router.post(
    ENDPOINTS,
    status_code=201,
    responses={201: {"model": EndpointCreatedOut}, **ERRORS},
    openapi_extra={**json_body(EndpointIn), **SECURED},
    summary="Register a receiver of your events (the answer holds its secret, shown once)",
)
async def create_endpoint(request: Request, marketplace: Marketplace) -> JSONResponse:
    """It receives the events from now on (older ones: redeliver, or ``GET /v1/events``),
    each signed per Standard Webhooks with the secret in this answer. 422
    ``address_not_allowed`` for a loopback or private address, ``insecure_url`` for http."""
    data = parse(ENDPOINT, await read_body(request, SINGLE_BODY_LIMIT))
    created = await run_in_threadpool(
        handlers.create_endpoint, runtime(request), marketplace, data.url, data.event_types
    )
    return JSONResponse(created, status_code=201)


@router.get(
    ENDPOINTS,
    responses={200: {"model": EndpointPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Your webhook endpoints, newest first",
)
def list_endpoints(
    request: Request, marketplace: Marketplace, cursor: Cursor = None, limit: Limit = 50
) -> JSONResponse:
    return _endpoints(request, marketplace, cursor, limit)


@router.get(
    ENDPOINTS + ONE,
    responses={200: {"model": EndpointOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="One of your endpoints: where its deliveries stand",
)
def get_endpoint(request: Request, marketplace: Marketplace, endpoint_id: RowId) -> JSONResponse:
    return JSONResponse(handlers.get_endpoint(runtime(request), row_id(endpoint_id), marketplace))


@router.patch(
    ENDPOINTS + ONE,
    responses={200: {"model": EndpointOut}, **ERRORS},
    openapi_extra={**json_body(EndpointUpdateIn, required=False), **SECURED},
    summary="Change an endpoint's URL or event types, or disable or enable it",
)
async def update_endpoint(
    request: Request, marketplace: Marketplace, endpoint_id: RowId
) -> JSONResponse:
    """Enabling again clears the failures: the event that failed is tried at once."""
    return await _update(request, endpoint_id, marketplace)


@router.post(
    ENDPOINTS + ONE + "/rotate-secret",
    responses={200: {"model": SecretRotatedOut}, **ERRORS},
    openapi_extra=SECURED,
    summary="A new signing secret; the old one keeps signing during the overlap",
)
async def rotate_secret(
    request: Request, marketplace: Marketplace, endpoint_id: RowId
) -> JSONResponse:
    """Until ``previous_secrets_expire_in_seconds`` have passed every delivery carries two
    signatures (``webhook-signature: v1,<new> v1,<old>``): switch your receiver to the new
    secret in that time."""
    target = row_id(endpoint_id)
    rotated = await run_in_threadpool(handlers.rotate_secret, runtime(request), target, marketplace)
    return JSONResponse(rotated)


@router.get(
    ENDPOINTS + ONE + "/attempts",
    responses={200: {"model": AttemptPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Every delivery attempt to an endpoint, newest first",
)
def list_attempts(
    request: Request,
    marketplace: Marketplace,
    endpoint_id: RowId,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> JSONResponse:
    return _attempts(request, endpoint_id, marketplace, cursor, limit)


@router.post(
    ENDPOINTS + ONE + "/redeliver",
    status_code=202,
    responses={200: {"model": RedeliveryOut}, 202: {"model": RedeliveryOut}, **ERRORS},
    openapi_extra={**json_body(RedeliverIn), **SECURED},
    summary="Send one event again, or everything after a sequence number (dry_run: only say)",
)
async def redeliver(request: Request, marketplace: Marketplace, endpoint_id: RowId) -> JSONResponse:
    """Redeliveries go first, at once, even while the endpoint waits out a retry; events keep
    their ids. 404 for an event that is not yours; 409 for one of a type the endpoint does
    not take. 202 when queued, 200 for a dry run (nothing kept)."""
    return await _redeliver(request, endpoint_id, marketplace, f"marketplace:{marketplace}")


# --- operators ---------------------------------------------------------------------------------


@router.get(
    OPS_ENDPOINTS,
    dependencies=ADMIN,
    tags=["ops"],
    responses={200: {"model": EndpointPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Every marketplace's webhook endpoints, newest first",
)
def ops_list_endpoints(request: Request, cursor: Cursor = None, limit: Limit = 50) -> JSONResponse:
    return _endpoints(request, None, cursor, limit)


@router.get(
    OPS_ENDPOINTS + ONE + "/attempts",
    dependencies=ADMIN,
    tags=["ops"],
    responses={200: {"model": AttemptPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Every delivery attempt to any endpoint, newest first",
)
def ops_list_attempts(
    request: Request, endpoint_id: RowId, cursor: Cursor = None, limit: Limit = 50
) -> JSONResponse:
    return _attempts(request, endpoint_id, None, cursor, limit)


@router.post(
    OPS_ENDPOINTS + ONE + "/redeliver",
    dependencies=ADMIN,
    tags=["ops"],
    status_code=202,
    responses={200: {"model": RedeliveryOut}, 202: {"model": RedeliveryOut}, **ERRORS},
    openapi_extra={**json_body(RedeliverIn), **SECURED},
    summary="Send one event again, or everything after a sequence number (dry_run: only say)",
)
async def ops_redeliver(request: Request, endpoint_id: RowId) -> JSONResponse:
    return await _redeliver(request, endpoint_id, None, OPS_ACTOR)


# --- shared by both ------------------------------------------------------------------------


def _endpoints(
    request: Request, marketplace: int | None, cursor: str | None, limit: int
) -> JSONResponse:
    page, last = handlers.list_endpoints(
        runtime(request), marketplace, before_id=decode_cursor(cursor), limit=limit
    )
    return page_response(page, last)


def _attempts(
    request: Request, endpoint_id: str, marketplace: int | None, cursor: str | None, limit: int
) -> JSONResponse:
    page, last = handlers.list_attempts(
        runtime(request),
        row_id(endpoint_id),
        marketplace,
        before_id=decode_cursor(cursor),
        limit=limit,
    )
    return page_response(page, last)


async def _update(request: Request, endpoint_id: str, marketplace: int | None) -> JSONResponse:
    target = row_id(endpoint_id)
    data = parse(ENDPOINT_UPDATE, await read_body(request, SINGLE_BODY_LIMIT))
    updated = await run_in_threadpool(
        lambda: handlers.update_endpoint(
            runtime(request),
            target,
            marketplace,
            url=data.url,
            event_types=data.event_types,
            enabled=data.enabled,
        )
    )
    return JSONResponse(updated)


def _redeliver_body(body: bytes) -> Any:
    """The body's form, by whether it names an event; read once more with decimals, for the
    exact text of a number like ``12.0``."""
    try:
        exact = json.loads(body or b"{}", parse_float=Decimal)
    except (ValueError, RecursionError):
        exact = None  # parse says what is wrong with it
    if isinstance(exact, dict) and "event_id" in exact:
        return parse(REDELIVER_EVENT, body)
    return parse(REDELIVER_AFTER, body, {"exact": exact if isinstance(exact, dict) else {}})


async def _redeliver(
    request: Request, endpoint_id: str, marketplace: int | None, actor: str
) -> JSONResponse:
    target = row_id(endpoint_id)
    data = _redeliver_body(await read_body(request, SINGLE_BODY_LIMIT))
    by_event = isinstance(data, RedeliverEventIn)
    plan = await run_in_threadpool(
        lambda: handlers.redeliver(
            runtime(request),
            target,
            marketplace,
            event_id=data.event_id if by_event else None,
            after_seq=None if by_event else data.after_seq,
            dry_run=data.dry_run,
            actor=actor,
        )
    )
    return JSONResponse(plan, status_code=200 if data.dry_run else 202)
