"""A marketplace holds its own creators over HTTP, lists the holds on them and releases the
ones it placed; another marketplace's creator or hold answers 404, as one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, Tenant, count, post_earning
from tests.chainkit import roll_up_now

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
HOLD_FIELDS = {
    "id",
    "creator_id",
    "payout_id",
    "amount",
    "rule",
    "reason",
    "figures",
    "placed_by",
    "placed_at",
    "expires_at",
    "status",
    "ended_by",
    "ended_at",
    "resolution",
}


def _creator(api: TestClient, tenant: Tenant, creator: str = "star") -> None:
    response = api.put(
        f"/v1/creators/{creator}", json={"payout_address": ADDRESS}, headers=tenant.auth
    )
    assert response.status_code in (200, 201), response.text


def _hold(api: TestClient, tenant: Tenant, creator: str = "star", **body: Any) -> Any:
    return api.post(
        f"/v1/creators/{creator}/holds", json={"reason": "chargeback", **body}, headers=tenant.auth
    )


def _creator_state(rt: Runtime, tenant: Tenant, creator: str = "star") -> str:
    with rt.uow() as session:
        return str(
            session.execute(
                text("SELECT state FROM creators WHERE marketplace_id = :m AND external_id = :x"),
                {"m": tenant.id, "x": creator},
            ).scalar_one()
        )


def test_a_marketplace_holds_its_creator_lists_the_hold_and_releases_it_once(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    _creator(api, alice_shop)

    placed = _hold(api, alice_shop, reason="  account under review  ")

    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert set(hold) == HOLD_FIELDS  # no internal creator key or marketplace id
    assert {k: hold[k] for k in ("creator_id", "payout_id", "amount", "rule", "status")} == {
        "creator_id": "star",
        "payout_id": None,
        "amount": None,
        "rule": "marketplace",
        "status": "active",
    }
    assert (hold["reason"], hold["placed_by"]) == (
        "account under review",
        f"marketplace:{alice_shop.id}",
    )
    assert (hold["expires_at"], hold["ended_by"], hold["ended_at"], hold["resolution"]) == (
        None,
        None,
        None,
        None,
    )
    assert _creator_state(api_runtime, alice_shop) == "held"
    page = api.get("/v1/creators/star/holds", headers=alice_shop.auth).json()
    assert page == {"data": [hold], "has_more": False, "next_cursor": None}

    released = api.post(
        f"/v1/holds/{hold['id']}/release", json={"resolution": "cleared"}, headers=alice_shop.auth
    )

    assert released.status_code == 200, released.text
    assert set(released.json()) == HOLD_FIELDS
    assert {k: released.json()[k] for k in ("status", "resolution", "ended_by")} == {
        "status": "released",
        "resolution": "cleared",
        "ended_by": f"marketplace:{alice_shop.id}",
    }
    assert _creator_state(api_runtime, alice_shop) == "active"
    again = api.post(
        f"/v1/holds/{hold['id']}/release", json={"resolution": "again"}, headers=alice_shop.auth
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "illegal_transition"
    listed = {
        status: [
            h["id"]
            for h in api.get(
                f"/v1/creators/star/holds?status={status}", headers=alice_shop.auth
            ).json()["data"]
        ]
        for status in ("active", "released", "rejected", "all")
    }
    assert listed == {"active": [], "released": [hold["id"]], "rejected": [], "all": [hold["id"]]}


def test_an_expiry_is_kept_as_the_same_instant(api: TestClient, alice_shop: Tenant) -> None:
    _creator(api, alice_shop)
    when = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=250000)
    spelt = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"

    hold = _hold(api, alice_shop, expires_at=spelt)

    assert hold.status_code == 201, hold.text
    assert datetime.fromisoformat(hold.json()["expires_at"]) == when


def test_the_holds_on_a_creator_include_those_on_its_payouts_and_page_newest_first(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    _creator(api, alice_shop)
    post_earning(api, alice_shop, "e-1", {"creator_id": "star", "amount": "50000", "asset": "USDC"})
    roll_up_now(api_runtime)
    payout_id = api.get("/v1/payouts", headers=alice_shop.auth).json()["data"][0]["id"]
    on_payout = api.post(
        "/v1/ops/holds", json={"payout_id": payout_id, "reason": "kyc"}, headers=ADMIN
    ).json()
    mine = [_hold(api, alice_shop, reason=f"r{i}").json()["id"] for i in range(2)]

    first = api.get("/v1/creators/star/holds?limit=2", headers=alice_shop.auth).json()
    second = api.get(
        f"/v1/creators/star/holds?limit=2&cursor={first['next_cursor']}", headers=alice_shop.auth
    ).json()

    assert [h["id"] for h in first["data"]] == mine[::-1]
    assert first["has_more"] is True
    assert second == {
        "data": [{k: on_payout[k] for k in HOLD_FIELDS}],
        "has_more": False,
        "next_cursor": None,
    }
    assert (on_payout["payout_id"], on_payout["amount"], on_payout["rule"]) == (
        payout_id,
        "50000",
        "operator",
    )
    # An operator's hold is the marketplace's to see, not to release.
    refused = api.post(
        f"/v1/holds/{on_payout['id']}/release", json={"resolution": "mine"}, headers=alice_shop.auth
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "not_found"


# --- tenancy: another marketplace's creator or hold is 404, as a missing one is ---------------


@pytest.fixture
def alices_hold(api: TestClient, alice_shop: Tenant) -> dict[str, Any]:
    _creator(api, alice_shop)
    hold: dict[str, Any] = _hold(api, alice_shop).json()
    return hold


def test_another_marketplaces_creator_cannot_be_held(
    api: TestClient, alice_shop: Tenant, bob_shop: Tenant, alices_hold: dict[str, Any]
) -> None:
    theirs = _hold(api, bob_shop, "star")
    missing = _hold(api, bob_shop, "nobody")

    assert (theirs.status_code, missing.status_code) == (404, 404)
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert len(api.get("/v1/creators/star/holds", headers=alice_shop.auth).json()["data"]) == 1


def test_another_marketplaces_hold_is_neither_listed_nor_released(
    api: TestClient,
    alice_shop: Tenant,
    bob_shop: Tenant,
    api_runtime: Runtime,
    alices_hold: dict[str, Any],
) -> None:
    _creator(api, bob_shop)  # bob's own creator "star"

    listed = api.get("/v1/creators/star/holds?status=all", headers=bob_shop.auth).json()
    theirs = api.post(
        f"/v1/holds/{alices_hold['id']}/release", json={"resolution": "x"}, headers=bob_shop.auth
    )
    missing = api.post("/v1/holds/999999/release", json={"resolution": "x"}, headers=bob_shop.auth)

    assert listed == {"data": [], "has_more": False, "next_cursor": None}
    assert (theirs.status_code, missing.status_code) == (404, 404)
    for answer in (theirs, missing):
        assert (answer.json()["error"]["code"], answer.json()["error"]["field"]) == (
            "not_found",
            None,
        )
    assert _creator_state(api_runtime, alice_shop) == "held"
    assert _creator_state(api_runtime, bob_shop) == "active"


def test_a_creator_the_marketplace_does_not_have_has_no_holds(
    api: TestClient, bob_shop: Tenant, alices_hold: dict[str, Any]
) -> None:
    page = api.get("/v1/creators/nobody/holds", headers=bob_shop.auth)

    assert page.status_code == 200
    assert page.json() == {"data": [], "has_more": False, "next_cursor": None}


def test_a_marketplace_key_is_needed(api: TestClient, alices_hold: dict[str, Any]) -> None:
    for method, url, body in [
        ("POST", "/v1/creators/star/holds", {"reason": "x"}),
        ("GET", "/v1/creators/star/holds", None),
        ("POST", f"/v1/holds/{alices_hold['id']}/release", {"resolution": "x"}),
    ]:
        anonymous = api.request(method, url, json=body)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "missing_api_key"
        as_admin = api.request(method, url, json=body, headers=ADMIN)
        assert as_admin.status_code == 401  # the admin key is not a marketplace's
        assert as_admin.json()["error"]["code"] == "invalid_api_key"


# --- bad input: 422 with a code, nothing kept ---------------------------------------------------


def _in(days: float, offset: str = "Z") -> str:
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S") + offset


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param(
            {"reason": "x", "expires_at": _in(-1)}, "invalid_expires_at", "expires_at", id="past"
        ),
        pytest.param(
            {"reason": "x", "expires_at": _in(-1 / 86400)},
            "invalid_expires_at",
            "expires_at",
            id="a-second-ago",
        ),
        pytest.param(
            {"reason": "x", "expires_at": _in(367)},
            "invalid_expires_at",
            "expires_at",
            id="past-the-horizon",
        ),
        pytest.param(
            {"reason": "x", "expires_at": _in(1, "")},
            "invalid_expires_at",
            "expires_at",
            id="no-offset",
        ),
        pytest.param(
            {"reason": "x", "expires_at": _in(1, "+15:00")},
            "invalid_expires_at",
            "expires_at",
            id="offset-past-14h",
        ),
        pytest.param(
            {"reason": "x", "expires_at": "9999-12-31T23:59:59-12:00"},
            "invalid_expires_at",
            "expires_at",
            id="year-9999-west",
        ),
        pytest.param(
            {"reason": "x", "expires_at": 1893456000},
            "invalid_expires_at",
            "expires_at",
            id="a-number",
        ),
        pytest.param({"reason": ""}, "invalid_reason", "reason", id="empty-reason"),
        pytest.param({"reason": " \t\u3000 "}, "invalid_reason", "reason", id="blank-reason"),
        pytest.param({"reason": "a\x00b"}, "invalid_text", "reason", id="nul-in-reason"),
        pytest.param({"reason": "x" * 2001}, "invalid_reason", "reason", id="long-reason"),
        pytest.param({"reason": 7}, "invalid_reason", "reason", id="reason-a-number"),
        pytest.param({}, "missing_field", "reason", id="no-reason"),
        pytest.param(
            {"reason": "x", "rule": "operator"}, "unknown_field", "rule", id="extra-field"
        ),
    ],
)
def test_a_bad_hold_is_refused_and_nothing_is_kept(
    api: TestClient,
    alice_shop: Tenant,
    api_runtime: Runtime,
    body: dict[str, Any],
    code: str,
    field: str,
) -> None:
    _creator(api, alice_shop)

    response = api.post("/v1/creators/star/holds", json=body, headers=alice_shop.auth)

    assert response.status_code == 422, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (code, field)
    assert count(api_runtime, "SELECT count(*) FROM holds") == 0
    assert _creator_state(api_runtime, alice_shop) == "active"


def test_a_release_says_why(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, alices_hold: dict[str, Any]
) -> None:
    for body, code in [
        ({}, "missing_field"),
        ({"resolution": "  "}, "invalid_resolution"),
        ({"resolution": "ok", "dry_run": True}, "unknown_field"),  # operators only
    ]:
        response = api.post(
            f"/v1/holds/{alices_hold['id']}/release", json=body, headers=alice_shop.auth
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == code
    assert _creator_state(api_runtime, alice_shop) == "held"


def test_an_unknown_creator_cannot_be_held(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    response = _hold(api, alice_shop, "nobody")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert count(api_runtime, "SELECT count(*) FROM creators") == 0
