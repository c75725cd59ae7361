"""Request and response bodies of API v1. Field names are part of the contract.

Amounts travel as strings of integer base units: JSON numbers are refused (a float or a
64-bit overflow in a client's JSON library must not become money). Validators raise errors
whose type is the code the client sees (``invalid_amount``, ``unknown_asset``, ...).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from payouts.catalog import checked_address
from payouts.errors import InvalidInput
from payouts.ingest.earnings import MAX_KEY_LENGTH, Earning
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


Amount = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,78}$",
        description="Integer base units of the asset, as a string of digits.",
        examples=["1250000"],
    ),
]
Text255 = Annotated[str, Field(min_length=1, max_length=255)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EarningIn(_Strict):
    creator_id: Annotated[Text255, Field(description="The marketplace's id for the creator.")]
    amount: Amount
    asset: Annotated[str, Field(min_length=1, max_length=16, examples=["USDC"])]
    occurred_at: AwareDatetime | None = None
    reference: Annotated[str, Field(max_length=255)] | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description=f"Any JSON object up to {MAX_METADATA_BYTES} bytes."
    )

    @field_validator("creator_id", "reference", "asset")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value)

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        try:
            parse_amount(value)
        except InvalidInput as exc:
            raise PydanticCustomError("invalid_amount", str(exc)) from None
        return value

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
    idempotency_key: Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]

    @field_validator("idempotency_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return clean_text(value)


class EarningBatchIn(_Strict):
    earnings: Annotated[list[BatchEarningIn], Field(min_length=1, max_length=MAX_BATCH)]


class PayoutAddressIn(_Strict):
    payout_address: Annotated[
        str,
        Field(
            pattern=r"^0x[0-9a-fA-F]{40}$",
            description="EIP-55 checksummed (or all-lowercase) address.",
            examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"],
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
    resolution: Annotated[str, Field(min_length=1, max_length=2000)]

    @field_validator("resolution")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("missing_field", "say how it was resolved")
        return clean_text(value)


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


EARNING = TypeAdapter(EarningIn)
EARNING_BATCH = TypeAdapter(EarningBatchIn)
PAYOUT_ADDRESS = TypeAdapter(PayoutAddressIn)
SETTLEMENT_RUN = TypeAdapter(SettlementRunIn)
RESOLVE = TypeAdapter(ResolveIn)
