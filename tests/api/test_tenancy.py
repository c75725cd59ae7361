"""A marketplace sees and touches only its own creators, earnings and payouts.

Another tenant's id is 404, never 403, and the answer is the same as for an id that does
not exist, so nothing leaks about what another marketplace has.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from payouts.runtime import Runtime
from tests.apikit import Tenant, count, post_earning
from tests.chainkit import roll_up_now

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
INTRUDER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.fixture
def alices_things(api: TestClient, alice_shop: Tenant, api_runtime: Runtime) -> dict[str, int]:
    api.put("/v1/creators/star", json={"payout_address": ADDRESS}, headers=alice_shop.auth)
    earning_id = post_earning(
        api, alice_shop, "e-1", {"creator_id": "star", "amount": "50000", "asset": "USDC"}
    ).json()["id"]
    roll_up_now(api_runtime)
    payout_id = api.get(f"/v1/earnings/{earning_id}", headers=alice_shop.auth).json()["payout"][
        "id"
    ]
    return {"earning": earning_id, "payout": payout_id}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/earnings/{earning}",
        "/v1/payouts/{payout}",
        "/v1/creators/star/balance",
    ],
)
def test_another_tenants_resource_is_not_found(
    api: TestClient, alice_shop: Tenant, bob_shop: Tenant, alices_things: dict[str, int], path: str
) -> None:
    url = path.format(**alices_things)
    assert api.get(url, headers=alice_shop.auth).status_code == 200

    response = api.get(url, headers=bob_shop.auth)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    missing = api.get(
        path.format(earning=10**9, payout=10**9).replace("star", "nobody"), headers=bob_shop.auth
    )
    assert missing.json()["error"]["code"] == response.json()["error"]["code"]


def test_another_tenants_payouts_are_not_listed(
    api: TestClient, bob_shop: Tenant, alices_things: dict[str, int]
) -> None:
    for params in ({}, {"creator_id": "star"}):
        page = api.get("/v1/payouts", params=params, headers=bob_shop.auth).json()
        assert page == {"data": [], "has_more": False, "next_cursor": None}


def test_the_same_creator_id_under_another_tenant_is_another_creator(
    api: TestClient,
    alice_shop: Tenant,
    bob_shop: Tenant,
    api_runtime: Runtime,
    alices_things: dict[str, int],
) -> None:
    response = api.put(
        "/v1/creators/star", json={"payout_address": INTRUDER}, headers=bob_shop.auth
    )

    assert response.status_code == 201  # bob's own, new creator "star"
    with_alice = count(
        api_runtime,
        f"SELECT count(*) FROM creators WHERE marketplace_id = {alice_shop.id}"
        f" AND payout_address = '{ADDRESS}' AND hold_until IS NULL",
    )
    assert with_alice == 1
    payout = api.get(f"/v1/payouts/{alices_things['payout']}", headers=alice_shop.auth).json()
    assert payout["recipient"] == ADDRESS


def test_another_tenants_idempotency_key_replays_nothing_of_theirs(
    api: TestClient, alice_shop: Tenant, bob_shop: Tenant, alices_things: dict[str, int]
) -> None:
    response = post_earning(
        api, bob_shop, "e-1", {"creator_id": "star", "amount": "50000", "asset": "USDC"}
    )

    assert response.status_code == 201
    assert response.headers["Idempotent-Replayed"] == "false"
    assert response.json()["id"] != alices_things["earning"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/ops/exceptions"),
        ("GET", "/v1/ops/exceptions/1"),
        ("POST", "/v1/ops/exceptions/1/resolve"),
        ("POST", "/v1/ops/settlement-runs"),
    ],
)
def test_ops_endpoints_refuse_marketplace_keys(
    api: TestClient, alice_shop: Tenant, method: str, path: str
) -> None:
    response = api.request(method, path, json={"resolution": "x"}, headers=alice_shop.auth)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_key_required"


def test_the_admin_key_is_not_a_marketplace_key(api: TestClient, admin: dict[str, str]) -> None:
    response = api.get("/v1/payouts", headers=admin)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
