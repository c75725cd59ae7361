"""Operators over HTTP: holds on payouts and creators, the review queue (approve or reject, dry
run first) and the deny list; only the admin key opens them. The review queue and screening
run through real settlement runs on anvil.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payouts.api.app import create_app
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, Tenant, count, make_tenant, post_earning
from tests.chainkit import MARKETPLACE, roll_up_now, seed

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
DENIED = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
ALSO_DENIED = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"

# What a kept decision would change; a dry run leaves every one of these as it was.
KEPT = (
    "SELECT (SELECT count(*) FROM holds WHERE state = 'active')"
    " + 1000 * (SELECT count(*) FROM transitions)"
    " + 1000000 * (SELECT count(*) FROM journals)"
)


@pytest.fixture
def payout(api: TestClient, alice_shop: Tenant, api_runtime: Runtime) -> int:
    """Alice's creator "star" and one pending payout of 50000."""
    api.put("/v1/creators/star", json={"payout_address": ADDRESS}, headers=alice_shop.auth)
    post_earning(api, alice_shop, "e-1", {"creator_id": "star", "amount": "50000", "asset": "USDC"})
    roll_up_now(api_runtime)
    payout_id: int = api.get("/v1/payouts", headers=alice_shop.auth).json()["data"][0]["id"]
    return payout_id


def _status(api: TestClient, tenant: Tenant, payout_id: int) -> str:
    status: str = api.get(f"/v1/payouts/{payout_id}", headers=tenant.auth).json()["status"]
    return status


# --- only the admin key ---------------------------------------------------------------------

