"""Bounds on every input, one clear error each (issue 11).

Each of these was found by fuzzing the API: a 500, a value stored garbled or counted twice, or
a request that named something it should not. Every refusal is a 4xx in the one envelope and
leaves the ledger as it was.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payouts.exception_queue import record_exception
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, Tenant, count, earning, ledger_rows, post_earning
from tests.chainkit import roll_up_now

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
USDC_CEILING = 10**12  # the default max_earning of a 6-decimal asset: 10**6 whole units


def _single(api: TestClient, tenant: Tenant, item: dict[str, Any], key: str = "k-1") -> Any:
    return api.post(
        "/v1/earnings",
        content=json.dumps(item).encode(),
        headers={**tenant.auth, "Idempotency-Key": key, "Content-Type": "application/json"},
    )


def _batch(api: TestClient, tenant: Tenant, *items: dict[str, Any]) -> Any:
    return api.post("/v1/earnings/batch", json={"earnings": list(items)}, headers=tenant.auth)


def _refused_on_both(
    api: TestClient,
    tenant: Tenant,
    rt: Runtime,
    changes: dict[str, Any],
    code: str,
    name: str,
) -> None:
    """The single and the batch endpoint refuse the same item with the same code and field."""
    before = ledger_rows(rt)
    single = _single(api, tenant, earning(**changes))
    assert single.status_code == 422, single.text
    assert (single.json()["error"]["code"], single.json()["error"]["field"]) == (code, name)

    batch = _batch(api, tenant, {**earning(**changes), "idempotency_key": "k-1"})
    assert batch.status_code == 422, batch.text
    error = batch.json()["error"]
    assert (error["code"], error["field"]) == (code, f"earnings[0].{name}")
    assert [(e["index"], e["code"]) for e in error["errors"]] == [(0, code)]
    assert ledger_rows(rt) == before


# --- 1. occurred_at: a sane range with a real UTC offset -------------------------------------


@pytest.mark.parametrize(
    "occurred_at",
    [
        pytest.param("0001-01-01T00:00:00+14:00", id="year-1-east"),
        pytest.param("9999-12-31T23:59:59-14:00", id="year-9999-west"),
        pytest.param("2026-01-01T00:00:00+23:05", id="offset-past-14h"),
        pytest.param("2026-01-01T00:00:00-12:01", id="offset-past-minus-12h"),
        pytest.param("2026-01-01T00:00:00+14:01", id="offset-past-plus-14h"),
        pytest.param("1999-12-31T23:59:59Z", id="before-2000"),
        pytest.param("2000-01-01T00:30:00+01:00", id="before-2000-in-utc"),
        pytest.param("2026-02-30T00:00:00Z", id="no-such-day"),
        pytest.param("2026-01-01T00:00:00.1234567Z", id="past-microseconds"),
        pytest.param("2026-01-01 00:00:00Z", id="space-not-T"),
        pytest.param("2026-01-01T00:00Z", id="no-seconds"),
        pytest.param("2026-01-01T00:00:00+0100", id="offset-without-colon"),
        pytest.param("2026-01-01T00:00:00+05:30:15", id="offset-with-seconds"),
        pytest.param("2026-W01-1T00:00:00Z", id="week-date"),
        pytest.param("1767225600", id="unix-seconds-string"),
    ],
)
def test_an_occurred_at_out_of_range_or_with_no_real_offset_is_refused_on_both_endpoints(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, occurred_at: str
) -> None:
    _refused_on_both(
        api,
        alice_shop,
        api_runtime,
        {"occurred_at": occurred_at},
        "invalid_occurred_at",
        "occurred_at",
    )


def test_an_occurred_at_more_than_a_day_ahead_is_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=1, minutes=5)).isoformat()
    _refused_on_both(
        api, alice_shop, api_runtime, {"occurred_at": ahead}, "invalid_occurred_at", "occurred_at"
    )


def test_an_occurred_at_as_a_json_number_is_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    _refused_on_both(
        api,
        alice_shop,
        api_runtime,
        {"occurred_at": 1767225600},
        "invalid_occurred_at",
        "occurred_at",
    )


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2000-01-01T00:00:00Z",
        "2000-01-01T00:00:00-12:00",
        "2026-06-30T23:59:59.5+14:00",
        "2026-06-30T12:00:00.123456+05:45",
        "2024-02-29T12:00:00-09:30",
        "2026-06-30T12:00:00-00:00",
    ],
)
def test_an_occurred_at_in_range_is_stored_and_read_back_as_the_same_instant(
    api: TestClient, alice_shop: Tenant, occurred_at: str
) -> None:
    created = _single(api, alice_shop, earning(occurred_at=occurred_at))
    assert created.status_code == 201, created.text
    batch = _batch(api, alice_shop, {**earning(occurred_at=occurred_at), "idempotency_key": "b"})
    assert batch.status_code == 200, batch.text

    for earning_id in (created.json()["id"], batch.json()["results"][0]["id"]):
        fetched = api.get(f"/v1/earnings/{earning_id}", headers=alice_shop.auth)
        assert fetched.status_code == 200, fetched.text
        assert datetime.fromisoformat(fetched.json()["occurred_at"]) == datetime.fromisoformat(
            occurred_at
        )


def test_an_occurred_at_up_to_a_day_ahead_is_accepted(api: TestClient, alice_shop: Tenant) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    assert _single(api, alice_shop, earning(occurred_at=soon)).status_code == 201


# --- 2. idempotency keys: visible ASCII only, one key one meaning ----------------------------


def _raw(tenant: Tenant, key: bytes) -> list[tuple[bytes, bytes]]:
    """Headers with the key's bytes as they are (a client sending UTF-8 sends these)."""
    return [(k.encode(), v.encode()) for k, v in tenant.auth.items()] + [(b"Idempotency-Key", key)]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("ключ-é".encode(), id="utf-8"),
        pytest.param("café".encode("latin-1"), id="latin-1"),
        pytest.param(b"a b", id="space"),
        pytest.param(b"a\tb", id="tab"),
        pytest.param(b"a\x7fb", id="delete"),
    ],
)
def test_an_idempotency_key_header_that_is_not_visible_ascii_is_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, key: bytes
) -> None:
    before = ledger_rows(api_runtime)

    response = api.post("/v1/earnings", json=earning(), headers=_raw(alice_shop, key))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_idempotency_key", "Idempotency-Key")
    assert ledger_rows(api_runtime) == before


