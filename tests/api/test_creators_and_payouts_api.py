"""Creators' addresses and balances, payouts and their history, as a marketplace sees them."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from payouts.runtime import Runtime
from tests.apikit import Tenant, count, post_earning
from tests.chainkit import roll_up_now

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def put_address(api: TestClient, tenant: Tenant, creator: str, address: str) -> dict:
    response = api.put(
        f"/v1/creators/{creator}", json={"payout_address": address}, headers=tenant.auth
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_registering_an_address_creates_the_creator_without_a_hold(
    api: TestClient, alice_shop: Tenant
) -> None:
    response = api.put(
        "/v1/creators/creator-1", json={"payout_address": ADDRESS.lower()}, headers=alice_shop.auth
    )

    assert response.status_code == 201
    assert response.json()["payout_address"] == ADDRESS  # stored checksummed
    assert response.json()["hold_until"] is None


def test_changing_an_address_holds_the_next_payout_and_is_audited(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    put_address(api, alice_shop, "creator-1", ADDRESS)
    same = api.put(
        "/v1/creators/creator-1", json={"payout_address": ADDRESS}, headers=alice_shop.auth
    )
    assert same.status_code == 200
    assert same.json()["changed"] is False
    assert same.json()["hold_until"] is None

    changed = put_address(api, alice_shop, "creator-1", OTHER)

    assert changed["changed"] is True
    hold = datetime.fromisoformat(changed["hold_until"])
    assert 3500 < (hold - datetime.now(UTC)).total_seconds() <= 3600
    assert (
        count(
            api_runtime,
            "SELECT count(*) FROM transitions WHERE entity = 'creator'"
            f" AND cause LIKE '%{ADDRESS} -> {OTHER}%'",
        )
        == 1
    )
    # The held creator's earnings wait: the roll-up makes no payout for them.
    post_earning(
        api, alice_shop, "e-1", {"creator_id": "creator-1", "amount": "50000", "asset": "USDC"}
    )
    assert roll_up_now(api_runtime) == 0


def test_balance_shows_accrued_in_payout_and_paid_with_dust_carried(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    put_address(api, alice_shop, "creator-1", ADDRESS)
    for i, amount in enumerate(["20050", "10020"]):
        post_earning(
            api,
            alice_shop,
            f"e-{i}",
            {"creator_id": "creator-1", "amount": amount, "asset": "USDC"},
        )
    assert api.get("/v1/creators/creator-1/balance", headers=alice_shop.auth).json()[
        "balances"
    ] == [
        {
            "asset": "USDC",
            "decimals": 6,
            "accrued": "30070",
            "carried_dust": "0",
            "in_payout": "0",
            "paid": "0",
        }
    ]

    assert roll_up_now(api_runtime) == 1  # 30,070 rounds down to 30,000; 70 is carried

    (balance,) = api.get("/v1/creators/creator-1/balance", headers=alice_shop.auth).json()[
        "balances"
    ]
    assert (balance["accrued"], balance["carried_dust"]) == ("70", "70")
    assert (balance["in_payout"], balance["paid"]) == ("30000", "0")


def test_a_payout_shows_its_state_and_every_transition_and_its_earnings_point_to_it(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    put_address(api, alice_shop, "creator-1", ADDRESS)
    earning_id = post_earning(
        api, alice_shop, "e-1", {"creator_id": "creator-1", "amount": "40000", "asset": "USDC"}
    ).json()["id"]
    roll_up_now(api_runtime)

    payout_ref = api.get(f"/v1/earnings/{earning_id}", headers=alice_shop.auth).json()["payout"]
    payout = api.get(f"/v1/payouts/{payout_ref['id']}", headers=alice_shop.auth).json()

    assert payout_ref["status"] == payout["status"] == "pending"
    assert payout["amount"] == "40000"
    assert payout["recipient"] == ADDRESS
    assert payout["confirmations"] == 0
    assert payout["batch"] is None
    assert payout["transitions"] == []  # born pending: nothing has moved yet


def test_payouts_are_listed_newest_first_page_by_page(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    for i in range(7):
        put_address(api, alice_shop, f"creator-{i}", ADDRESS)
        post_earning(
            api,
            alice_shop,
            f"e-{i}",
            {"creator_id": f"creator-{i}", "amount": "20000", "asset": "USDC"},
        )
    roll_up_now(api_runtime)

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/payouts", params=params, headers=alice_shop.auth).json()
        seen += [p["id"] for p in page["data"]]
        pages += 1
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]

    assert pages == 3
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 7
    one = api.get("/v1/payouts", params={"creator_id": "creator-3"}, headers=alice_shop.auth)
    assert [p["creator_id"] for p in one.json()["data"]] == ["creator-3"]
