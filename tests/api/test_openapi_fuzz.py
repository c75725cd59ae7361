"""Schemathesis over the published OpenAPI document: whatever it generates, no server error,
and every answer is one the document promises (status, content type, body schema).

These are the answer checks only; ``test_openapi_contract.py`` runs every check schemathesis
has, among them that a request valid by the document is accepted and an invalid one refused.

The app runs over a real database (with one marketplace's earnings and a payout in it) and a
real chain, so a settlement run the fuzzer triggers is a real one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from payouts.api.app import create_app
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, make_tenant, post_earning
from tests.chainkit import roll_up_now


@pytest.fixture
def fuzzed(make_runtime: Callable[..., Runtime], redis_url: str) -> dict[str, Any]:
    rt = make_runtime(admin_api_key=ADMIN_KEY, redis_url=redis_url)
    shop = make_tenant(rt, "fuzzed-shop")
    app = create_app(rt)
    with TestClient(app) as api:
        api.put(
            "/v1/creators/creator-1",
            json={"payout_address": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"},
            headers=shop.auth,
        )
        for i in range(3):
            post_earning(
                api,
                shop,
                f"seed-{i}",
                {"creator_id": "creator-1", "amount": "20000", "asset": "USDC"},
            )
    roll_up_now(rt)
    return {"app": app, "shop": shop}


@pytest.fixture
def api_schema(fuzzed: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed["app"])


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_a_server_error(case: Any, fuzzed: dict[str, Any]) -> None:
    key = ADMIN_KEY if case.path.startswith("/v1/ops") else fuzzed["shop"].key
    case.call_and_validate(
        headers={"Authorization": f"Bearer {key}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
