"""The event feed: a marketplace's events in sequence order, to catch up without webhooks.

``after`` is the last sequence number the caller has processed (0 at first); the page holds
the events after it, oldest first, and ``next_after`` is where the next page starts. An event
is listed once every transaction that was running when it was written has ended, so a reader
that passed number N never finds a new event below N.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from payouts.api.auth import marketplace_id
from payouts.api.contract import MAX_ID
from payouts.api.event_schemas import EventPage
from payouts.api.routes.common import ERRORS, SECURED, runtime
from payouts.events import TYPES
from payouts.tracking import handlers

router = APIRouter(tags=["events"])

Marketplace = Annotated[int, Depends(marketplace_id)]
MAX_EVENTS_PAGE = 1000
if TYPE_CHECKING:
    EventType = str
else:  # the OpenAPI document lists every type (an enum); mypy sees the str it is
    EventType = Literal[tuple(TYPES)]


@router.get(
    "/v1/events",
    responses={200: {"model": EventPage}, **ERRORS},
    openapi_extra=SECURED,
    summary="Your events after a sequence number, oldest first",
)
def list_events(
    request: Request,
    marketplace: Marketplace,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="The last seq you processed; 0 for the first")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 100,
    type_: Annotated[EventType | None, Query(alias="type", description="Only this type")] = None,
) -> JSONResponse:
    page, has_more = handlers.events(
        runtime(request),
        marketplace,
        after=after,
        limit=limit,
        types=None if type_ is None else [type_],
    )
    return JSONResponse(
        {
            "data": page,
            "has_more": has_more,
            "next_after": page[-1]["seq"] if page else after,
        }
    )
