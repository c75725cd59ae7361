"""What every route needs: the runtime, the known assets, cursors, shared responses."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse

from payouts.api.errors import ApiError
from payouts.api.schemas import ErrorEnvelope
from payouts.runtime import Runtime

SECURED: dict[str, Any] = {"security": [{"bearerAuth": []}]}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}
MAX_PAGE = 100
MAX_ID = 2**63 - 1

# The paging parameters of every newest-first listing.
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def asset_symbols(request: Request) -> frozenset[str]:
    symbols: frozenset[str] = request.app.state.asset_symbols
    return symbols


def encode_cursor(last_id: int | None) -> str | None:
    if last_id is None:
        return None
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def page_response(page: list[dict[str, Any]], last_id: int | None) -> JSONResponse:
    """A page of a newest-first listing and the cursor that continues it."""
    return JSONResponse(
        {"data": page, "has_more": last_id is not None, "next_cursor": encode_cursor(last_id)}
    )


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = raw.partition(":")
        last_id = int(value)
        if version != "v1" or not 0 < last_id <= MAX_ID:
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            422, "invalid_cursor", "cursor is not one this API returned", field="cursor"
        ) from None
    return last_id
