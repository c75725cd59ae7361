"""The event feed's responses: what ``GET /v1/events`` returns (and a webhook carries)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EventOut(BaseModel):
    id: str = Field(description="evt_<n>: stable, the same in every delivery (deduplicate by it)")
    seq: int = Field(description="Your sequence number: per marketplace, gapless, increasing")
    type: str = Field(description="payout.finalized, hold.placed, ... (see the README)")
    timestamp: str = Field(description="When the change was written (ISO 8601)")
    data: dict[str, Any] = Field(
        description="Ids, status, amounts as strings of base units, and a link (url);"
        " payout.claimable adds the address's current voucher (chain_id, contract, token,"
        " recipient, cumulative, signature, calldata), as GET /v1/creators/{id}/claim shows it"
    )


class EventPage(BaseModel):
    data: list[EventOut]
    has_more: bool = Field(description="More events follow: ask again with after=next_after")
    next_after: int = Field(description="The seq of the last event here (after, when empty)")
