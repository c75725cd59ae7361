"""Helpers for API tests: tenants, request bodies, and what the ledger holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from config.settings import Settings
from payouts.catalog import create_marketplace
from payouts.runtime import Runtime

ADMIN_KEY = "admin-test-key"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@dataclass(frozen=True)
class Tenant:
    id: int
    name: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def api_settings(db_url: str, redis_url: str, state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": redis_url,
        "state_dir": str(state_dir),
        "admin_api_key": ADMIN_KEY,
        "payout_address_cool_down_seconds": 3600,
        "assets": [
            {
                "symbol": "USDC",
                "decimals": 6,
                "address": TOKEN,
                "min_payout": 10_000,
                "rounding_unit": 100,
            }
        ],
    }
    values.update(overrides)
    return Settings.model_validate(values)


def make_tenant(rt: Runtime, name: str) -> Tenant:
    with rt.uow() as session:
        created = create_marketplace(session, name)
        session.commit()
    return Tenant(created.id, created.name, created.api_key)


def earning(creator: str = "creator-1", amount: str = "1250", **extra: Any) -> dict[str, Any]:
    return {"creator_id": creator, "amount": amount, "asset": "USDC", **extra}


def post_earning(
    api: TestClient, tenant: Tenant, key: str, body: dict[str, Any] | None = None, **kw: Any
) -> Any:
    return api.post(
        "/v1/earnings",
        json=earning() if body is None else body,
        headers={**tenant.auth, "Idempotency-Key": key},
        **kw,
    )


def count(rt: Runtime, sql: str) -> int:
    with rt.uow() as session:
        return int(session.execute(text(sql)).scalar_one())


def ledger_rows(rt: Runtime) -> tuple[int, int, int, int]:
    """Credits, journals, entries, creators: what a refused request must leave untouched."""
    return (
        count(rt, "SELECT count(*) FROM credits"),
        count(rt, "SELECT count(*) FROM journals"),
        count(rt, "SELECT count(*) FROM entries"),
        count(rt, "SELECT count(*) FROM creators"),
    )
