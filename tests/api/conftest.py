"""The API in-process over real PostgreSQL and Redis: two marketplaces and an operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from payouts.api.app import create_app
from payouts.runtime import Runtime
from tests.apikit import ADMIN_KEY, Tenant, api_settings, make_tenant


@pytest.fixture
def api_runtime(db_url: str, redis_url: str, state_dir: Path) -> Runtime:
    return Runtime(api_settings(db_url, redis_url, state_dir))


@pytest.fixture
def alice_shop(api_runtime: Runtime) -> Tenant:
    return make_tenant(api_runtime, "alice-shop")


@pytest.fixture
def bob_shop(api_runtime: Runtime) -> Tenant:
    return make_tenant(api_runtime, "bob-shop")


@pytest.fixture
def api(api_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(api_runtime)) as client:
        yield client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