OPS_ROUTES = [
    ("POST", "/v1/ops/holds", {"payout_id": 1, "reason": "x"}),
    ("GET", "/v1/ops/holds", None),
    ("GET", "/v1/ops/review", None),
    ("POST", "/v1/ops/holds/1/release", {"resolution": "x"}),
    ("POST", "/v1/ops/holds/1/reject", {"resolution": "x"}),
    ("POST", "/v1/ops/deny-list", {"entries": [{"address": DENIED, "reason": "x"}], "source": "s"}),
    ("GET", "/v1/ops/deny-list", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OPS_ROUTES)
def test_the_new_ops_endpoints_refuse_marketplace_keys_and_anonymous_calls(
    api: TestClient,
    alice_shop: Tenant,
    api_runtime: Runtime,
    payout: int,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    api.post("/v1/ops/holds", json={"payout_id": payout, "reason": "kyc"}, headers=ADMIN)
    before = count(api_runtime, KEPT)

    as_marketplace = api.request(method, path, json=body, headers=alice_shop.auth)
    anonymous = api.request(method, path, json=body)

    assert as_marketplace.status_code == 403
    assert as_marketplace.json()["error"]["code"] == "admin_key_required"
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "missing_api_key"
    assert count(api_runtime, KEPT) == before
    assert count(api_runtime, "SELECT count(*) FROM deny_list") == 0


@pytest.mark.parametrize(("method", "path", "body"), OPS_ROUTES)
def test_the_new_ops_endpoints_are_closed_without_an_admin_key_configured(
    make_runtime: Callable[..., Runtime],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    with TestClient(create_app(make_runtime(admin_api_key=None))) as api:
        response = api.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


# --- holds on a payout or a creator ---------------------------------------------------------


def test_an_operator_holds_a_payout_previews_the_release_then_releases_it(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, payout: int
) -> None:
    placed = api.post(
        "/v1/ops/holds",
        json={"payout_id": payout, "reason": "chargeback dispute"},
        headers=ADMIN,
    )

    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert not {"creator_key", "marketplace_id"} & set(hold)
    assert {k: hold[k] for k in ("creator_id", "payout_id", "amount", "rule", "placed_by")} == {
        "creator_id": "star",
        "payout_id": payout,
        "amount": "50000",
        "rule": "operator",
        "placed_by": "ops-api",
    }
    assert _status(api, alice_shop, payout) == "held"
    before = count(api_runtime, KEPT)

    preview = api.post(
        f"/v1/ops/holds/{hold['id']}/release",
        json={"resolution": "dispute closed", "dry_run": True},
        headers=ADMIN,
    )

    assert preview.status_code == 200, preview.text
    assert (preview.json()["status"], preview.json()["resolution"]) == (
        "released",
        "dispute closed",
    )
    assert count(api_runtime, KEPT) == before  # a dry run keeps nothing
    assert _status(api, alice_shop, payout) == "held"
    assert [h["id"] for h in api.get("/v1/ops/holds", headers=ADMIN).json()["data"]] == [hold["id"]]

    released = api.post(
        f"/v1/ops/holds/{hold['id']}/release", json={"resolution": "dispute closed"}, headers=ADMIN
    )

    assert released.status_code == 200
    assert {k: released.json()[k] for k in ("status", "ended_by", "resolution")} == {
        "status": "released",
        "ended_by": "ops-api",
        "resolution": "dispute closed",
    }
    assert _status(api, alice_shop, payout) == "pending"
    assert api.get("/v1/ops/holds", headers=ADMIN).json()["data"] == []
    assert [
        h["id"] for h in api.get("/v1/ops/holds?status=released", headers=ADMIN).json()["data"]
    ] == [hold["id"]]
    for action in ("release", "reject"):
        again = api.post(
            f"/v1/ops/holds/{hold['id']}/{action}", json={"resolution": "again"}, headers=ADMIN
        )
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "illegal_transition"


def test_a_payout_id_written_with_a_zero_fraction_names_that_payout(
    api: TestClient, payout: int
) -> None:
    """JSON Schema counts 84.0 as the integer 84 (schemathesis sent one); it is read from the
    body's text, never through a float."""
    response = api.post(
        "/v1/ops/holds",
        content=f'{{"payout_id": {payout}.0, "reason": "kyc"}}',
        headers={**ADMIN, "Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["payout_id"] == payout


def test_an_operator_holds_a_creator_by_marketplace_name(
    api: TestClient, alice_shop: Tenant, bob_shop: Tenant, api_runtime: Runtime, payout: int
) -> None:
    api.put("/v1/creators/star", json={"payout_address": ADDRESS}, headers=bob_shop.auth)

    placed = api.post(
        "/v1/ops/holds",
        json={
            "marketplace": alice_shop.name,
            "creator_id": "star",
            "reason": "sanctions check",
            "expires_at": None,
        },
        headers=ADMIN,
    )

    assert placed.status_code == 201, placed.text
    assert (placed.json()["payout_id"], placed.json()["rule"]) == (None, "operator")
    states = count(
        api_runtime,
        "SELECT count(*) FROM creators WHERE external_id = 'star' AND state = 'held'"
        f" AND marketplace_id = {alice_shop.id}",
    )
    assert states == 1
    assert (
        count(api_runtime, "SELECT count(*) FROM creators WHERE state = 'held'") == 1
    )  # not bob's
    # Alice sees it on her creator; releasing it is an operator's business.
    assert [
        h["id"] for h in api.get("/v1/creators/star/holds", headers=alice_shop.auth).json()["data"]
    ] == [placed.json()["id"]]
    assert api.get("/v1/creators/star/holds", headers=bob_shop.auth).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"payout_id": 10**9, "reason": "x"}, 404, "not_found", None),
        (
            {"marketplace": "no-such-shop", "creator_id": "star", "reason": "x"},
            404,
            "not_found",
            None,
        ),
        (
            {"marketplace": "alice-shop", "creator_id": "nobody", "reason": "x"},
            404,
            "not_found",
            None,
        ),
        (
            {"payout_id": 1, "marketplace": "alice-shop", "creator_id": "star", "reason": "x"},
            422,
            "unknown_field",
            "marketplace",
        ),
        ({"reason": "x"}, 422, "missing_field", "marketplace"),
        ({"payout_id": "1", "reason": "x"}, 422, "invalid_payout_id", "payout_id"),
        ({"payout_id": 1.5, "reason": "x"}, 422, "invalid_payout_id", "payout_id"),
        ({"payout_id": True, "reason": "x"}, 422, "invalid_payout_id", "payout_id"),
        ({"payout_id": 0, "reason": "x"}, 422, "invalid_payout_id", "payout_id"),
        ({"payout_id": 2**63, "reason": "x"}, 422, "invalid_payout_id", "payout_id"),
        ({"payout_id": 1, "reason": "   "}, 422, "invalid_reason", "reason"),
        (
            {"payout_id": 1, "reason": "x", "expires_at": "2001-01-01T00:00:00Z"},
            422,
            "invalid_expires_at",
            "expires_at",
        ),
        (
            {"marketplace": "", "creator_id": "star", "reason": "x"},
            422,
            "invalid_marketplace",
            "marketplace",
        ),
    ],
)
def test_a_bad_operator_hold_is_refused_and_nothing_is_kept(
    api: TestClient,
    api_runtime: Runtime,
    payout: int,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    assert payout == 1
    before = count(api_runtime, KEPT)

    response = api.post("/v1/ops/holds", json=body, headers=ADMIN)

    assert response.status_code == status, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (code, field)
    assert count(api_runtime, KEPT) == before


def test_an_unknown_hold_is_404_and_a_decision_says_why(
    api: TestClient, api_runtime: Runtime, payout: int
) -> None:
    hold = api.post(
        "/v1/ops/holds", json={"payout_id": payout, "reason": "kyc"}, headers=ADMIN
    ).json()
    for action in ("release", "reject"):
        missing = api.post(
            f"/v1/ops/holds/999999/{action}", json={"resolution": "x"}, headers=ADMIN
        )
        assert missing.status_code == 404
        for body, code in [
            ({"resolution": ""}, "invalid_resolution"),
            ({"resolution": "ok", "dry_run": "yes"}, "invalid_dry_run"),
            ({"dry_run": True}, "missing_field"),
        ]:
            refused = api.post(f"/v1/ops/holds/{hold['id']}/{action}", json=body, headers=ADMIN)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == code
    assert api.get("/v1/ops/holds", headers=ADMIN).json()["data"][0]["status"] == "active"


# --- the deny list --------------------------------------------------------------------------


def _deny(api: TestClient, *entries: dict[str, Any], **extra: Any) -> Any:
    return api.post(
        "/v1/ops/deny-list",
        json={"entries": list(entries), "source": "sanctions-2026-11.csv", **extra},
        headers=ADMIN,
    )


def test_an_operator_lists_and_unlists_addresses(api: TestClient) -> None:
    listed = _deny(
        api,
        {"address": DENIED, "reason": "sanctions, list 2026-11"},
        {"address": ALSO_DENIED.lower(), "reason": "fraud ring"},
    )

    assert listed.status_code == 200, listed.text
    assert listed.json() == {"changed": 2}
    current = api.get("/v1/ops/deny-list", headers=ADMIN).json()["data"]
    assert [(e["address"], e["reason"], e["source"], e["imported_by"]) for e in current] == [
        (ALSO_DENIED, "fraud ring", "sanctions-2026-11.csv", "ops-api"),
        (DENIED, "sanctions, list 2026-11", "sanctions-2026-11.csv", "ops-api"),
    ]
    assert _deny(api, {"address": DENIED, "reason": "again"}).json() == {"changed": 0}

    unlisted = _deny(api, {"address": DENIED, "reason": "cleared"}, listed=False)

    assert unlisted.json() == {"changed": 1}
    assert [e["address"] for e in api.get("/v1/ops/deny-list", headers=ADMIN).json()["data"]] == [
        ALSO_DENIED
    ]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (
            {"entries": [{"address": DENIED, "reason": "x"}, {"address": "0xnope", "reason": "x"}]},
            "invalid_address",
            "entries[1].address",
        ),
        (
            {"entries": [{"address": DENIED.replace("F", "f", 1), "reason": "x"}]},
            "invalid_checksum",
            "entries[0].address",
        ),
        (
            {"entries": [{"address": "0x" + "0" * 36 + "ffff", "reason": "x"}]},
            "invalid_address",
            "entries[0].address",
        ),
        ({"entries": [{"address": DENIED, "reason": " "}]}, "invalid_reason", "entries[0].reason"),
        ({"entries": [{"address": DENIED}]}, "missing_field", "entries[0].reason"),
        ({"entries": []}, "empty_batch", "entries"),
        (
            {"entries": [{"address": DENIED, "reason": "x"}], "source": " "},
            "invalid_source",
            "source",
        ),
        (
            {"entries": [{"address": DENIED, "reason": "x"}], "listed": "no"},
            "invalid_listed",
            "listed",
        ),
    ],
)
def test_a_bad_deny_list_is_refused_whole(
    api: TestClient, api_runtime: Runtime, body: dict[str, Any], code: str, field: str
) -> None:
    response = api.post("/v1/ops/deny-list", json={"source": "feed", **body}, headers=ADMIN)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert count(api_runtime, "SELECT count(*) FROM deny_list") == 0


