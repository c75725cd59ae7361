"""A creator's claim through the API and the Python client: how they settle, their vouchers.

In process over real PostgreSQL: payouts are made claimable by settlement's own claim step
(``make_claimable``; on auto with no price for gas nothing asks the chain), and the vouchers
the API serves are checked by recovering their signer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import devstack
from devstack.processes import start_api, stop
from devstack.spawning import free_port
from payouts.api.app import create_app
from payouts.chain.vouchers import SignedVoucher, Voucher
from payouts.client import InvalidRequest, NotFoundError, PayoutsClient
from payouts.runtime import Runtime
from tests.apikit import Tenant, api_settings, count, make_tenant, post_earning
from tests.chainkit import roll_up_now
from tests.claimkit import claim_pending
from tests.conftest import settings_env

ESCROW = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture
def rt(db_url: str, redis_url: str, state_dir: Path) -> Runtime:
    return Runtime(
        api_settings(
            db_url,
            redis_url,
            state_dir,
            claims_address=ESCROW,
            signer_key=devstack.DEV_KEYS[1],
            payout_address_cool_down_seconds=0,
        )
    )


@pytest.fixture
def api(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as client:
        yield client


@pytest.fixture
def shop(rt: Runtime) -> Tenant:
    return make_tenant(rt, "claims-shop")


def _creator(api: TestClient, shop: Tenant, creator: str, address: str = ADDRESS) -> None:
    answer = api.put(f"/v1/creators/{creator}", json={"payout_address": address}, headers=shop.auth)
    assert answer.status_code == 201, answer.text


def _earn_and_claim(rt: Runtime, api: TestClient, shop: Tenant, amounts: dict[str, int]) -> None:
    """Earnings, a roll-up, and settlement's claim step for every creator on claim."""
    for creator, amount in amounts.items():
        body = {"creator_id": creator, "amount": str(amount), "asset": "USDC"}
        assert post_earning(api, shop, f"{creator}-{amount}", body).status_code == 201
    roll_up_now(rt)
    claim_pending(rt)


def _signed(voucher: dict[str, Any]) -> SignedVoucher:
    unsigned = Voucher(
        voucher["chain_id"],
        voucher["contract"],
        voucher["token"],
        voucher["recipient"],
        int(voucher["cumulative"]),
    )
    return SignedVoucher(unsigned, bytes.fromhex(voucher["signature"][2:]))


def test_a_marketplace_sets_how_its_creator_settles_and_it_is_audited(
    rt: Runtime, api: TestClient, shop: Tenant
) -> None:
    _creator(api, shop, "alice")

    answer = api.put(
        "/v1/creators/alice/settle-mode", json={"settle_mode": "claim"}, headers=shop.auth
    )

    assert answer.status_code == 200
    assert answer.json() == {"creator_id": "alice", "settle_mode": "claim"}
    assert api.get("/v1/creators/alice/claim", headers=shop.auth).json() == {
        "creator_id": "alice",
        "settle_mode": "claim",
        "claims": [],
    }
    audited = count(
        rt,
        "SELECT count(*) FROM transitions WHERE entity = 'creator'"
        " AND from_state = 'mode:auto' AND to_state = 'mode:claim'",
    )
    assert audited == 1


@pytest.mark.parametrize(
    "body",
    [{"settle_mode": "sometimes"}, {"settle_mode": "push", "extra": 1}, {}, {"settle_mode": 1}],
)
def test_a_settle_mode_nobody_named_is_refused(
    api: TestClient, shop: Tenant, body: dict[str, Any]
) -> None:
    _creator(api, shop, "alice")

    answer = api.put("/v1/creators/alice/settle-mode", json=body, headers=shop.auth)

    assert answer.status_code == 422, answer.text


def test_another_marketplace_cannot_see_or_change_a_creator(
    rt: Runtime, api: TestClient, shop: Tenant
) -> None:
    _creator(api, shop, "alice")
    other = make_tenant(rt, "other-shop")

    claim = api.get("/v1/creators/alice/claim", headers=other.auth)
    mode = api.put(
        "/v1/creators/alice/settle-mode", json={"settle_mode": "push"}, headers=other.auth
    )

    assert (claim.status_code, mode.status_code) == (404, 404)


def test_the_claim_serves_the_address_current_voucher_signed_by_the_claim_signer(
    rt: Runtime, api: TestClient, shop: Tenant
) -> None:
    _creator(api, shop, "alice")
    api.put("/v1/creators/alice/settle-mode", json={"settle_mode": "claim"}, headers=shop.auth)
    _earn_and_claim(rt, api, shop, {"alice": 30_000})
    _earn_and_claim(rt, api, shop, {"alice": 45_000})

    [claim] = api.get("/v1/creators/alice/claim", headers=shop.auth).json()["claims"]

    assert claim["asset"] == "USDC"
    assert claim["recipient"] == ADDRESS
    assert (claim["claimable"], claim["claimed"]) == ("75000", "0")
    signed = _signed(claim["voucher"])
    assert signed.voucher.cumulative == 75_000
    assert signed.voucher.contract == ESCROW
    assert signed.signer() == rt.claim_signer.address
    assert claim["voucher"]["calldata"] == signed.claim_calldata()


@pytest.fixture
def served(rt: Runtime, tmp_path: Path) -> Iterator[str]:
    """The API in a process of its own, as a marketplace's client meets it; the client's own
    retries wait for it to start."""
    port = free_port()
    process = start_api(settings_env(rt.settings), tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def test_the_client_sets_the_mode_and_reads_the_voucher(
    rt: Runtime, api: TestClient, shop: Tenant, served: str
) -> None:
    _creator(api, shop, "bob")
    with PayoutsClient(served, shop.key, max_attempts=150, max_wait=0.2) as client:
        assert client.set_settle_mode("bob", "claim")["settle_mode"] == "claim"
        _earn_and_claim(rt, api, shop, {"bob": 20_000})
        [claim] = client.creator_claim("bob")["claims"]

        assert int(claim["voucher"]["cumulative"]) == 20_000
        with pytest.raises(InvalidRequest):
            client.set_settle_mode("bob", "later")
        with pytest.raises(NotFoundError):
            client.creator_claim("nobody")
