"""GET /v1/events: a marketplace's own events in sequence order, paged by ``after``.

One earning request is one ``earnings.accepted`` event (a batch too); a replay adds none.
Another tenant's events are never listed. Bad paging is a 422 with its code.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from payouts.runtime import Runtime
from tests.apikit import Tenant, earning, post_earning
from tests.chainkit import roll_up_now
from tests.eventkit import number_all

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def feed(api: TestClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    number_all(api.app.state.runtime)  # type: ignore[attr-defined]
    response = api.get("/v1/events", params=params, headers=tenant.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def types(page: dict[str, Any]) -> list[str]:
    return [e["type"] for e in page["data"]]


def test_each_request_is_one_event_and_a_replay_is_none(
    api: TestClient, alice_shop: Tenant
) -> None:
    first = post_earning(api, alice_shop, "k-1", earning(amount="700"))
    assert post_earning(api, alice_shop, "k-1", earning(amount="700")).status_code == 201
    batch = [
        {**earning(creator=f"c-{i}", amount="100"), "idempotency_key": f"b-{i}"} for i in range(3)
    ]
    assert api.post(
        "/v1/earnings/batch", json={"earnings": batch}, headers=alice_shop.auth
    ).is_success
    # The same batch again is all replays; with one new item it is one event of one earning.
    assert api.post(
        "/v1/earnings/batch", json={"earnings": batch}, headers=alice_shop.auth
    ).is_success
    again = [*batch, {**earning(amount="5"), "idempotency_key": "b-new"}]
    assert api.post(
        "/v1/earnings/batch", json={"earnings": again}, headers=alice_shop.auth
    ).is_success

    page = feed(api, alice_shop)

    assert types(page) == ["earnings.accepted"] * 3
    single, bulk, mixed = (e["data"] for e in page["data"])
    earning_id = first.json()["id"]
    assert single == {
        "accepted": 1,
        "replayed": 0,
        "totals": {"USDC": "700"},
        "earning_id": earning_id,
        "creator_id": "creator-1",
        "url": f"/v1/earnings/{earning_id}",
    }
    assert bulk["accepted"] == 3
    assert bulk["totals"] == {"USDC": "300"}
    assert bulk["earning_id"] is None
    assert (mixed["accepted"], mixed["replayed"], mixed["totals"]) == (1, 3, {"USDC": "5"})
    assert [e["seq"] for e in page["data"]] == [1, 2, 3]
    assert all(e["id"].startswith("evt_") for e in page["data"])
    assert page["has_more"] is False
    assert page["next_after"] == 3


def test_pages_follow_after_and_limit(api: TestClient, alice_shop: Tenant) -> None:
    for i in range(5):
        post_earning(api, alice_shop, f"p-{i}", earning(amount=str(100 + i)))

    first = feed(api, alice_shop, limit=2)
    second = feed(api, alice_shop, after=first["next_after"], limit=2)
    third = feed(api, alice_shop, after=second["next_after"], limit=2)
    done = feed(api, alice_shop, after=third["next_after"])

    seqs = [[e["seq"] for e in p["data"]] for p in (first, second, third, done)]
    assert seqs == [[1, 2], [3, 4], [5], []]
    assert [p["has_more"] for p in (first, second, third)] == [True, True, False]
    assert done["next_after"] == 5
    totals = [e["data"]["totals"]["USDC"] for p in (first, second, third) for e in p["data"]]
    assert totals == ["100", "101", "102", "103", "104"]


def test_a_tenant_lists_only_its_own_events(
    api: TestClient, alice_shop: Tenant, bob_shop: Tenant, api_runtime: Runtime
) -> None:
    api.put("/v1/creators/star", json={"payout_address": ADDRESS}, headers=alice_shop.auth)
    post_earning(api, alice_shop, "a-1", earning(creator="star", amount="50000"))
    post_earning(api, bob_shop, "b-1", earning(creator="other", amount="300"))
    roll_up_now(api_runtime)

    alices = feed(api, alice_shop)
    bobs = feed(api, bob_shop)

    assert "payout.created" in types(alices)
    assert types(bobs) == ["earnings.accepted"]
    assert bobs["data"][0]["seq"] == 1  # numbered per marketplace
    assert bobs["data"][0]["data"]["creator_id"] == "other"
    assert not {e["id"] for e in alices["data"]} & {e["id"] for e in bobs["data"]}
    # The type filter narrows, never widens.
    only = feed(api, alice_shop, type="payout.created")
    assert types(only) == ["payout.created"]
    created = only["data"][0]["data"]
    assert created["creator_id"] == "star"
    assert created["amount"] == "50000"
    assert created["url"] == f"/v1/payouts/{created['payout_id']}"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("after=-1", "invalid_after"),
        ("after=x", "invalid_after"),
        ("after=9223372036854775808", "invalid_after"),
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("type=payout.nope", "invalid_type"),
        ("cursor=abc", "unknown_parameter"),
    ],
)
def test_bad_paging_is_refused_with_its_code(
    api: TestClient, alice_shop: Tenant, query: str, code: str
) -> None:
    response = api.get(f"/v1/events?{query}", headers=alice_shop.auth)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


def test_the_feed_needs_a_key(api: TestClient) -> None:
    response = api.get("/v1/events")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
