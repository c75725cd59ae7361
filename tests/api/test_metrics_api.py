"""``GET /metrics`` on the ledger alone (no chain, no worker): what waits and for how long,
the exception queue, the breaker shared through Redis, a part that cannot be read, and the
optional token."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from config.settings import Settings
from payouts.api.app import create_app
from payouts.exception_queue import record_exception
from payouts.runtime import Runtime
from tests.apikit import api_settings
from tests.chainkit import roll_up_now, seed, value

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def rt(db_url: str, redis_url: str, state_dir: Path) -> Runtime:
    # A node of its own name: the breaker's state in Redis is keyed by it, and other tests'
    # breakers must not see this one open.
    rpc_url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    return Runtime(api_settings(db_url, redis_url, state_dir, rpc_url=rpc_url))


def test_metrics_show_what_waits_the_exceptions_and_the_breaker(rt: Runtime) -> None:
    seed(rt, creators=3)
    roll_up_now(rt)
    with rt.uow() as session:
        record_exception(session, "low_balance", "USDC:test", {"missing": "1"})
        session.commit()

    with TestClient(create_app(rt)) as client:
        first = scrape(client)
        circuit = rt.chain.breaker
        assert circuit is not None
        for _ in range(rt.settings.breaker_failure_threshold):
            circuit.failed()
        second = scrape(client)

    pending = int(value(rt, "SELECT sum(amount) FROM payouts WHERE state = 'pending'"))
    assert sample(first, "payouts_payouts", state="pending", asset="USDC") == 3
    assert sample(first, "payouts_payouts_value", state="pending", asset="USDC") == pending
    assert sample(first, "payouts_payouts", state="finalized", asset="USDC") == 0
    oldest = float(
        value(rt, "SELECT extract(epoch FROM now() - min(created_at)) FROM payouts")
    )  # read after the scrape: the scrape's age is no older
    assert sample(first, "payouts_oldest_nonfinal_payout_age_seconds", state="pending") > 0
    assert sample(first, "payouts_oldest_nonfinal_payout_age_seconds", state="pending") <= oldest
    assert sample(first, "payouts_exceptions_open", kind="low_balance") == 1
    assert sample(first, "payouts_exceptions_oldest_open_age_seconds", kind="low_balance") > 0
    assert sample(first, "payouts_payout_failures_total", cause="batch_failed") == 0
    assert sample(first, "payouts_measure_up", measure="ledger") == 1
    # No signer configured: the runway cannot be read, and says so instead of reading zero.
    assert sample(first, "payouts_measure_up", measure="runway") == 0
    assert not any(name == "payouts_wallet_runway_hours" for name, _ in first)
    # The circuit, opened through the Redis store every process shares.
    assert sample(first, "payouts_rpc_circuit_open") == 0
    assert sample(second, "payouts_rpc_circuit_open") == 1


def test_a_metrics_token_closes_the_endpoint_to_everyone_else(rt: Runtime) -> None:
    closed = Runtime(
        Settings.model_validate({**rt.settings.model_dump(), "metrics_token": "scrape-me"})
    )
    with TestClient(create_app(closed)) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        assert wrong.json()["error"]["code"] == "metrics_token_required"
        scrape(client, Authorization="Bearer scrape-me")
    with TestClient(create_app(rt)) as client:
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_credits_no_roll_up_has_claimed_show_their_age_until_one_does(rt: Runtime) -> None:
    with TestClient(create_app(rt)) as client:
        assert sample(scrape(client), "payouts_oldest_unclaimed_credit_age_seconds") == 0
        seed(rt, creators=2)
        with rt.uow() as session:
            recorded = session.execute(
                text("SELECT extract(epoch FROM now() - min(created_at)) FROM credits")
            ).scalar_one()
        waiting = sample(scrape(client), "payouts_oldest_unclaimed_credit_age_seconds")
        assert waiting >= float(recorded) > 0
        roll_up_now(rt)
        assert sample(scrape(client), "payouts_oldest_unclaimed_credit_age_seconds") == 0
