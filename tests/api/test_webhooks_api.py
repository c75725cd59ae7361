"""Webhook endpoints over HTTP: register (the secret shown once), list, change, rotate, read
the attempts, redeliver (dry run first); another marketplace's endpoint is 404; operators
reach every endpoint under /v1/ops/webhooks. Refusals have one error code each."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from payouts.api.app import create_app
from payouts.runtime import Runtime
from tests.apikit import Tenant, api_settings
from tests.webhookkit import emit

URL = "https://hooks.example.com/payouts"
ENDPOINTS = "/v1/webhooks/endpoints"


def _create(api: TestClient, tenant: Tenant, **body: object) -> dict[str, object]:
    response = api.post(ENDPOINTS, json={"url": URL, **body}, headers=tenant.auth)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def test_register_shows_the_secret_once(api: TestClient, alice_shop: Tenant) -> None:
    created = _create(api, alice_shop, event_types=["payout.finalized", "payout.failed"])
    secret = str(created["secret"])
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert created["event_types"] == ["payout.failed", "payout.finalized"]
    assert created["status"] == "enabled"
    shown = api.get(f"{ENDPOINTS}/{created['id']}", headers=alice_shop.auth).json()
    assert "secret" not in shown
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    listed = api.get(ENDPOINTS, headers=alice_shop.auth).json()
    assert [e["id"] for e in listed["data"]] == [created["id"]]
    assert listed["has_more"] is False


def test_pages_follow_the_cursor(api: TestClient, alice_shop: Tenant) -> None:
    ids = [_create(api, alice_shop)["id"] for _ in range(3)]
    first = api.get(ENDPOINTS, params={"limit": 2}, headers=alice_shop.auth).json()
    assert [e["id"] for e in first["data"]] == ids[:0:-1]
    rest = api.get(
        ENDPOINTS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=alice_shop.auth
    ).json()
    assert [e["id"] for e in rest["data"]] == [ids[0]]
    assert api.get(ENDPOINTS, params={"cursr": "x"}, headers=alice_shop.auth).status_code == 422


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://hooks.example.com/x"}, "insecure_url"),
        ({"url": "https://127.0.0.1/x"}, "address_not_allowed"),
        ({"url": "https://localhost:8443/x"}, "address_not_allowed"),
        ({"url": "https://169.254.169.254/latest"}, "address_not_allowed"),
        ({"url": "https://[::1]/x"}, "address_not_allowed"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "invalid_url"),
        ({"url": "https://hooks.example.com/x#frag"}, "invalid_url"),
        ({"url": "ftp://hooks.example.com/x"}, "invalid_url"),
        ({"url": "https://" + "a" * 2048 + ".com"}, "invalid_url"),
        ({"url": 42}, "invalid_url"),
        ({}, "missing_field"),
        ({"url": URL, "event_types": ["Payout Finalized"]}, "invalid_event_types"),
        ({"url": URL, "event_types": ["payout.finalized"] * 51}, "invalid_event_types"),
        ({"url": URL, "secret": "whsec_mine"}, "unknown_field"),
    ],
)
def test_refused_registrations_say_why(
    api: TestClient, alice_shop: Tenant, body: dict[str, object], code: str
) -> None:
    response = api.post(ENDPOINTS, json=body, headers=alice_shop.auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_change_disable_and_enable(api: TestClient, alice_shop: Tenant) -> None:
    endpoint = _create(api, alice_shop)["id"]
    path = f"{ENDPOINTS}/{endpoint}"
    changed = api.patch(
        path,
        json={"url": "https://other.example.com/h", "event_types": ["hold.placed"]},
        headers=alice_shop.auth,
    ).json()
    assert (changed["url"], changed["event_types"]) == (
        "https://other.example.com/h",
        ["hold.placed"],
    )
    off = api.patch(path, json={"enabled": False}, headers=alice_shop.auth).json()
    assert (off["status"], off["disabled_reason"]) == ("disabled", "disabled by request")
    on = api.patch(path, json={"enabled": True}, headers=alice_shop.auth).json()
    assert (on["status"], on["disabled_reason"]) == ("enabled", None)
    refused = api.patch(path, json={"url": "http://x.example.com"}, headers=alice_shop.auth)
    assert refused.json()["error"]["code"] == "insecure_url"


def test_rotation_gives_a_new_secret_and_says_how_long_the_old_one_signs(
    api: TestClient, alice_shop: Tenant
) -> None:
    created = _create(api, alice_shop)
    rotated = api.post(f"{ENDPOINTS}/{created['id']}/rotate-secret", headers=alice_shop.auth)
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["secret"] != created["secret"]
    assert body["previous_secrets_expire_in_seconds"] == 86_400


def test_redeliver_dry_run_then_for_real(
    api: TestClient, alice_shop: Tenant, api_runtime: Runtime
) -> None:
    endpoint = _create(api, alice_shop)["id"]
    emit(api_runtime, alice_shop.id, "payout.created", "payout.batched", "payout.finalized")
    path = f"{ENDPOINTS}/{endpoint}/redeliver"
    dry = api.post(path, json={"after_seq": 1, "dry_run": True}, headers=alice_shop.auth)
    assert dry.status_code == 200
    assert dry.json()["events"] == 2
    assert [e["id"] for e in dry.json()["first"]] == ["evt_2", "evt_3"]
    one = api.post(path, json={"event_id": "evt_1"}, headers=alice_shop.auth)
    assert one.status_code == 202
    assert one.json()["first"] == [{"id": "evt_1", "seq": 1, "type": "payout.created"}]
    assert api.post(path, json={"event_id": "evt_99"}, headers=alice_shop.auth).status_code == 404
    both = api.post(path, json={"event_id": "evt_1", "after_seq": 0}, headers=alice_shop.auth)
    assert both.status_code == 422
    assert api.post(path, json={}, headers=alice_shop.auth).json()["error"]["code"] == (
        "missing_field"
    )
    attempts = api.get(f"{ENDPOINTS}/{endpoint}/attempts", headers=alice_shop.auth)
    assert attempts.json() == {"data": [], "has_more": False, "next_cursor": None}


def test_another_marketplaces_endpoint_is_not_found(
    api: TestClient, alice_shop: Tenant, bob_shop: Tenant, admin: dict[str, str]
) -> None:
    endpoint = _create(api, alice_shop)["id"]
    emit(api.app.state.runtime, alice_shop.id, "payout.created")  # type: ignore[attr-defined]
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"enabled": False}),
        ("POST", "/rotate-secret", None),
        ("GET", "/attempts", None),
        ("POST", "/redeliver", {"after_seq": 0}),
        ("POST", "/redeliver", {"event_id": "evt_1"}),
    ]:
        answer = api.request(
            method, f"{ENDPOINTS}/{endpoint}{suffix}", json=body, headers=bob_shop.auth
        )
        assert answer.status_code == 404, (method, suffix)
    assert api.get(ENDPOINTS, headers=bob_shop.auth).json()["data"] == []
    # Nor can bob redeliver alice's event to his own endpoint.
    bobs = _create(api, bob_shop)["id"]
    stolen = api.post(
        f"{ENDPOINTS}/{bobs}/redeliver", json={"event_id": "evt_1"}, headers=bob_shop.auth
    )
    assert stolen.status_code == 404
    # Operators see both, and redeliver to any.
    ops = api.get("/v1/ops/webhooks/endpoints", headers=admin).json()
    assert {e["marketplace"] for e in ops["data"]} == {"alice-shop", "bob-shop"}
    redo = api.post(
        f"/v1/ops/webhooks/endpoints/{endpoint}/redeliver",
        json={"after_seq": 0, "dry_run": True},
        headers=admin,
    )
    assert redo.json()["events"] == 1
    assert api.get("/v1/ops/webhooks/endpoints", headers=alice_shop.auth).status_code == 403
    assert (
        api.get(f"/v1/ops/webhooks/endpoints/{endpoint}/attempts", headers=admin).json()["data"]
        == []
    )


def test_the_document_says_the_configured_url_rules(
    db_url: str, redis_url: str, state_dir: Path
) -> None:
    def pattern(**settings: bool) -> str:
        rt = Runtime(api_settings(db_url, redis_url, state_dir, **settings))
        document = create_app(rt).openapi()
        found: str = document["components"]["schemas"]["EndpointIn"]["properties"]["url"]["pattern"]
        return found

    strict = pattern()
    assert strict.startswith("^https://")
    assert not re.fullmatch(strict, "https://127.0.0.1/x")
    assert not re.fullmatch(strict, "https://hooks.localhost/x")
    assert re.fullmatch(strict, "https://hooks.example.com:8443/p/a?x=1")
    relaxed = pattern(webhook_allow_http=True, webhook_allow_private_addresses=True)
    assert re.fullmatch(relaxed, "http://127.0.0.1:8080/hooks")
    assert re.fullmatch(relaxed, "http://localhost/hooks")
