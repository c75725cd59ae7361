"""What every route needs: the runtime, the configured assets, ids, cursors, shared responses."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from payouts.api.contract import ID_PATTERN, MAX_ID
from payouts.api.errors import ApiError
from payouts.api.schemas import ErrorEnvelope, clean_text
from payouts.errors import InvalidInput, NotFound
from payouts.runtime import Runtime

SECURED: dict[str, Any] = {"security": [{"bearerAuth": []}]}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 403, 404, 409, 413, 415, 422, 503)
}
MAX_PAGE = 100

# The paging parameters of every newest-first listing.
Cursor = Annotated[
    str | None,
    Query(max_length=64, description="next_cursor of the previous page, exactly as returned"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


class _RowIdConvertor(Convertor[str]):
    """``{name:row_id}`` in a route's path: only a canonical decimal matches the route, so
    ``/v1/earnings/01`` names nothing (404) and ``GET /v1/earnings/batch`` is the wrong method
    for the batch route (405), not an earning called "batch"."""

    regex = ID_PATTERN.strip("^$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("row_id", _RowIdConvertor())

# A row's id in a path (declared ``{name:row_id}``): only its canonical decimal names it
# ("01", "+1", "1.0" name nothing).
RowId = Annotated[str, Path(pattern=ID_PATTERN, description="A positive id, in canonical decimal.")]


def row_id(value: str) -> int:
    """The id a ``RowId`` path segment names; past bigint it names nothing."""
    parsed = int(value)
    if parsed > MAX_ID:
        raise NotFound(f"no such id {value}")
    return parsed


# A creator in a path, by the marketplace's own id for them.
CreatorId = Annotated[str, Path(min_length=1, max_length=255)]


def creator_external_id(value: str, *, missing_is_404: bool) -> str:
    """The creator id a path names. Text PostgreSQL cannot hold names no creator: 404 where the
    creator must exist already, 422 where the request would create it."""
    try:
        return clean_text(value)
    except ValueError:
        if missing_is_404:
            raise NotFound(f"creator {value!r}") from None
        raise InvalidInput(
            "creator id must be text without NUL", field="creator_id", code="invalid_creator_id"
        ) from None


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query_only(request: Request) -> None:
    """App-wide dependency: a query parameter the route does not declare is refused (422), not
    silently ignored: a misspelt ``cursr=`` must not quietly return the first page. Async, so
    it runs on the event loop instead of costing every request a trip to the thread pool."""
    route = request.scope.get("route")
    declared = _query_names(route.dependant) if isinstance(route, APIRoute) else set()
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        raise ApiError(
            422,
            "unknown_parameter",
            f"unknown query parameter {unknown[0]!r}; this endpoint takes:"
            f" {', '.join(sorted(declared)) or 'none'}",
            field=unknown[0],
        )


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def asset_ceilings(request: Request) -> Mapping[str, int]:
    """The configured assets and the largest earning each takes, in base units."""
    ceilings: Mapping[str, int] = request.app.state.asset_ceilings
    return ceilings


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
        # Only the very text encode_cursor wrote: no other spelling of the id or the base64.
        if version != "v1" or not 0 < last_id <= MAX_ID or encode_cursor(last_id) != cursor:
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            422, "invalid_cursor", "cursor is not one this API returned", field="cursor"
        ) from None
    return last_id
