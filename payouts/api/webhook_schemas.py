"""Request and response bodies of the webhook endpoints' API. Field names are the contract.

An endpoint's URL is checked by the handler against the rules the operator configured (https
unless http is allowed; a host name, IP literals and localhost only where private addresses
are allowed); the OpenAPI document publishes the same rules as the URL's pattern, filled in
by ``api.openapi`` from the settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, TypeAdapter

from payouts.api import contract
from payouts.api.schemas import integral_number
from payouts.events import TYPES
from payouts.notify.endpoints import (
    EVENT_ID_PATTERN,
    MAX_EVENT_TYPES,
    MAX_URL,
    url_pattern,
)

URL_DESCRIPTION = (
    "Where events are POSTed: https://host[:port][/path][?query], the host a lowercase name"
    " (an IP literal or localhost only where the operator allows private addresses; plain"
    " http only where allowed). Requests never go to loopback, private, link-local, multicast"
    " or reserved addresses unless the operator allows them: the name is resolved and checked"
    " at every delivery."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_URL,
        description=URL_DESCRIPTION,
        examples=["https://hooks.example.com/payouts"],
        json_schema_extra={"pattern": url_pattern(allow_http=False, allow_private=False)},
    ),
]
if TYPE_CHECKING:
    EventType = str
else:  # the OpenAPI document lists every type (an enum); mypy sees the str it is
    EventType = Annotated[
        Literal[tuple(TYPES)], Field(description="An event type, e.g. payout.finalized.")
    ]
EventTypes = Annotated[
    list[EventType],
    Field(
        max_length=MAX_EVENT_TYPES,
        description="The event types to send; empty: all of them.",
        examples=[["payout.finalized", "payout.failed"]],
    ),
]


class EndpointIn(_Strict):
    url: Url
    event_types: EventTypes = []


class EndpointUpdateIn(_Strict):
    """Only what is given changes; enabling again clears the failures and tries the event
    that failed at once."""

    url: Url | None = None
    event_types: EventTypes | None = None
    enabled: bool | None = None


class RedeliverEventIn(_Strict):
    """Send one event again (the same id: a receiver that has it drops the duplicate)."""

    event_id: Annotated[
        str,
        Field(max_length=23, pattern=EVENT_ID_PATTERN, examples=["evt_42"]),
    ]
    dry_run: bool = Field(default=False, description="Say what would be sent; keep nothing.")


class RedeliverAfterIn(_Strict):
    """Send every event the endpoint takes after this sequence number again, in order."""

    after_seq: Annotated[
        int,
        Field(ge=0, le=contract.MAX_ID, description="A sequence number (0: everything)."),
        BeforeValidator(integral_number),
    ]
    dry_run: bool = Field(default=False, description="Say what would be sent; keep nothing.")


class RedeliverIn(RootModel[RedeliverEventIn | RedeliverAfterIn]):
    """One event (``event_id``) or everything after a sequence number (``after_seq``)."""


# --- responses ---------------------------------------------------------------------------


class EndpointOut(BaseModel):
    id: int
    marketplace: str
    url: str
    event_types: list[str] = Field(description="Empty: every type.")
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    disabled_at: str | None
    delivered_seq: int = Field(description="The last sequence number delivered (or skipped).")
    last_seq: int = Field(description="The marketplace's newest sequence number.")
    failures: int = Field(description="Failed tries of the event at the head, in a row.")
    retry_at: str | None
    failing_since: str | None
    created_at: str | None


class EndpointCreatedOut(EndpointOut):
    secret: str = Field(description="whsec_...: verify deliveries with it. Shown only now.")


class SecretRotatedOut(EndpointCreatedOut):
    previous_secrets_expire_in_seconds: float = Field(
        description="Until then deliveries carry a signature by the old secret too."
    )


class EndpointPage(BaseModel):
    data: list[EndpointOut]
    has_more: bool
    next_cursor: str | None


class AttemptOut(BaseModel):
    id: int
    event_id: str
    seq: int | None
    type: str
    attempt: int = Field(description="1 for the first try of the event, then 2, ...")
    status: int | None = Field(description="The receiver's HTTP status; null: no answer.")
    error: str | None = Field(description="Why there was no answer (timeout, refused, ...).")
    latency_ms: int
    response: str | None = Field(description="The first 500 characters of the answer.")
    created_at: str | None


class AttemptPage(BaseModel):
    data: list[AttemptOut]
    has_more: bool
    next_cursor: str | None


class RedeliveryEventOut(BaseModel):
    id: str
    seq: int
    type: str


class RedeliveryOut(BaseModel):
    dry_run: bool
    endpoint_id: int
    events: int = Field(description="How many events are (or would be) sent again.")
    first: list[RedeliveryEventOut] = Field(description="The first of them, up to 100.")


ENDPOINT = TypeAdapter(EndpointIn)
ENDPOINT_UPDATE = TypeAdapter(EndpointUpdateIn)
REDELIVER_EVENT = TypeAdapter(RedeliverEventIn)
REDELIVER_AFTER = TypeAdapter(RedeliverAfterIn)
