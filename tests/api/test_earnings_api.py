"""POST /v1/earnings and /v1/earnings/batch: recorded once, replayed exactly, refused whole."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from payouts.runtime import Runtime
from tests.apikit import Tenant, count, earning, ledger_rows, post_earning


def test_an_earning_is_recorded_once_and_reported_back(api: TestClient, alice_shop: Tenant) -> None:
    response = post_earning(
        api,
        alice_shop,
        "order-1",
        earning(amount="1250", reference="order-1", metadata={"sku": "clip-9"}),
    )

    assert response.status_code == 201
    assert response.headers["Idempotent-Replayed"] == "false"
    body = response.json()
    assert body["amount"] == "1250"
    assert body["status"] == "accrued"
    assert body["creator_id"] == "creator-1"
    assert body["metadata"] == {"sku": "clip-9"}
    fetched = api.get(f"/v1/earnings/{body['id']}", headers=alice_shop.auth).json()
    assert fetched["status"] == "accrued"
    assert fetched["payout"] is None


def test_a_replay_returns_the_first_response_and_says_so(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    first = post_earning(api, alice_shop, "order-2")
    again = post_earning(api, alice_shop, "order-2")

    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(api_runtime, "SELECT count(*) FROM credits") == 1


def test_the_same_key_with_another_body_is_a_conflict_that_changes_nothing(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    post_earning(api, alice_shop, "order-3", earning(amount="100"))
    before = ledger_rows(api_runtime)

    response = post_earning(api, alice_shop, "order-3", earning(amount="999"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert response.json()["error"]["field"] == "idempotency_key"
    assert ledger_rows(api_runtime) == before


def test_keys_are_per_marketplace(api: TestClient, alice_shop: Tenant, bob_shop: Tenant) -> None:
    a = post_earning(api, alice_shop, "same-key", earning(amount="100"))
    b = post_earning(api, bob_shop, "same-key", earning(amount="200"))

    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


def test_a_key_still_in_flight_is_refused_not_waited_for(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    # The first request's transaction holds the key's lock until it commits; hold it here the
    # way that request does, from another connection.
    url = make_url(api_runtime.database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as first_request:
        first_request.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))", ("order-4", alice_shop.id)
        )
        response = post_earning(api, alice_shop, "order-4")

        assert response.status_code == 409
        assert response.json()["error"]["code"] == "idempotency_key_in_flight"
        assert response.headers["Retry-After"] == "1"
        assert count(api_runtime, "SELECT count(*) FROM credits") == 0
    # Once the first request is done, the retry goes through.
    assert post_earning(api, alice_shop, "order-4").status_code == 201


def test_a_batch_is_recorded_in_one_request_with_a_result_per_item(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    post_earning(api, alice_shop, "k-0", earning(creator="c-0", amount="10"))
    items = [
        {**earning(creator=f"c-{i % 7}", amount=str(10 + i)), "idempotency_key": f"k-{i}"}
        for i in range(2000)
    ]
    items[0]["amount"] = "10"  # the one recorded above, sent again unchanged

    response = api.post("/v1/earnings/batch", json={"earnings": items}, headers=alice_shop.auth)

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["replayed"]) == (1999, 1)
    assert body["results"][0]["result"] == "replayed"
    assert [r["index"] for r in body["results"]] == list(range(2000))
    assert {r["result"] for r in body["results"][1:]} == {"created"}
    assert count(api_runtime, "SELECT count(*) FROM credits") == 2000
    assert count(api_runtime, "SELECT sum(amount) FROM credits") == sum(
        int(i["amount"]) for i in items
    )


def test_a_batch_with_bad_items_lists_every_one_and_records_none(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    items = [
        {**earning(creator=f"c-{i}", amount="100"), "idempotency_key": f"k-{i}"} for i in range(10)
    ]
    items[2]["amount"] = "1.5"
    items[5]["asset"] = "DOGE"
    items[7]["amount"] = 100  # a JSON number, not a string of base units
    del items[8]["idempotency_key"]
    before = ledger_rows(api_runtime)

    response = api.post("/v1/earnings/batch", json={"earnings": items}, headers=alice_shop.auth)

    assert response.status_code == 422
    error = response.json()["error"]
    found = {(e["index"], e["field"], e["code"]) for e in error["errors"]}
    assert found == {
        (2, "earnings[2].amount", "invalid_amount"),
        (5, "earnings[5].asset", "unknown_asset"),
        (7, "earnings[7].amount", "invalid_amount"),
        (8, "earnings[8].idempotency_key", "missing_field"),
    }
    assert error["code"] == "invalid_amount"  # the first problem, for clients that show one
    assert ledger_rows(api_runtime) == before


def test_a_batch_reusing_a_key_with_another_body_records_nothing(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    post_earning(api, alice_shop, "k-1", earning(amount="100"))
    before = ledger_rows(api_runtime)
    items = [
        {**earning(amount="100"), "idempotency_key": "k-new"},
        {**earning(amount="555"), "idempotency_key": "k-1"},
    ]

    response = api.post("/v1/earnings/batch", json={"earnings": items}, headers=alice_shop.auth)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert ledger_rows(api_runtime) == before


def test_a_batch_of_ten_thousand_is_accepted_and_one_more_is_not(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    items = [
        {**earning(creator=f"c-{i % 500}", amount="1"), "idempotency_key": f"k-{i}"}
        for i in range(10_001)
    ]

    too_many = api.post("/v1/earnings/batch", json={"earnings": items}, headers=alice_shop.auth)
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "batch_too_large"

    accepted = api.post(
        "/v1/earnings/batch", json={"earnings": items[:10_000]}, headers=alice_shop.auth
    )
    assert accepted.status_code == 200
    assert accepted.json()["created"] == 10_000
    assert count(api_runtime, "SELECT count(*) FROM credits") == 10_000
