"""The Python client claims for a creator on a real anvil: it reads the creator's current
voucher from the API and submits it from a key of the marketplace's own, which pays the gas;
the escrow pays the creator's address, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

import devstack
from devstack.processes import start_api, stop
from devstack.spawning import free_port
from payouts.api.app import create_app
from payouts.claims import topups
from payouts.client import PayoutsClient
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from tests.apikit import ADMIN_KEY, make_tenant
from tests.chainkit import mine, roll_up_now, scalar, token_balance
from tests.conftest import settings_env

ADDRESS = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"


def test_the_client_submits_a_creators_voucher_paid_by_its_own_key(
    make_runtime: Callable[..., Runtime], anvil: devstack.Anvil, tmp_path: Path
) -> None:
    rt = make_runtime(admin_api_key=ADMIN_KEY, payout_address_cool_down_seconds=0)
    token = str(rt.settings.assets[0].address)
    shop = make_tenant(rt, "claims-client-shop")
    port = free_port()
    served = start_api(settings_env(rt.settings), tmp_path, port)
    try:
        with (
            TestClient(create_app(rt)) as api,
            PayoutsClient(
                f"http://127.0.0.1:{port}", shop.key, max_attempts=150, max_wait=0.2
            ) as client,
        ):
            answer = api.put(
                "/v1/creators/bob", json={"payout_address": ADDRESS}, headers=shop.auth
            )
            assert answer.status_code == 201, answer.text
            client.set_settle_mode("bob", "claim")
            answer = api.post(
                "/v1/earnings",
                json={"creator_id": "bob", "amount": "35000", "asset": "USDC"},
                headers={**shop.auth, "Idempotency-Key": "bob-1"},
            )
            assert answer.status_code in (200, 201), answer.text
            assert roll_up_now(rt) == 1
            assert settlement.settle(rt, actor="test")["USDC"].claimable == 1
            topups.top_up(rt)
            mine(rt, 1)
            reconciler.reconcile(rt)
            before = token_balance(rt, token, ADDRESS)
            lane = scalar(rt, "SELECT next_nonce FROM nonce_lanes")

            [tx_hash] = client.claim("bob", rpc_url=anvil.url, payer_key=devstack.DEV_KEYS[2])
            assert client.claim("bob", rpc_url=anvil.url, payer_key=devstack.DEV_KEYS[2]) == []
    finally:
        stop(served)
    assert rt.chain.receipt(tx_hash) is not None
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    owed = scalar(rt, "SELECT sum(amount) FROM payouts")
    assert token_balance(rt, token, ADDRESS) == before + owed
    assert scalar(rt, "SELECT next_nonce FROM nonce_lanes") == lane  # not the hot wallet's
    with rt.uow() as session:
        states = set(session.execute(text("SELECT state FROM payouts")).scalars())
    assert states == {"finalized"}
