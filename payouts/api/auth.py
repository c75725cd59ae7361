"""Who is calling: a marketplace by its API key, or an operator by the admin key.

Keys arrive as ``Authorization: Bearer <key>``. Marketplace keys are looked up by their
SHA-256 (only the hash is stored) and remembered for a short while, so a busy marketplace
does not cost a query per request; the admin key is compared in constant time.
"""

from __future__ import annotations

import hmac
import threading
import time

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from payouts.api.errors import ApiError
from payouts.api.routes.common import runtime
from payouts.catalog import hash_api_key
from payouts.ingest import handlers

KEY_CACHE_SECONDS = 60.0
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class KeyCache:
    def __init__(self, ttl: float = KEY_CACHE_SECONDS) -> None:
        self._ttl = ttl
        self._entries: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> int | None:
        with self._lock:
            hit = self._entries.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, digest: str, marketplace_id: int) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self._ttl, marketplace_id)


def bearer_key(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(
            401,
            "missing_api_key",
            "send your API key as Authorization: Bearer <key>",
            field="Authorization",
            headers=_CHALLENGE,
        )
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(
            401,
            "invalid_api_key",
            "the Authorization header must be: Bearer <key>",
            field="Authorization",
            headers=_CHALLENGE,
        )
    return key


async def marketplace_id(request: Request) -> int:
    """FastAPI dependency: the calling marketplace's id, or 401. Async: a cached key costs no
    trip to the thread pool; only a miss goes there for its query."""
    key = bearer_key(request)
    digest = hash_api_key(key)
    cache: KeyCache = request.app.state.key_cache
    found = cache.get(digest)
    if found is None:
        found = await run_in_threadpool(handlers.authenticate, runtime(request), key)
        if found is None:
            raise ApiError(
                401, "invalid_api_key", "unknown API key", field="Authorization", headers=_CHALLENGE
            )
        cache.put(digest, found)
    return found


def admin(request: Request) -> None:
    """FastAPI dependency: only the configured admin key passes."""
    key = bearer_key(request)
    configured = runtime(request).settings.admin_api_key
    if configured is None or not configured.get_secret_value():
        raise ApiError(
            403, "admin_disabled", "ops endpoints are closed: PAYOUTS_ADMIN_API_KEY is not set"
        )
    if not hmac.compare_digest(key.encode(), configured.get_secret_value().encode()):
        raise ApiError(403, "admin_key_required", "this endpoint needs the admin key")
