"""Operators over HTTP: a manual settlement run on a real chain and the exception queue."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from payouts.api.app import create_app
from payouts.exception_queue import record_exception
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, make_tenant
from tests.chainkit import MARKETPLACE, mine, roll_up_now, seed

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def open_exception(rt: Runtime, key: str) -> None:
    with rt.uow() as session:
        record_exception(session, "transfer_failed", key, {"recipient": "0xabc", "reason": "test"})
        session.commit()


def test_an_operator_lists_shows_and_resolves_exceptions_once(
    api: TestClient, api_runtime: Runtime
) -> None:
    open_exception(api_runtime, "first")
    open_exception(api_runtime, "second")

    listed = api.get("/v1/ops/exceptions", headers=ADMIN).json()
    assert [e["status"] for e in listed["data"]] == ["open", "open"]
    target = listed["data"][-1]["id"]
    assert api.get(f"/v1/ops/exceptions/{target}", headers=ADMIN).json()["detail"] == {
        "recipient": "0xabc",
        "reason": "test",
    }

    resolved = api.post(
        f"/v1/ops/exceptions/{target}/resolve",
        json={"resolution": "paid by hand, tx 0x01"},
        headers=ADMIN,
    )
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    again = api.post(
        f"/v1/ops/exceptions/{target}/resolve", json={"resolution": "again"}, headers=ADMIN
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "illegal_transition"
    assert api.get(f"/v1/ops/exceptions/{target}", headers=ADMIN).json()["resolution"] == (
        "paid by hand, tx 0x01"
    )
    assert [e["id"] for e in api.get("/v1/ops/exceptions", headers=ADMIN).json()["data"]] == [
        listed["data"][0]["id"]
    ]
    assert len(api.get("/v1/ops/exceptions?status=all", headers=ADMIN).json()["data"]) == 2
    missing = api.post("/v1/ops/exceptions/999/resolve", json={"resolution": "x"}, headers=ADMIN)
    assert missing.status_code == 404


def test_ops_are_closed_when_no_admin_key_is_configured(
    make_runtime: Callable[..., Runtime],
) -> None:
    with TestClient(create_app(make_runtime(admin_api_key=None))) as api:
        response = api.get("/v1/ops/exceptions", headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


def test_a_manual_settlement_run_plans_then_pays_and_the_payout_shows_its_block(
    make_runtime: Callable[..., Runtime], redis_url: str
) -> None:
    rt = make_runtime(admin_api_key=ADMIN_KEY, redis_url=redis_url)
    shop = make_tenant(rt, MARKETPLACE)  # seed() records its earnings under this name
    stranger = make_tenant(rt, "another-shop")
    seed(rt, creators=5)
    roll_up_now(rt)

    with TestClient(create_app(rt)) as api:
        plan = api.post("/v1/ops/settlement-runs", json={"dry_run": True}, headers=ADMIN)
        assert plan.status_code == 200
        assert plan.json()["assets"]["USDC"]["sealed"][0]["payouts"] == 5
        assert plan.json()["submissions"] == []
        assert {p["status"] for p in api.get("/v1/payouts", headers=shop.auth).json()["data"]} == {
            "pending"
        }

        run = api.post("/v1/ops/settlement-runs", json={}, headers=ADMIN)
        assert run.status_code == 201
        (sent,) = run.json()["submissions"]
        assert sent["outcome"] == "broadcast"

        mine(rt, 3)
        reconciler.reconcile(rt)

        page = api.get("/v1/payouts", headers=shop.auth).json()["data"]
        assert {p["status"] for p in page} == {"finalized"}
        assert {p["tx_hash"] for p in page} == {sent["tx_hash"]}
        assert all(p["confirmations"] >= 2 for p in page)
        history = api.get(f"/v1/payouts/{page[0]['id']}", headers=shop.auth).json()
        assert [t["to"] for t in history["transitions"]] == [
            "batched",
            "submitted",
            "confirmed",
            "finalized",
        ]
        assert api.get("/v1/payouts", headers=stranger.auth).json()["data"] == []
