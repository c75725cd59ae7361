"""The holds and deny-list endpoints in the published contract: every bound the server enforces
is in the document, and what the document allows the server takes.

The expiry is the one bound that moves with the clock: the document lists the timestamps valid
all day today (after now, at most ``MAX_EXPIRY_DAYS`` ahead), and every one of them passes the
server's check at the first and at the last instant of the day.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from payouts.api import contract
from payouts.api.schemas import check_expires_at
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, Tenant, post_earning
from tests.chainkit import roll_up_now

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TODAY = datetime.now(UTC).date()
DAY_STARTS = datetime.combine(TODAY, time(0, 0), tzinfo=UTC)
DAY_ENDS = datetime.combine(TODAY, time(23, 59, 59, 999999), tzinfo=UTC)


# --- the expiry: what the pattern allows, the server takes whenever today it is asked -------


@settings(max_examples=300)
@given(st.from_regex(re.compile(contract.expires_at_pattern(TODAY)), fullmatch=True))
def test_every_expiry_the_pattern_allows_is_accepted_all_day(text: str) -> None:
    assert check_expires_at(text, now=DAY_STARTS) is not None
    assert check_expires_at(text, now=DAY_ENDS) is not None


def _day(days: int) -> str:
    return (TODAY + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    "refused",
    [
        f"{_day(0)}T23:59:59Z",  # today: past by the end of the day
        f"{_day(1)}T00:00:00+00:01",  # tomorrow east of UTC: still today in UTC
        f"{_day(contract.MAX_EXPIRY_DAYS - 1)}T23:59:59-00:01",  # west: past the horizon early
        f"{_day(contract.MAX_EXPIRY_DAYS)}T00:00:01Z",
        f"{_day(30)}T00:00:00+14:01",
        f"{_day(30)}T00:00:00-12:01",
        f"{_day(30)}T24:00:00Z",
        f"{_day(30)}T00:00:00",
        f"{_day(30)}T00:00Z",
        f"{_day(30)}T00:00:00.1234567Z",
        f"{_day(30)}t00:00:00z",
        "9999-12-31T23:59:59-12:00",
    ],
)
def test_expiries_the_server_refuses_at_some_time_today_do_not_match(refused: str) -> None:
    assert not re.fullmatch(contract.expires_at_pattern(TODAY), refused)
    refusals = 0
    for now in (DAY_STARTS, DAY_ENDS):
        try:
            check_expires_at(refused, now=now)
        except PydanticCustomError:
            refusals += 1
    assert refusals


@pytest.mark.parametrize(
    "today", [date(2027, 2, 27), date(2027, 12, 31), date(2028, 2, 28), date(2028, 3, 1)]
)
def test_the_expiry_pattern_spans_exactly_the_days_ahead(today: date) -> None:
    pattern = re.compile(contract.expires_at_pattern(today))
    for days in range(-2, contract.MAX_EXPIRY_DAYS + 3):
        day = (today + timedelta(days=days)).isoformat()
        assert bool(pattern.fullmatch(f"{day}T12:00:00Z")) == (
            1 <= days <= contract.MAX_EXPIRY_DAYS - 1
        ), day
        assert bool(pattern.fullmatch(f"{day}T12:00:00+05:00")) == (
            2 <= days <= contract.MAX_EXPIRY_DAYS - 1
        ), day
        assert bool(pattern.fullmatch(f"{day}T12:00:00-05:00")) == (
            1 <= days <= contract.MAX_EXPIRY_DAYS - 2
        ), day


def test_an_expiry_later_today_is_accepted_though_the_pattern_leaves_it_out() -> None:
    """The pattern states what holds all day; the server's own rule is "after now"."""
    assert check_expires_at("2030-06-01T13:00:00Z", now=datetime(2030, 6, 1, 12, 0, tzinfo=UTC))
    with pytest.raises(PydanticCustomError):
        check_expires_at("2030-06-01T11:00:00Z", now=datetime(2030, 6, 1, 12, 0, tzinfo=UTC))


