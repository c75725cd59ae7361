"""/healthz says the process is up; /readyz says whether the database and broker answer."""

from __future__ import annotations

import socket
from pathlib import Path

from fastapi.testclient import TestClient

from payouts.api.app import create_app
from payouts.runtime import Runtime
from tests.apikit import api_settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ready_when_database_and_broker_answer(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_not_ready_names_what_does_not_answer(db_url: str, state_dir: Path) -> None:
    port = closed_port()
    rt = Runtime(api_settings(db_url, f"redis://127.0.0.1:{port}/0", state_dir))
    with TestClient(create_app(rt)) as api:
        response = api.get("/readyz")
        assert api.get("/healthz").status_code == 200

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("unreachable")
