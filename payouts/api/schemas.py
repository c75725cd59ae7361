"""Request and response bodies of API v1. Field names are part of the contract.

Amounts travel as canonical strings of integer base units: JSON numbers are refused (a float
or a 64-bit overflow in a client's JSON library must not become money). Validators raise
errors whose type is the code the client sees (``invalid_amount``, ``unknown_asset``, ...).

The schemas carry the patterns of ``api.contract``, so the published document states every
rule checked here; what depends on the configuration (the assets, each one's largest earning,
today's date) is filled in by ``api.openapi``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from payouts.api import contract
from payouts.catalog import MAX_MARKETPLACE_NAME, checked_address
from payouts.errors import InvalidInput
from payouts.ingest.earnings import (
    MAX_KEY_LENGTH,
    MAX_OFFSET,
    MIN_OFFSET,
    Earning,
    check_occurred_at,
    valid_key,
)
from payouts.money import parse_amount

MAX_BATCH = 10_000
MAX_METADATA_BYTES = 4096


def clean_text(value: str) -> str:
    """PostgreSQL text holds neither NUL nor lone surrogates; refuse them here, as input."""
    if "\x00" in value:
        raise PydanticCustomError("invalid_text", "text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_text", "text must be valid Unicode") from None
    return value


# RFC 3339 as the API takes it: seconds always, at most microseconds, "Z" or "+hh:mm".
_RFC_3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


def parse_occurred_at(value: object) -> datetime | None:
    """An RFC 3339 timestamp from 2000 to a day ahead with a real UTC offset, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not _RFC_3339.fullmatch(value):
        raise PydanticCustomError(
            "invalid_occurred_at",
            "occurred_at must be an RFC 3339 timestamp with seconds and a UTC offset,"
            " e.g. 2026-01-31T12:00:00Z",
        )
    try:
        return check_occurred_at(datetime.fromisoformat(value))
    except ValueError:
        raise PydanticCustomError("invalid_occurred_at", "occurred_at is no such time") from None
    except InvalidInput as exc:
        raise PydanticCustomError("invalid_occurred_at", str(exc)) from None


OCCURRED_AT_DESCRIPTION = (
    "When the earning happened: RFC 3339 with seconds (at most microseconds) and a UTC offset"
    " from -12:00 to +14:00, from 2000-01-01T00:00:00Z to one day after the server's clock."
    " The pattern lists what is valid whatever the clock says (it is rebuilt each day); a time"
    " later today west of UTC, or tomorrow, is accepted too while within a day from now."
)
OccurredAt = Annotated[datetime | None, BeforeValidator(parse_occurred_at)]
Text255 = Annotated[
    str, Field(min_length=1, max_length=255, json_schema_extra={"pattern": contract.TEXT_PATTERN})
]

MAX_EXPIRY = timedelta(days=contract.MAX_EXPIRY_DAYS)