# --- the document -----------------------------------------------------------------------------


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_the_document_states_the_bounds_of_holds_and_the_deny_list(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    today = datetime.now(UTC).date()  # the day the document was built for
    schemas = doc["components"]["schemas"]
    # Pydantic's own names for bounds it could not translate would be ignored by every client.
    assert not _keys(schemas) & {"ge", "le", "gt", "lt", "multiple_of"}

    assert schemas["OpsHoldIn"]["anyOf"] == [
        {"$ref": "#/components/schemas/PayoutHoldIn"},
        {"$ref": "#/components/schemas/CreatorHoldIn"},
    ]
    for name in ("HoldIn", "PayoutHoldIn", "CreatorHoldIn", "ReleaseIn", "ReviewDecisionIn"):
        body = schemas[name]
        assert body["additionalProperties"] is False
        text = body["properties"]["reason" if "reason" in body["properties"] else "resolution"]
        assert (text["minLength"], text["maxLength"], text["pattern"]) == (
            1,
            2000,
            contract.NOT_BLANK_PATTERN,
        )
        if "expires_at" in body["properties"]:
            expires = body["properties"]["expires_at"]
            assert expires["anyOf"] == [
                {"type": "string", "pattern": contract.expires_at_pattern(today)},
                {"type": "null"},
            ]
            assert re.fullmatch(expires["anyOf"][0]["pattern"], expires["examples"][0])
    payout_id = schemas["PayoutHoldIn"]["properties"]["payout_id"]
    assert (payout_id["type"], payout_id["minimum"], payout_id["maximum"]) == (
        "integer",
        1,
        2**63 - 1,
    )
    deny = schemas["DenyListIn"]
    assert (
        deny["properties"]["entries"]["minItems"],
        deny["properties"]["entries"]["maxItems"],
    ) == (
        1,
        10_000,
    )
    assert schemas["DenyEntryIn"]["properties"]["address"]["pattern"] == contract.address_pattern()

    paths = doc["paths"]
    for path in ("/v1/holds/{hold_id}/release", "/v1/ops/holds/{hold_id}/release"):
        (hold_id,) = paths[path]["post"]["parameters"]
        assert hold_id["schema"]["pattern"] == contract.ID_PATTERN
    for path in ("/v1/creators/{creator_id}/holds", "/v1/ops/holds", "/v1/ops/review"):
        parameters = {p["name"]: p["schema"] for p in paths[path]["get"]["parameters"]}
        assert parameters["cursor"]["pattern"] == contract.cursor_pattern()
        assert (parameters["limit"]["minimum"], parameters["limit"]["maximum"]) == (1, 100)
        if "status" in parameters:
            assert parameters["status"]["enum"] == ["active", "released", "rejected", "all"]
    assert "status" not in {p["name"] for p in paths["/v1/ops/review"]["get"]["parameters"]}
    assert paths["/v1/creators/{creator_id}/holds"]["post"]["requestBody"]["required"] is True


@pytest.mark.parametrize(
    ("path", "admin"),
    [
        ("/v1/ops/holds", True),
        ("/v1/ops/deny-list", True),
        ("/v1/creators/star/holds", False),
    ],
)
def test_an_undeclared_method_names_every_method_of_the_path(
    api: TestClient, alice_shop: Tenant, path: str, admin: bool
) -> None:
    """Two routes share each of these paths (GET and POST); Starlette's own 405 names only the
    first one's methods."""
    response = api.delete(path, headers=ADMIN if admin else alice_shop.auth)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- ids, cursors and parameters as the other endpoints take them ----------------------------

NOT_CANONICAL = ["1.0", "+1", "%201", "01", "1e0", "%2B1", "1_0"]


@pytest.fixture
def hold_one(api: TestClient, alice_shop: Tenant) -> None:
    """Hold 1 exists and is alice's, so a non-canonical "1" would find it."""
    api.put("/v1/creators/star", json={"payout_address": ADDRESS}, headers=alice_shop.auth)
    placed = api.post("/v1/creators/star/holds", json={"reason": "x"}, headers=alice_shop.auth)
    assert placed.json()["id"] == 1


@pytest.mark.usefixtures("hold_one")
@pytest.mark.parametrize("spelling", NOT_CANONICAL)
@pytest.mark.parametrize(
    ("template", "admin"),
    [
        ("/v1/holds/{}/release", False),
        ("/v1/ops/holds/{}/release", True),
        ("/v1/ops/holds/{}/reject", True),
    ],
)
def test_a_hold_id_that_is_not_canonical_names_nothing(
    api: TestClient, alice_shop: Tenant, template: str, admin: bool, spelling: str
) -> None:
    response = api.post(
        template.format(spelling),
        json={"resolution": "by hand"},
        headers=ADMIN if admin else alice_shop.auth,
    )

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    [hold] = api.get("/v1/ops/holds", headers=ADMIN).json()["data"]
    assert hold["status"] == "active"


@pytest.mark.parametrize(
    ("path", "admin"),
    [
        ("/v1/creators/star/holds", False),
        ("/v1/ops/holds", True),
        ("/v1/ops/review", True),
    ],
)
@pytest.mark.parametrize("query", ["cursor=djE6MTA=", "cursor=djE6MDEw", "limit=0", "limit=101"])
def test_paging_is_checked_as_on_every_listing(
    api: TestClient, alice_shop: Tenant, path: str, admin: bool, query: str
) -> None:
    response = api.get(f"{path}?{query}", headers=ADMIN if admin else alice_shop.auth)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == query.split("=")[0]


def test_a_hold_on_a_payout_pages_with_the_cursor_it_was_given(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    api.put("/v1/creators/star", json={"payout_address": ADDRESS}, headers=alice_shop.auth)
    post_earning(api, alice_shop, "e-1", {"creator_id": "star", "amount": "50000", "asset": "USDC"})
    roll_up_now(api_runtime)
    [payout] = api.get("/v1/payouts", headers=alice_shop.auth).json()["data"]
    ids = [
        api.post(
            "/v1/ops/holds", json={"payout_id": payout["id"], "reason": f"r{i}"}, headers=ADMIN
        ).json()["id"]
        for i in range(5)
    ]
    seen: list[int] = []
    cursor = None
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/v1/ops/holds?{query}", headers=ADMIN).json()
        seen += [h["id"] for h in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert seen == ids[::-1]
