"""The Python client against ``payouts api`` served by uvicorn in its own process.

Retries are the point: when the server recorded an earning but the answer was lost on the
way back, the client resends the same idempotency key and the earning exists once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.processes import start_api, stop
from payouts.client import (
    ApiUnreachable,
    AuthenticationError,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFoundError,
    PayoutsClient,
)
from payouts.runtime import Runtime
from tests.apikit import Tenant, api_settings, count, make_tenant
from tests.conftest import settings_env
from tests.tcp_proxy import CuttingProxy
from tests.waiting import WaitTimeout, wait_until

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(db_url: str, redis_url: str, state_dir: Path, tmp_path: Path) -> Iterator[Runtime]:
    settings = api_settings(db_url, redis_url, state_dir)
    port = free_port()
    process = start_api(settings_env(settings), tmp_path, port)

    def ready() -> bool:
        if process.poll() is not None:
            raise WaitTimeout("the API process exited")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=30, interval=0.1, what="the API to answer /readyz")
    except WaitTimeout as exc:
        stop(process)
        pytest.fail(f"{exc}\n{(tmp_path / 'api.log').read_text()}")
    rt = Runtime(settings)
    rt.port = port  # type: ignore[attr-defined]
    yield rt
    stop(process)


@pytest.fixture
def shop(served: Runtime) -> Tenant:
    return make_tenant(served, "client-shop")


@pytest.fixture
def client(served: Runtime, shop: Tenant) -> Iterator[PayoutsClient]:
    with PayoutsClient(f"http://127.0.0.1:{served.port}", shop.key, max_wait=0.2) as c:  # type: ignore[attr-defined]
        yield c


def test_a_marketplace_records_earnings_and_reads_them_back(
    client: PayoutsClient, served: Runtime
) -> None:
    client.set_payout_address("creator-1", ADDRESS)
    one = client.record_earning("creator-1", 1_250_000, "USDC", reference="order-1")
    many = client.record_earnings(
        [
            {"creator_id": f"creator-{i % 3}", "amount": 1000 + i, "asset": "USDC"}
            for i in range(250)
        ]
    )

    assert (one.amount, one.status, one.replayed) == (1_250_000, "accrued", False)
    assert (many.created, many.replayed, len(many.ids)) == (250, 0, 250)
    assert client.earning(one.id)["reference"] == "order-1"
    balance = {b["asset"]: b for b in client.balance("creator-1")["balances"]}
    assert int(balance["USDC"]["accrued"]) == 1_250_000 + sum(
        1000 + i for i in range(250) if i % 3 == 1
    )
    assert count(served, "SELECT count(*) FROM credits") == 251


def test_a_lost_answer_is_retried_with_the_same_key_and_credits_once(
    served: Runtime, shop: Tenant
) -> None:
    proxy = CuttingProxy(served.port)  # type: ignore[attr-defined]
    proxy.cut_responses = 2
    try:
        with PayoutsClient(proxy.url, shop.key, max_wait=0.2) as client:
            receipt = client.record_earning("creator-1", 777, "USDC", idempotency_key="order-9")
            batch_proxy_cut = proxy.cut
            proxy.cut_responses = 1
            batch = client.record_earnings(
                [
                    {
                        "creator_id": "creator-2",
                        "amount": 5,
                        "asset": "USDC",
                        "idempotency_key": "b-1",
                    }
                ]
            )
    finally:
        proxy.close()

    assert batch_proxy_cut == 2
    assert client.attempts == 3 + 2
    assert receipt.replayed  # the first attempt was recorded; its answer never arrived
    assert (batch.created, batch.replayed) == (0, 1)
    assert count(served, "SELECT count(*) FROM credits") == 2
    assert count(served, "SELECT sum(amount) FROM credits") == 782


def test_errors_arrive_as_typed_exceptions(client: PayoutsClient, served: Runtime) -> None:
    client.record_earning("creator-1", 10, "USDC", idempotency_key="k-1")

    with pytest.raises(IdempotencyKeyReused):
        client.record_earning("creator-1", 11, "USDC", idempotency_key="k-1")
    with pytest.raises(InvalidRequest) as bad:
        client.record_earnings(
            [
                {"creator_id": "c", "amount": "1.5", "asset": "USDC"},
                {"creator_id": "c", "amount": 5, "asset": "DOGE"},
            ]
        )
    assert {e["field"] for e in bad.value.errors} == {"earnings[0].amount", "earnings[1].asset"}
    with pytest.raises(NotFoundError):
        client.payout(123456)
    with pytest.raises(TypeError):
        client.record_earning("creator-1", 1.5, "USDC")  # type: ignore[arg-type]
    with (
        PayoutsClient(f"http://127.0.0.1:{served.port}", "pk_wrong") as stranger,  # type: ignore[attr-defined]
        pytest.raises(AuthenticationError),
    ):
        stranger.balance("creator-1")
    assert count(served, "SELECT count(*) FROM credits") == 1


def test_an_api_that_never_answers_is_reported_after_the_retries() -> None:
    with PayoutsClient(
        f"http://127.0.0.1:{free_port()}", "pk_x", max_attempts=3, max_wait=0.05
    ) as c:
        with pytest.raises(ApiUnreachable):
            c.record_earning("creator-1", 10, "USDC")
        assert c.attempts == 3