def test_ten_thousand_addresses_are_taken_and_one_more_is_refused(
    api: TestClient, api_runtime: Runtime
) -> None:
    entries = [{"address": f"0x{i + 2**20:040x}", "reason": "bulk"} for i in range(10_001)]

    too_many = _deny(api, *entries)
    taken = _deny(api, *entries[:10_000])

    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "batch_too_large"
    assert taken.json() == {"changed": 10_000}
    assert count(api_runtime, "SELECT count(*) FROM deny_list") == 10_000


# --- the review queue, on a real chain ------------------------------------------------------


def _limited(make_runtime: Callable[..., Runtime], **asset: Any) -> Runtime:
    base = make_runtime().settings.assets[0].model_dump()
    return make_runtime(assets=[{**base, **asset}], admin_api_key=ADMIN_KEY)


def _payouts(api: TestClient, shop: Tenant) -> dict[str, dict[str, Any]]:
    return {p["creator_id"]: p for p in api.get("/v1/payouts", headers=shop.auth).json()["data"]}


def _run(api: TestClient) -> dict[str, Any]:
    run = api.post("/v1/ops/settlement-runs", json={"submit": False}, headers=ADMIN)
    assert run.status_code == 201, run.text
    summary: dict[str, Any] = run.json()
    return summary