def check_expires_at(value: object, now: datetime | None = None) -> datetime | None:
    """An RFC 3339 timestamp after now and at most ``MAX_EXPIRY`` ahead, with a real UTC
    offset, or None (no expiry)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _RFC_3339.fullmatch(value):
        raise PydanticCustomError(
            "invalid_expires_at",
            "expires_at must be an RFC 3339 timestamp with seconds and a UTC offset,"
            " e.g. 2026-01-31T12:00:00Z",
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("invalid_expires_at", "expires_at is no such time") from None
    offset = parsed.utcoffset()
    if offset is None or not MIN_OFFSET <= offset <= MAX_OFFSET or offset % timedelta(minutes=1):
        raise PydanticCustomError(
            "invalid_expires_at",
            "expires_at must have a UTC offset from -12:00 to +14:00 in whole minutes",
        )
    now = now or datetime.now(UTC)
    latest = now + MAX_EXPIRY
    # The years first: a year-9999 time west of UTC does not exist in UTC at all.
    if not now.year <= parsed.year <= latest.year or not now < parsed.astimezone(UTC) <= latest:
        raise PydanticCustomError(
            "invalid_expires_at",
            f"expires_at must be in the future and at most {contract.MAX_EXPIRY_DAYS} days"
            " from now (leave it out for a hold that lasts until it is released)",
        )
    return parsed


EXPIRES_AT_DESCRIPTION = (
    "When the hold ends by itself: RFC 3339 with seconds (at most microseconds) and a UTC"
    " offset from -12:00 to +14:00, after the server's clock and at most"
    f" {contract.MAX_EXPIRY_DAYS} days from it; null or absent, the hold lasts until it is"
    " released. The pattern lists what is valid whatever the clock says (it is rebuilt each"
    " day); a time later today, or tomorrow east of UTC, is accepted too while in the future."
)
ExpiresAt = Annotated[
    datetime | None, BeforeValidator(check_expires_at), Field(description=EXPIRES_AT_DESCRIPTION)
]


def _not_blank(value: str, code: str, message: str) -> str:
    if not value.strip():
        raise PydanticCustomError(code, message)
    return clean_text(value)


def _not_blank_text(max_length: int, description: str) -> Any:
    return Field(
        min_length=1,
        max_length=max_length,
        description=f"{description}: text that is not all blanks, without NUL.",
        json_schema_extra={"pattern": contract.NOT_BLANK_PATTERN},
    )


# Metadata is any JSON object without NUL in its strings, at most 4096 bytes as JSON.
METADATA_VALUE_REF = "#/components/schemas/MetadataValue"
METADATA_VALUE_SCHEMA: dict[str, Any] = {
    "description": "A JSON value whose strings (and keys) hold no NUL.",
    "anyOf": [
        {"type": "string", "pattern": contract.TEXT_PATTERN},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": METADATA_VALUE_REF}},
        {
            "type": "object",
            "propertyNames": {"pattern": contract.TEXT_PATTERN},
            "additionalProperties": {"$ref": METADATA_VALUE_REF},
        },
    ],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EarningIn(_Strict):
    creator_id: Annotated[Text255, Field(description="The marketplace's id for the creator.")]
    # Before the amount, whose ceiling is the asset's.
    asset: Annotated[
        str,
        Field(
            min_length=1,
            max_length=16,
            description="One of the assets the operator configured.",
            examples=["USDC"],
        ),
    ]
    amount: Annotated[
        str,
        Field(
            description=(
                "Integer base units of the asset as a canonical decimal string (no sign,"
                " leading zero, point, exponent or space), above zero and at most the"
                " asset's largest earning."
            ),
            examples=["1250000"],
        ),
    ]
    occurred_at: Annotated[
        OccurredAt,
        Field(
            description=OCCURRED_AT_DESCRIPTION,
            json_schema_extra={"examples": ["2026-01-31T12:00:00Z"]},
        ),
    ] = None
    reference: Annotated[
        str | None, Field(max_length=255, json_schema_extra={"pattern": contract.TEXT_PATTERN})
    ] = None
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Any JSON object up to {MAX_METADATA_BYTES} bytes, without NUL.",
    )

    @field_validator("creator_id", "reference", "asset")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value)

    @field_validator("asset")
    @classmethod
    def _asset(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("assets")
        if known is not None and value not in known:
            raise PydanticCustomError(
                "unknown_asset",
                "unknown asset {asset}; configured: {known}",
                {"asset": value, "known": ", ".join(sorted(known))},
            )
        return value

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str, info: ValidationInfo) -> str:
        ceilings = (info.context or {}).get("assets") or {}
        try:
            parse_amount(value, ceiling=ceilings.get(info.data.get("asset")))
        except InvalidInput as exc:
            raise PydanticCustomError(exc.code, str(exc)) from None
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            encoded = json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeEncodeError):
            raise PydanticCustomError(
                "invalid_metadata", "metadata must be plain JSON (no NaN or Infinity)"
            ) from None
        if len(encoded) > MAX_METADATA_BYTES:
            raise PydanticCustomError(
                "invalid_metadata", f"metadata must be at most {MAX_METADATA_BYTES} bytes"
            )
        if b"\\u0000" in encoded or b"\x00" in encoded:
            raise PydanticCustomError("invalid_metadata", "metadata must not contain NUL")
        return value

    def to_earning(self, idempotency_key: str) -> Earning:
        return Earning(
            idempotency_key=idempotency_key,
            creator_id=self.creator_id,
            amount=int(self.amount),
            asset=self.asset,
            occurred_at=self.occurred_at,
            reference=self.reference,
            metadata=self.metadata,
        )


class BatchEarningIn(EarningIn):
    idempotency_key: Annotated[
        str,
        Field(
            description=f"1..{MAX_KEY_LENGTH} visible ASCII characters (0x21-0x7E).",
            json_schema_extra={
                "minLength": 1,
                "maxLength": MAX_KEY_LENGTH,
                "pattern": contract.KEY_PATTERN,
            },
        ),
    ]

    @field_validator("idempotency_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not valid_key(value):
            raise PydanticCustomError(
                "invalid_idempotency_key",
                f"idempotency_key must be 1..{MAX_KEY_LENGTH} visible ASCII characters (0x21-0x7E)",
            )
        return value


class EarningBatchIn(_Strict):
    earnings: Annotated[list[BatchEarningIn], Field(min_length=1, max_length=MAX_BATCH)]


class PayoutAddressIn(_Strict):
    payout_address: Annotated[
        str,
        Field(
            description=(
                "An address above 0xffff (not the zero address, not a precompile), all"
                " lowercase or with its EIP-55 checksum. The pattern shows the lowercase"
                " spelling, since a pattern cannot check a checksum."
            ),
            examples=["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"],
            json_schema_extra={"pattern": contract.address_pattern()},
        ),
    ]

    @field_validator("payout_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return checked_address(value)
        except InvalidInput as exc:
            raise PydanticCustomError(exc.code, str(exc)) from None


class SettlementRunIn(_Strict):
    dry_run: bool = False
    submit: bool = Field(default=True, description="Sign and broadcast what is sealed now.")


class ResolveIn(_Strict):
    resolution: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2000,
            description="What was done about it: text that is not all blanks, without NUL.",
            json_schema_extra={"pattern": contract.NOT_BLANK_PATTERN},
        ),
    ]

    @field_validator("resolution")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("missing_field", "say how it was resolved")
        return clean_text(value)


MAX_REASON = 2000
MAX_DENY_REASON = 500
MAX_SOURCE = 255
HoldReason = Annotated[str, _not_blank_text(MAX_REASON, "Why the hold is placed")]
Resolution = Annotated[str, _not_blank_text(MAX_REASON, "Why the hold ends")]


def _reason(value: str) -> str:
    return _not_blank(value, "invalid_reason", "say why the hold is placed")


def _resolution(value: str) -> str:
    return _not_blank(value, "invalid_resolution", "say why the hold ends")


class HoldIn(_Strict):
    """A marketplace holds one of its creators: nothing of theirs is paid until the hold is
    released (by the marketplace, an operator, or its expiry)."""

    reason: HoldReason
    expires_at: ExpiresAt = None

    _check_reason = field_validator("reason")(_reason)


def integral_number(value: object, info: ValidationInfo) -> object:
    """A JSON number with a zero fraction (``84.0``, ``1e2``) is an integer, as JSON Schema
    counts it: read it from the body's own text (``context["exact"]``, the body parsed with
    decimals), never through a float, which past 2**53 is another number."""
    if not isinstance(value, float):
        return value  # an int, or what the strict int refuses (a bool, a string)
    exact = ((info.context or {}).get("exact") or {}).get(info.field_name)
    if not isinstance(exact, Decimal) or not exact.is_finite() or exact != exact.to_integral():
        raise PydanticCustomError(
            "int_type", "{field} must be an integer", {"field": info.field_name}
        )
    if exact.adjusted() > len(str(contract.MAX_ID)):  # far past any bound: no huge int built
        raise PydanticCustomError("too_large", "{field} is too large", {"field": info.field_name})
    return int(exact)


class PayoutHoldIn(_Strict):
    """Hold one payout (it must be pending, or held already)."""

    payout_id: Annotated[
        int,
        Field(ge=1, le=contract.MAX_ID, description="The payout's id."),
        BeforeValidator(integral_number),
    ]
    reason: HoldReason
    expires_at: ExpiresAt = None

    _check_reason = field_validator("reason")(_reason)


class CreatorHoldIn(_Strict):
    """Hold a creator, and so all their payouts."""

    marketplace: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_MARKETPLACE_NAME,
            description="The creator's marketplace, by name.",
            json_schema_extra={"pattern": contract.TEXT_PATTERN},
        ),
    ]
    creator_id: Annotated[Text255, Field(description="The marketplace's id for the creator.")]
    reason: HoldReason
    expires_at: ExpiresAt = None

    _check_reason = field_validator("reason")(_reason)

    @field_validator("marketplace", "creator_id")
    @classmethod
    def _text(cls, value: str) -> str:
        return clean_text(value)


class OpsHoldIn(RootModel[PayoutHoldIn | CreatorHoldIn]):
    """A payout (``payout_id``) or a creator (``marketplace`` and ``creator_id``), never both."""


class ReleaseIn(_Strict):
    resolution: Resolution

    _check_resolution = field_validator("resolution")(_resolution)


class ReviewDecisionIn(_Strict):
    resolution: Resolution
    dry_run: bool = Field(default=False, description="Show the outcome; keep nothing.")

    _check_resolution = field_validator("resolution")(_resolution)


class DenyEntryIn(_Strict):
    address: Annotated[
        str,
        Field(
            description=(
                "An address above 0xffff, all lowercase or with its EIP-55 checksum. The"
                " pattern shows the lowercase spelling, since a pattern cannot check a checksum."
            ),
            examples=["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"],
            json_schema_extra={"pattern": contract.address_pattern()},
        ),
    ]
    reason: Annotated[str, _not_blank_text(MAX_DENY_REASON, "Why it is listed")]

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return checked_address(value, field="address")
        except InvalidInput as exc:
            raise PydanticCustomError(exc.code, str(exc)) from None

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _not_blank(value, "invalid_reason", "say why the address is listed")


class DenyListIn(_Strict):
    entries: Annotated[list[DenyEntryIn], Field(min_length=1, max_length=MAX_BATCH)]
    source: Annotated[
        str, _not_blank_text(MAX_SOURCE, "Where the entries come from (a file, a feed)")
    ]
    listed: bool = Field(
        default=True, description="true: deny these addresses; false: take them off the list."
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _not_blank(value, "invalid_source", "say where the entries come from")


# --- responses (documented in the OpenAPI contract; built as plain dicts for speed) ---


class Error(BaseModel):
    code: str
    message: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


class ErrorEnvelope(BaseModel):
    error: Error


class PayoutRef(BaseModel):
    id: int
    status: str
    tx_hash: str | None
    block_number: int | None


class EarningOut(BaseModel):
    id: int
    idempotency_key: str
    creator_id: str
    amount: str
    asset: str
    occurred_at: str | None
    reference: str | None
    metadata: dict[str, Any] | None
    created_at: str | None
    status: str
    payout: PayoutRef | None = None


class BatchItemOut(BaseModel):
    index: int
    id: int
    idempotency_key: str
    result: str = Field(description="created or replayed")


class EarningBatchOut(BaseModel):
    created: int
    replayed: int
    results: list[BatchItemOut]


class CreatorOut(BaseModel):
    creator_id: str
    payout_address: str | None
    hold_until: str | None
    created_at: str | None
    changed: bool


class AssetBalance(BaseModel):
    asset: str
    decimals: int
    accrued: str
    carried_dust: str
    in_payout: str
    paid: str


class BalanceOut(BaseModel):
    creator_id: str
    balances: list[AssetBalance]


class TransitionOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    at: str
    cause: str
    actor: str


class BatchRef(BaseModel):
    id: str
    status: str
    nonce: int | None


class PayoutOut(BaseModel):
    id: int
    creator_id: str
    amount: str
    asset: str
    recipient: str
    status: str
    window_start: str | None
    created_at: str | None
    batch: BatchRef | None
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    confirmations: int
    transitions: list[TransitionOut] | None = None


class PayoutPage(BaseModel):
    data: list[PayoutOut]
    has_more: bool
    next_cursor: str | None


class ExceptionOut(BaseModel):
    id: int
    kind: str
    status: str
    batch_id: int | None
    payout_id: int | None
    tx_hash: str | None
    detail: dict[str, Any]
    resolution: str | None
    created_at: str | None
    resolved_at: str | None


class ExceptionPage(BaseModel):
    data: list[ExceptionOut]
    has_more: bool
    next_cursor: str | None


class HoldOut(BaseModel):
    id: int
    creator_id: str = Field(description="The marketplace's id for the creator.")
    payout_id: int | None = Field(description="The held payout; null: the creator is held.")
    amount: str | None = Field(description="The held payout's amount in base units.")
    rule: str = Field(
        description=(
            "What placed it: operator, marketplace, a velocity or outflow limit"
            " (velocity:..., outflow:...), deny_list, token_deny, review_rejected,"
            " transfer_failed, ..."
        )
    )
    reason: str
    figures: dict[str, str] = Field(description="What tripped the rule, as strings.")
    placed_by: str
    placed_at: str
    expires_at: str | None
    status: Literal["active", "released", "rejected"]
    ended_by: str | None
    ended_at: str | None
    resolution: str | None


class HoldPage(BaseModel):
    data: list[HoldOut]
    has_more: bool
    next_cursor: str | None


class DenyListEntryOut(BaseModel):
    address: str
    reason: str
    source: str
    imported_by: str
    imported_at: str


class DenyListOut(BaseModel):
    data: list[DenyListEntryOut]


class DenyListImportOut(BaseModel):
    changed: int = Field(description="How many addresses changed status.")


EARNING = TypeAdapter(EarningIn)
EARNING_BATCH = TypeAdapter(EarningBatchIn)
PAYOUT_ADDRESS = TypeAdapter(PayoutAddressIn)
SETTLEMENT_RUN = TypeAdapter(SettlementRunIn)
RESOLVE = TypeAdapter(ResolveIn)
HOLD = TypeAdapter(HoldIn)
PAYOUT_HOLD = TypeAdapter(PayoutHoldIn)
CREATOR_HOLD = TypeAdapter(CreatorHoldIn)
RELEASE = TypeAdapter(ReleaseIn)
REVIEW_DECISION = TypeAdapter(ReviewDecisionIn)
DENY_LIST = TypeAdapter(DenyListIn)
