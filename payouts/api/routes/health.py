"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from payouts.api.routes.common import runtime
from payouts.api.schemas import ErrorEnvelope
from payouts.db import engine_for

router = APIRouter(tags=["health"])


# Like every route, these refuse a query parameter they do not take.
_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorEnvelope, "description": "An undeclared query parameter"}
}


@router.get("/healthz", summary="The process is up", responses=_REFUSED)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database and the broker answer",
    responses={**_REFUSED, 503: {"description": "Not ready: the checks name what is not"}},
)
def readyz(request: Request) -> JSONResponse:
    import redis

    rt = runtime(request)
    checks: dict[str, str] = {}
    try:
        with engine_for(rt.database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client = redis.Redis.from_url(rt.broker_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
