"""A single earning's first response is built from the insert's own row, not read back: it must
say exactly what a replay and GET read from the ledger later, down to the stored forms."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.apikit import Tenant, earning, post_earning

# What the ledger stores differently from what was sent: an offset it renders in the
# session's time zone, metadata it reorders (jsonb) with a number whose digits it keeps.
STORED_DIFFERENTLY: dict[str, Any] = {
    "occurred_at": "2026-01-31T12:00:00+05:30",
    "reference": "order-77",
    "metadata": {"zz": [1, 2.50, "x"], "a": {"nested": True}, "": None},
}


def test_the_first_response_is_what_the_ledger_reads_back(
    api: TestClient, alice_shop: Tenant
) -> None:
    first = post_earning(api, alice_shop, "stored-1", earning(**STORED_DIFFERENTLY))
    again = post_earning(api, alice_shop, "stored-1", earning(**STORED_DIFFERENTLY))
    fetched = api.get(f"/v1/earnings/{first.json()['id']}", headers=alice_shop.auth)

    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json() == again.json()
    shown = {k: v for k, v in fetched.json().items() if k != "payout"}
    assert shown == first.json()
    assert first.json()["metadata"] == STORED_DIFFERENTLY["metadata"]


def test_an_earning_without_occurred_at_is_stamped_with_the_time_it_was_recorded(
    api: TestClient, alice_shop: Tenant
) -> None:
    first = post_earning(api, alice_shop, "stored-2").json()
    fetched = api.get(f"/v1/earnings/{first['id']}", headers=alice_shop.auth).json()

    assert first["occurred_at"] == first["created_at"] == fetched["occurred_at"]
    assert first["metadata"] is None
    assert first["reference"] is None
