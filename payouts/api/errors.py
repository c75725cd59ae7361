"""One error envelope for every failure: ``{"error": {"code", "message", "field"}}``.

Codes are stable and machine-readable; messages are for people. A 422 may carry ``errors``,
one entry per bad field (``earnings[3].amount``), so a client can fix a whole batch at once.
Domain errors are mapped to a status here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from payouts.errors import (
    BrokerUnavailable,
    ChainError,
    DatabaseRefused,
    DatabaseUnavailable,
    IdempotencyConflict,
    IdempotencyInFlight,
    IllegalTransition,
    InvalidInput,
    InvariantViolation,
    NotFound,
    PayoutsError,
    TransientChainError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP-level refusal (auth, headers, body framing) raised before the domain is asked."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errors = errors
        self.headers = headers


# Most specific first: the first matching class decides the status.
_STATUS: list[tuple[type[PayoutsError], int]] = [
    (IdempotencyConflict, 409),
    (IdempotencyInFlight, 409),
    (InvalidInput, 422),
    (NotFound, 404),
    (IllegalTransition, 409),
    (TransientChainError, 503),
    (ChainError, 502),
    (DatabaseUnavailable, 503),
    (BrokerUnavailable, 503),
    (DatabaseRefused, 500),
    (InvariantViolation, 500),
]

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def status_for(exc: PayoutsError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status,
        exc.code,
        exc.message,
        field=exc.field,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PayoutsError)
    status = status_for(exc)
    if status >= 500:
        log.error("request failed: %s", exc, exc_info=exc)
    field = getattr(exc, "field", None)
    if isinstance(exc, IdempotencyConflict | IdempotencyInFlight):
        field = "idempotency_key"
    headers = {"Retry-After": "1"} if exc.recoverable else None
    return error_response(status, exc.code, str(exc), field=field, headers=headers)


async def _parameter_error(_: Request, exc: Exception) -> JSONResponse:
    """Path and query parameters FastAPI checked (bodies are parsed by ``api.body``)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ())]
    if loc and loc[0] == "path":
        # A path that cannot name anything names nothing: no such resource.
        return error_response(404, "not_found", "no such resource")
    name = loc[-1] if loc else None
    return error_response(
        422, f"invalid_{name}" if name else "invalid_parameter", str(first["msg"]), field=name
    )


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route at this path takes. Starlette's 405 names only the methods of
    the first route whose path matched, and a path may have a route per method (GET and
    POST); each method is asked of the app's routes as they match a request (FastAPI keeps
    included routers nested, so their routes are not in a flat list)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": allowed_methods(request)}
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(PayoutsError, _domain_error)
    app.add_exception_handler(RequestValidationError, _parameter_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
