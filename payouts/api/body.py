"""Reading and checking a JSON request body before anything is written.

The body is read with a size cap, must be declared ``application/json``, and is validated in
one pass with pydantic's JSON parser, so every bad field of a 10,000-item batch is reported at
once and a float or an exponent never becomes a number on the way in.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError

from payouts.api.errors import ApiError

M = TypeVar("M", bound=BaseModel)

KIB = 1024
SINGLE_BODY_LIMIT = 64 * KIB
BATCH_BODY_LIMIT = 16 * KIB * KIB

# Error types our validators raise; they are already the codes a client sees.
DOMAIN_CODES = frozenset(
    {
        "invalid_amount",
        "amount_too_large",
        "unknown_asset",
        "invalid_occurred_at",
        "invalid_idempotency_key",
        "invalid_address",
        "invalid_checksum",
        "invalid_metadata",
        "invalid_text",
        "invalid_expires_at",
        "invalid_reason",
        "invalid_resolution",
        "invalid_source",
    }
)
_TYPE_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "json_invalid": "invalid_json",
    "model_type": "invalid_body",
    "model_attributes_type": "invalid_body",
}
# Anything else wrong with a field gets that field's code (a JSON number as an amount is an
# invalid amount, not a "string_type").
_FIELD_CODES = {
    "amount": "invalid_amount",
    "asset": "unknown_asset",
    "payout_address": "invalid_address",
    "idempotency_key": "invalid_idempotency_key",
    "occurred_at": "invalid_occurred_at",
    "metadata": "invalid_metadata",
    "creator_id": "invalid_creator_id",
    "reference": "invalid_reference",
    "resolution": "invalid_resolution",
    "dry_run": "invalid_dry_run",
    "submit": "invalid_submit",
    "reason": "invalid_reason",
    "expires_at": "invalid_expires_at",
    "payout_id": "invalid_payout_id",
    "marketplace": "invalid_marketplace",
    "address": "invalid_address",
    "source": "invalid_source",
    "listed": "invalid_listed",
    "url": "invalid_url",
    "event_types": "invalid_event_types",
    "enabled": "invalid_enabled",
    "event_id": "invalid_event_id",
    "after_seq": "invalid_after_seq",
}
# The lists a body carries up to MAX_BATCH of: their items are reported by index.
_BATCHES = frozenset({"earnings", "entries"})


def field_path(loc: tuple[int | str, ...]) -> str | None:
    """``("earnings", 3, "amount")`` -> ``earnings[3].amount``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _code(error: Any) -> str:
    kind = error["type"]
    if kind in DOMAIN_CODES:
        return str(kind)
    if kind in _TYPE_CODES:
        return _TYPE_CODES[kind]
    loc = error["loc"]
    if len(loc) == 1 and loc[0] in _BATCHES:
        return {"too_long": "batch_too_large", "too_short": "empty_batch"}.get(
            kind, "invalid_batch"
        )
    names = [p for p in loc if isinstance(p, str)]
    return _FIELD_CODES.get(names[-1], "invalid_field") if names else "invalid_body"


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        item: dict[str, Any] = {
            "code": _code(error),
            "field": field_path(loc),
            "message": error["msg"],
        }
        if len(loc) >= 2 and loc[0] in _BATCHES and isinstance(loc[1], int):
            item["index"] = loc[1]
        out.append(item)
    return out


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 415 unless JSON and with 413 past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, "body_too_large", f"request body must be at most {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"request body must be at most {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if body and media != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
            field="Content-Type",
        )
    return body


def parse(adapter: TypeAdapter[M], body: bytes, context: dict[str, Any] | None = None) -> M:
    try:
        return adapter.validate_json(body or b"{}", context=context)
    except ValidationError as exc:
        errors = validation_errors(exc)
        first = errors[0]
        raise ApiError(
            422, first["code"], first["message"], field=first["field"], errors=errors
        ) from exc
