"""The Python client refuses, before sending anything, what the API would refuse: the same
exception class, status and code as the server's answer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from payouts.client import InvalidRequest, PayoutsClient

RECEIPT = {
    "id": 1,
    "idempotency_key": "k",
    "creator_id": "c",
    "amount": "5",
    "asset": "USDC",
    "status": "accrued",
}


@pytest.fixture
def sent() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(sent: list[httpx.Request]) -> Iterator[PayoutsClient]:
    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path == "/v1/earnings/batch":
            return httpx.Response(200, json={"created": 1, "replayed": 0, "results": []})
        if request.url.path.startswith("/v1/creators/"):
            return httpx.Response(201, json={})
        return httpx.Response(201, json=RECEIPT)

    with PayoutsClient("http://payouts.test", "pk_x", transport=httpx.MockTransport(answer)) as c:
        yield c


def _refused(raised: pytest.ExceptionInfo[InvalidRequest], code: str, field: str) -> None:
    assert (raised.value.status, raised.value.code, raised.value.field) == (422, code, field)


BAD_TIMES = [
    pytest.param(datetime(2026, 1, 1), id="naive"),
    pytest.param(datetime(1999, 12, 31, 23, 59, tzinfo=UTC), id="before-2000"),
    pytest.param(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), id="year-1"),
    pytest.param(
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=5))), id="plus-23h05"
    ),
    pytest.param(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-13))), id="minus-13h"),
    pytest.param(datetime.now(UTC) + timedelta(days=2), id="two-days-ahead"),
]


@pytest.mark.parametrize("occurred_at", BAD_TIMES)
def test_an_occurred_at_the_api_refuses_is_refused_before_sending(
    client: PayoutsClient, sent: list[httpx.Request], occurred_at: datetime
) -> None:
    with pytest.raises(InvalidRequest) as single:
        client.record_earning("c", 5, "USDC", occurred_at=occurred_at)
    _refused(single, "invalid_occurred_at", "occurred_at")
    with pytest.raises(InvalidRequest) as batch:
        client.record_earnings(
            [
                {"creator_id": "c", "amount": 5, "asset": "USDC"},
                {"creator_id": "c", "amount": 5, "asset": "USDC", "occurred_at": occurred_at},
            ]
        )
    _refused(batch, "invalid_occurred_at", "earnings[1].occurred_at")
    assert [e["index"] for e in batch.value.errors] == [1]
    assert sent == []


def test_an_occurred_at_in_range_is_sent_as_rfc_3339(
    client: PayoutsClient, sent: list[httpx.Request]
) -> None:
    at = datetime(2026, 3, 1, 12, 0, 0, 250, tzinfo=timezone(timedelta(hours=5, minutes=45)))
    client.record_earning("c", 5, "USDC", occurred_at=at)
    assert b'"occurred_at":"2026-03-01T12:00:00.000250+05:45"' in sent[0].content.replace(b" ", b"")


@pytest.mark.parametrize("key", ["ключ-é", "a b", "tab\t", "\x7f", "k" * 256])
def test_an_idempotency_key_that_is_not_visible_ascii_is_refused_before_sending(
    client: PayoutsClient, sent: list[httpx.Request], key: str
) -> None:
    with pytest.raises(InvalidRequest) as single:
        client.record_earning("c", 5, "USDC", idempotency_key=key)
    _refused(single, "invalid_idempotency_key", "Idempotency-Key")
    with pytest.raises(InvalidRequest) as batch:
        client.record_earnings(
            [{"creator_id": "c", "amount": 5, "asset": "USDC", "idempotency_key": key}]
        )
    _refused(batch, "invalid_idempotency_key", "earnings[0].idempotency_key")
    assert sent == []


@pytest.mark.parametrize(
    ("amount", "code"),
    [(0, "invalid_amount"), (-1, "invalid_amount"), (2**96, "amount_too_large")],
)
def test_an_integer_amount_the_api_refuses_is_refused_before_sending(
    client: PayoutsClient, sent: list[httpx.Request], amount: int, code: str
) -> None:
    with pytest.raises(InvalidRequest) as single:
        client.record_earning("c", amount, "USDC")
    _refused(single, code, "amount")
    assert sent == []


@pytest.mark.parametrize(
    "address",
    [
        "0x0000000000000000000000000000000000000000",
        "0x000000000000000000000000000000000000ffff",
        "0x1234",
        "not an address",
    ],
)
def test_a_zero_precompile_or_malformed_address_is_refused_before_sending(
    client: PayoutsClient, sent: list[httpx.Request], address: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        client.set_payout_address("c", address)
    _refused(raised, "invalid_address", "payout_address")
    assert sent == []


def test_good_input_goes_out_unchanged(client: PayoutsClient, sent: list[httpx.Request]) -> None:
    client.record_earning("c", 10**12, "USDC", idempotency_key="order-1!~")
    client.set_payout_address("c", "0x0000000000000000000000000000000000010000")
    assert sent[0].headers["Idempotency-Key"] == "order-1!~"
    assert len(sent) == 2