def test_two_idempotency_key_headers_are_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    response = api.post(
        "/v1/earnings",
        json=earning(),
        headers=[*alice_shop.auth.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert count(api_runtime, "SELECT count(*) FROM credits") == 0


@pytest.mark.parametrize("key", ["ключ-é", "a b", "a\tb", "a\x7fb", "tab\t", "\u00a0nbsp"])
def test_a_batch_key_that_is_not_visible_ascii_is_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, key: str
) -> None:
    before = ledger_rows(api_runtime)

    response = _batch(api, alice_shop, {**earning(), "idempotency_key": key})

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (
        "invalid_idempotency_key",
        "earnings[0].idempotency_key",
    )
    assert ledger_rows(api_runtime) == before


def test_a_key_sent_in_the_header_and_in_a_batch_never_makes_two_credits(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    key = "ключ-é"
    api.post("/v1/earnings", json=earning(), headers=_raw(alice_shop, key.encode()))
    _batch(api, alice_shop, {**earning(), "idempotency_key": key})

    assert count(api_runtime, "SELECT count(*) FROM credits") == 0


def test_an_oversized_batch_key_is_refused(api: TestClient, alice_shop: Tenant) -> None:
    response = _batch(api, alice_shop, {**earning(), "idempotency_key": "k" * 256})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


# --- 3. the same item twice in one batch: one credit, answered once ---------------------------


def test_the_same_item_twice_in_a_batch_is_one_credit_and_the_second_is_a_replay(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    item = {**earning(amount="700"), "idempotency_key": "twice"}
    other = {**earning(amount="5"), "idempotency_key": "once"}

    response = _batch(api, alice_shop, item, other, item)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["created"], body["replayed"]) == (2, 1)
    results = body["results"]
    assert [r["result"] for r in results] == ["created", "created", "replayed"]
    assert results[0]["id"] == results[2]["id"]
    assert count(api_runtime, "SELECT count(*) FROM credits") == 2
    assert count(api_runtime, "SELECT sum(amount) FROM credits") == 705

    again = _batch(api, alice_shop, item, item).json()
    assert (again["created"], again["replayed"]) == (0, 2)


def test_the_same_key_with_two_bodies_in_one_batch_is_a_conflict_that_records_nothing(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    before = ledger_rows(api_runtime)

    response = _batch(
        api,
        alice_shop,
        {**earning(amount="1"), "idempotency_key": "same"},
        {**earning(amount="2"), "idempotency_key": "same"},
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert ledger_rows(api_runtime) == before


# --- 4. amounts: canonical, above zero, at most the asset's ceiling ---------------------------


@pytest.mark.parametrize(
    "amount", ["007", "0", "00", "+1", " 1", "1 ", "1.0", "1e3", "-1", "\u0661", "", "0x10"]
)
def test_an_amount_that_is_not_a_canonical_positive_integer_is_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, amount: str
) -> None:
    _refused_on_both(api, alice_shop, api_runtime, {"amount": amount}, "invalid_amount", "amount")


@pytest.mark.parametrize(
    "amount",
    [USDC_CEILING + 1, 2**96 - 1, 2**96, 2**256 - 1],
    ids=["ceiling+1", "2^96-1", "2^96", "2^256-1"],
)
def test_an_amount_above_the_assets_ceiling_is_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, amount: int
) -> None:
    _refused_on_both(
        api, alice_shop, api_runtime, {"amount": str(amount)}, "amount_too_large", "amount"
    )


def test_an_amount_at_the_ceiling_is_accepted(api: TestClient, alice_shop: Tenant) -> None:
    assert _single(api, alice_shop, earning(amount=str(USDC_CEILING))).status_code == 201


# --- 5. only the assets the operator configured -----------------------------------------------


def test_an_earning_in_the_native_asset_nobody_configured_is_refused(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    assert "ETH" in api_runtime.asset_ids()  # the row the runtime adds for gas accounting
    _refused_on_both(api, alice_shop, api_runtime, {"asset": "ETH"}, "unknown_asset", "asset")


# --- 6. no zero or precompile payout addresses ------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "0x0000000000000000000000000000000000000000",
        "0x0000000000000000000000000000000000000001",
        "0x0000000000000000000000000000000000000100",
        "0x000000000000000000000000000000000000ffff",
        "0x000000000000000000000000000000000000FFfF",
    ],
)
def test_the_zero_address_and_precompiles_are_refused_as_payout_addresses(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime, address: str
) -> None:
    before = ledger_rows(api_runtime)

    response = api.put(
        "/v1/creators/creator-1", json={"payout_address": address}, headers=alice_shop.auth
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_address", "payout_address")
    assert ledger_rows(api_runtime) == before


def test_the_first_address_past_the_precompiles_is_accepted(
    api: TestClient, alice_shop: Tenant
) -> None:
    response = api.put(
        "/v1/creators/creator-1",
        json={"payout_address": "0x0000000000000000000000000000000000010000"},
        headers=alice_shop.auth,
    )
    assert response.status_code == 201, response.text


# --- 7. ids in paths: only the canonical decimal names a row ----------------------------------

NOT_CANONICAL = ["1.0", "+1", "%201", "1%20", "01", "1e0", "%2B1", "1_0"]


@pytest.fixture
def row_one(api: TestClient, alice_shop: Tenant, api_runtime: Runtime) -> None:
    """Earning 1, payout 1 and exception 1 exist, so a non-canonical "1" would find them."""
    api.put("/v1/creators/creator-1", json={"payout_address": ADDRESS}, headers=alice_shop.auth)
    assert post_earning(api, alice_shop, "e-1", earning(amount="50000")).json()["id"] == 1
    roll_up_now(api_runtime)
    with api_runtime.uow() as session:
        record_exception(session, "transfer_failed", "one", {"reason": "test"})
        session.commit()
    assert api.get("/v1/earnings/1", headers=alice_shop.auth).status_code == 200
    assert api.get("/v1/payouts/1", headers=alice_shop.auth).status_code == 200
    assert api.get("/v1/ops/exceptions/1", headers=ADMIN).status_code == 200


@pytest.mark.usefixtures("row_one")
@pytest.mark.parametrize("spelling", NOT_CANONICAL)
@pytest.mark.parametrize(
    ("method", "template", "admin"),
    [
        ("GET", "/v1/earnings/{}", False),
        ("GET", "/v1/payouts/{}", False),
        ("GET", "/v1/ops/exceptions/{}", True),
        ("POST", "/v1/ops/exceptions/{}/resolve", True),
    ],
)
def test_an_id_that_is_not_canonical_names_nothing(
    api: TestClient,
    alice_shop: Tenant,
    api_runtime: Runtime,
    method: str,
    template: str,
    admin: bool,
    spelling: str,
) -> None:
    response = api.request(
        method,
        template.format(spelling),
        json={"resolution": "by hand"} if method == "POST" else None,
        headers=ADMIN if admin else alice_shop.auth,
    )

    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert count(api_runtime, "SELECT count(*) FROM exceptions WHERE resolved_at IS NULL") == 1


# --- the published contract says the same ---------------------------------------------------


def test_the_contract_states_every_bound_the_server_enforces(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name in ("EarningIn", "BatchEarningIn"):
        fields = schemas[name]["properties"]
        assert fields["asset"]["enum"] == ["USDC"]
        assert fields["amount"]["pattern"] == "^(?:[1-9][0-9]{0,11}|1000000000000)$"
        occurred = re.compile(fields["occurred_at"]["anyOf"][0]["pattern"])
        assert occurred.fullmatch("2020-02-29T12:00:00.5+05:45")
        assert occurred.fullmatch(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        for refused in (
            "0001-01-01T00:00:00+14:00",
            "2020-01-01T00:00:00+23:05",
            "2021-02-29T00:00:00Z",
        ):
            assert not occurred.fullmatch(refused)
    key = schemas["BatchEarningIn"]["properties"]["idempotency_key"]
    assert key["pattern"] == "^[!-~]{1,255}$"
    (header,) = doc["paths"]["/v1/earnings"]["post"]["parameters"]
    assert (header["name"], header["in"], header["required"]) == ("Idempotency-Key", "header", True)
    assert header["schema"]["pattern"] == "^[!-~]{1,255}$"
    address = re.compile(schemas["PayoutAddressIn"]["properties"]["payout_address"]["pattern"])
    assert address.fullmatch(ADDRESS.lower())
    assert not address.fullmatch("0x000000000000000000000000000000000000ffff")
    for path, name in [
        ("/v1/earnings/{earning_id}", "earning_id"),
        ("/v1/payouts/{payout_id}", "payout_id"),
        ("/v1/ops/exceptions/{exception_id}", "exception_id"),
    ]:
        (parameter,) = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == name]
        assert parameter["schema"]["pattern"] == "^[1-9][0-9]{0,18}$"
    for path in ("/v1/payouts", "/v1/ops/exceptions"):
        (cursor,) = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "cursor"]
        assert re.fullmatch(cursor["schema"]["pattern"], "djE6MTA")  # the cursor after id 10


def test_the_batch_path_read_with_get_is_the_wrong_method_not_an_earning_called_batch(
    api: TestClient, alice_shop: Tenant
) -> None:
    response = api.get("/v1/earnings/batch", headers=alice_shop.auth)

    assert response.status_code == 405, response.text
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- what the document does not declare is refused, not ignored ------------------------------


@pytest.mark.parametrize(
    ("path", "admin"),
    [
        ("/v1/payouts?cursr=djE6MTA", False),
        ("/v1/payouts?limit=5&extra=1", False),
        ("/v1/earnings/1?expand=payout", False),
        ("/v1/ops/exceptions?state=open", True),
        ("/healthz?verbose=1", False),
        ("/v1/creators/star/holds?state=active", False),
        ("/v1/ops/holds?creator_id=star", True),
        ("/v1/ops/review?status=active", True),
        ("/v1/ops/deny-list?limit=5", True),
    ],
)
def test_an_undeclared_query_parameter_is_refused(
    api: TestClient, alice_shop: Tenant, path: str, admin: bool
) -> None:
    response = api.get(path, headers=ADMIN if admin else alice_shop.auth)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "unknown_parameter"


@pytest.mark.parametrize(
    "cursor", ["djE6MTA=", "djE6MTB", "djE6MT!A", "djE6MDEw", "djE6KzEw", "djE6IDEw", "dj E6MTA"]
)
def test_a_cursor_spelt_otherwise_than_the_api_wrote_it_is_refused(
    api: TestClient, alice_shop: Tenant, cursor: str
) -> None:
    response = api.get(f"/v1/payouts?cursor={cursor}", headers=alice_shop.auth)

    assert response.status_code == 422, response.text
    assert (response.json()["error"]["code"], response.json()["error"]["field"]) == (
        "invalid_cursor",
        "cursor",
    )