def test_what_a_limit_held_is_reviewed_approved_or_rejected_over_http(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = _limited(make_runtime, outflow_per_hour=1)  # every payout trips the ceiling
    shop = make_tenant(rt, MARKETPLACE)
    seed(rt, creators=2, per_creator=1)
    roll_up_now(rt)

    with TestClient(create_app(rt)) as api:
        _run(api)
        queue = api.get("/v1/ops/review", headers=ADMIN).json()
        assert len(queue["data"]) == 2
        assert {h["rule"] for h in queue["data"]} == {"outflow:asset:hour:amount"}
        assert {h["status"] for h in queue["data"]} == {"active"}
        assert all(h["figures"]["ceiling"] == "1" for h in queue["data"])
        assert {p["status"] for p in _payouts(api, shop).values()} == {"held"}
        # The marketplace sees what held its creator's payout, and may not release it.
        approve, reject = sorted(queue["data"], key=lambda h: h["creator_id"])
        seen = api.get(f"/v1/creators/{approve['creator_id']}/holds", headers=shop.auth).json()
        assert [h["id"] for h in seen["data"]] == [approve["id"]]
        refused = api.post(
            f"/v1/holds/{approve['id']}/release", json={"resolution": "mine"}, headers=shop.auth
        )
        assert refused.status_code == 404
        before = count(rt, KEPT)

        preview = api.post(
            f"/v1/ops/holds/{reject['id']}/reject",
            json={"resolution": "looks like fraud", "dry_run": True},
            headers=ADMIN,
        )

        assert preview.status_code == 200, preview.text
        assert preview.json()["status"] == "rejected"
        assert count(rt, KEPT) == before  # no hold ended or placed, no journal, no move
        assert len(api.get("/v1/ops/review", headers=ADMIN).json()["data"]) == 2

        rejected = api.post(
            f"/v1/ops/holds/{reject['id']}/reject",
            json={"resolution": "looks like fraud"},
            headers=ADMIN,
        )
        approved = api.post(
            f"/v1/ops/holds/{approve['id']}/release",
            json={"resolution": "known seller"},
            headers=ADMIN,
        )

        assert (rejected.status_code, approved.status_code) == (200, 200)
        assert (rejected.json()["ended_by"], approved.json()["status"]) == ("ops-api", "released")
        assert api.get("/v1/ops/review", headers=ADMIN).json()["data"] == []
        payouts = _payouts(api, shop)
        assert payouts[reject["creator_id"]]["status"] == "cancelled"
        assert payouts[approve["creator_id"]]["status"] == "pending"
        # The rejected creator is held until an operator releases them.
        [held] = api.get("/v1/ops/holds", headers=ADMIN).json()["data"]
        assert (held["rule"], held["creator_id"], held["payout_id"]) == (
            "review_rejected",
            reject["creator_id"],
            None,
        )
        # Approved, the payout is not held again by the rule: the next run seals it.
        sealed = _run(api)["assets"]["USDC"]["sealed"]
        assert [b["payouts"] for b in sealed] == [1]
        assert _payouts(api, shop)[approve["creator_id"]]["status"] == "batched"
        # A payout in a batch can no longer be held.
        late = api.post(
            "/v1/ops/holds",
            json={"payout_id": approve["payout_id"], "reason": "too late"},
            headers=ADMIN,
        )
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "illegal_transition"


def test_a_payout_to_a_deny_listed_address_waits_in_review(
    make_runtime: Callable[..., Runtime], redis_url: str
) -> None:
    rt = make_runtime(admin_api_key=ADMIN_KEY, redis_url=redis_url)
    shop = make_tenant(rt, MARKETPLACE)
    recipients = seed(rt, creators=3)
    roll_up_now(rt)
    denied = sorted(recipients)[1]

    with TestClient(create_app(rt)) as api:
        imported = _deny(api, {"address": recipients[denied], "reason": "sanctions"})
        assert imported.json() == {"changed": 1}

        _run(api)

        [queued] = api.get("/v1/ops/review", headers=ADMIN).json()["data"]
        assert (queued["rule"], queued["creator_id"]) == ("deny_list", denied)
        assert queued["figures"]["source"] == "sanctions-2026-11.csv"
        statuses = {c: p["status"] for c, p in _payouts(api, shop).items()}
        assert statuses == {c: "held" if c == denied else "batched" for c in recipients}
