"""Bad input gets a clear 4xx with a stable code, and nothing already accepted changes.

Each row: what a marketplace sent, the status and code it gets back. After every row the
ledger holds exactly what it held before (one earning recorded up front).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payouts.runtime import Runtime
from tests.apikit import Tenant, earning, ledger_rows, post_earning

GOOD = earning()
NON_CHECKSUMMED = "0x70997970c51812dc3a010c7d01b50e0d17dc79C8"


def body(**changes: Any) -> bytes:
    values = {**GOOD, **changes}
    return json.dumps({k: v for k, v in values.items() if v is not ...}).encode()


def batch(*items: dict[str, Any]) -> bytes:
    return json.dumps({"earnings": list(items)}).encode()


JSON = {"Content-Type": "application/json"}
KEY = {"Idempotency-Key": "bad-input"}

# (id, method, path, extra headers, raw body, status, code, field)
CASES: list[tuple[str, str, str, dict[str, str], bytes | None, int, str, str | None]] = [
    ("float", "POST", "/v1/earnings", KEY, body(amount=12.5), 422, "invalid_amount", "amount"),
    (
        "decimal string",
        "POST",
        "/v1/earnings",
        KEY,
        body(amount="12.5"),
        422,
        "invalid_amount",
        "amount",
    ),
    ("exponent", "POST", "/v1/earnings", KEY, body(amount="1e6"), 422, "invalid_amount", "amount"),
    ("negative", "POST", "/v1/earnings", KEY, body(amount="-5"), 422, "invalid_amount", "amount"),
    ("zero", "POST", "/v1/earnings", KEY, body(amount="0"), 422, "invalid_amount", "amount"),
    (
        "past 2**256",
        "POST",
        "/v1/earnings",
        KEY,
        body(amount=str(2**256)),
        422,
        "invalid_amount",
        "amount",
    ),
    (
        "json integer past 2**256",
        "POST",
        "/v1/earnings",
        KEY,
        body(amount=2**300),
        422,
        "invalid_amount",
        "amount",
    ),
    (
        "json integer",
        "POST",
        "/v1/earnings",
        KEY,
        body(amount=1250),
        422,
        "invalid_amount",
        "amount",
    ),
    (
        "not numeric",
        "POST",
        "/v1/earnings",
        KEY,
        body(amount="twelve"),
        422,
        "invalid_amount",
        "amount",
    ),
    ("padded", "POST", "/v1/earnings", KEY, body(amount=" 12"), 422, "invalid_amount", "amount"),
    ("boolean", "POST", "/v1/earnings", KEY, body(amount=True), 422, "invalid_amount", "amount"),
    (
        "missing amount",
        "POST",
        "/v1/earnings",
        KEY,
        body(amount=...),
        422,
        "missing_field",
        "amount",
    ),
    (
        "unknown asset",
        "POST",
        "/v1/earnings",
        KEY,
        body(asset="DOGE"),
        422,
        "unknown_asset",
        "asset",
    ),
    (
        "empty creator",
        "POST",
        "/v1/earnings",
        KEY,
        body(creator_id=""),
        422,
        "invalid_creator_id",
        "creator_id",
    ),
    (
        "NUL in creator",
        "POST",
        "/v1/earnings",
        KEY,
        body(creator_id="a\x00b"),
        422,
        "invalid_text",
        "creator_id",
    ),
    ("unknown field", "POST", "/v1/earnings", KEY, body(amont="5"), 422, "unknown_field", "amont"),
    (
        "naive time",
        "POST",
        "/v1/earnings",
        KEY,
        body(occurred_at="2026-01-01T00:00:00"),
        422,
        "invalid_occurred_at",
        "occurred_at",
    ),
    (
        "not a time",
        "POST",
        "/v1/earnings",
        KEY,
        body(occurred_at="yesterday"),
        422,
        "invalid_occurred_at",
        "occurred_at",
    ),
    (
        "metadata list",
        "POST",
        "/v1/earnings",
        KEY,
        body(metadata=[1]),
        422,
        "invalid_metadata",
        "metadata",
    ),
    (
        "metadata too big",
        "POST",
        "/v1/earnings",
        KEY,
        body(metadata={"x": "y" * 5000}),
        422,
        "invalid_metadata",
        "metadata",
    ),
    (
        "metadata NUL",
        "POST",
        "/v1/earnings",
        KEY,
        body(metadata={"x": "\x00"}),
        422,
        "invalid_metadata",
        "metadata",
    ),
    ("not JSON", "POST", "/v1/earnings", KEY, b"{", 422, "invalid_json", None),
    ("JSON array", "POST", "/v1/earnings", KEY, b"[]", 422, "invalid_body", None),
    (
        "no idempotency key",
        "POST",
        "/v1/earnings",
        {},
        body(),
        400,
        "missing_idempotency_key",
        "Idempotency-Key",
    ),
    (
        "oversized key",
        "POST",
        "/v1/earnings",
        {"Idempotency-Key": "k" * 256},
        body(),
        422,  # a malformed key, like a non-ASCII one; only a missing key is 400
        "invalid_idempotency_key",
        "Idempotency-Key",
    ),
    (
        "oversized body",
        "POST",
        "/v1/earnings",
        KEY,
        body(reference="r" * 70_000),
        413,
        "body_too_large",
        None,
    ),
    (
        "wrong content type",
        "POST",
        "/v1/earnings",
        {**KEY, "Content-Type": "text/plain"},
        body(),
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "form post",
        "POST",
        "/v1/earnings",
        {**KEY, "Content-Type": "application/x-www-form-urlencoded"},
        b"amount=5",
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    ("empty batch", "POST", "/v1/earnings/batch", {}, batch(), 422, "empty_batch", "earnings"),
    (
        "batch item key missing",
        "POST",
        "/v1/earnings/batch",
        {},
        batch(GOOD),
        422,
        "missing_field",
        "earnings[0].idempotency_key",
    ),
    (
        "batch body too large",
        "POST",
        "/v1/earnings/batch",
        {},
        b" " * (16 * 1024 * 1024 + 1),
        413,
        "body_too_large",
        None,
    ),
    (
        "bad address",
        "PUT",
        "/v1/creators/creator-1",
        {},
        b'{"payout_address": "0x1234"}',
        422,
        "invalid_address",
        "payout_address",
    ),
    (
        "bad checksum",
        "PUT",
        "/v1/creators/creator-1",
        {},
        json.dumps({"payout_address": NON_CHECKSUMMED}).encode(),
        422,
        "invalid_checksum",
        "payout_address",
    ),
    (
        "no address",
        "PUT",
        "/v1/creators/creator-1",
        {},
        b"{}",
        422,
        "missing_field",
        "payout_address",
    ),
    (
        "NUL creator id in path",
        "PUT",
        "/v1/creators/a%00b",
        {},
        b'{"payout_address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"}',
        422,
        "invalid_creator_id",
        "creator_id",
    ),
    (
        "unknown creator balance",
        "GET",
        "/v1/creators/nobody/balance",
        {},
        None,
        404,
        "not_found",
        None,
    ),
    ("earning id not a number", "GET", "/v1/earnings/abc", {}, None, 404, "not_found", None),
    ("earning id past bigint", "GET", f"/v1/earnings/{2**70}", {}, None, 404, "not_found", None),
    ("unknown earning", "GET", "/v1/earnings/999999", {}, None, 404, "not_found", None),
    ("unknown payout", "GET", "/v1/payouts/999999", {}, None, 404, "not_found", None),
    ("page size zero", "GET", "/v1/payouts?limit=0", {}, None, 422, "invalid_limit", "limit"),
    (
        "forged cursor",
        "GET",
        "/v1/payouts?cursor=bm90LWEtY3Vyc29y",
        {},
        None,
        422,
        "invalid_cursor",
        "cursor",
    ),
    ("unknown path", "GET", "/v1/nothing-here", {}, None, 404, "not_found", None),
    ("wrong method", "DELETE", "/v1/earnings", {}, None, 405, "method_not_allowed", None),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "raw", "status", "code", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_is_refused_with_a_code_and_changes_nothing(
    api: TestClient,
    alice_shop: Tenant,
    api_runtime: Runtime,
    method: str,
    path: str,
    headers: dict[str, str],
    raw: bytes | None,
    status: int,
    code: str,
    field: str | None,
) -> None:
    assert post_earning(api, alice_shop, "accepted-before").status_code == 201
    before = ledger_rows(api_runtime)

    response = api.request(
        method, path, content=raw, headers={**JSON, **alice_shop.auth, **headers}
    )

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"]
    assert ledger_rows(api_runtime) == before


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_api_key"),
        ("Bearer pk_not-a-key", "invalid_api_key"),
        ("Basic dXNlcjpwYXNz", "invalid_api_key"),
        ("Bearer", "invalid_api_key"),
    ],
)
def test_a_missing_or_bad_key_is_401_before_anything_is_read(
    api: TestClient, api_runtime: Runtime, authorization: str | None, code: str
) -> None:
    headers = {"Idempotency-Key": "k"} | ({"Authorization": authorization} if authorization else {})

    response = api.post("/v1/earnings", json=GOOD, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == code
    assert ledger_rows(api_runtime) == (0, 0, 0, 0)
