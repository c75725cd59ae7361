"""Settlement skips, never stalls, and shares batches fairly between marketplaces (on anvil).

A payout the wallet cannot pay now is passed over, the ones behind it still go, and the
operator hears how much is missing; a payout no batch can ever carry is an exception at once;
one marketplace's backlog cannot keep another's payouts out of the next batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_account import Account
from sqlalchemy import text

from payouts.catalog import ensure_marketplace, set_payout_addresses
from payouts.chain import codec
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from tests.chainkit import roll_up_now, scalar, token_balance
from tests.waiting import wait_until

BURN = "0x000000000000000000000000000000000000dEaD"


def _earn(rt: Runtime, marketplace: str, amounts: dict[str, int]) -> None:
    """One earning per creator of ``marketplace``, each with its own fresh address."""
    with rt.uow() as session:
        rt.sync_assets(session)
        addresses = {creator: Account.create().address for creator in amounts}
        set_payout_addresses(session, ensure_marketplace(session, marketplace), addresses)
        session.commit()
    ingest.record(
        rt,
        marketplace,
        [Earning(f"{marketplace}-{c}", c, amount, "USDC") for c, amount in amounts.items()],
    )


def _leave_in_wallet(rt: Runtime, keep: int) -> None:
    """Move the hot wallet's tokens out but ``keep``, as a transfer nobody planned would."""
    token = rt.settings.assets[0].address
    assert token is not None
    wallet = rt.signer.address
    balance = token_balance(rt, token, wallet)
    data = (
        "0x"
        + codec.ERC20_TRANSFER.hex()
        + BURN[2:].lower().rjust(64, "0")
        + hex(balance - keep)[2:].rjust(64, "0")
    )
    rt.chain.rpc("anvil_impersonateAccount", [wallet])
    tx_hash = rt.chain.rpc("eth_sendTransaction", [{"from": wallet, "to": token, "data": data}])
    wait_until(lambda: rt.chain.receipt(tx_hash), timeout=30, what="the transfer out mined")
    assert token_balance(rt, token, wallet) == keep


def _exceptions(rt: Runtime, kind: str) -> list[Any]:
    with rt.uow() as session:
        return list(
            session.execute(
                text("SELECT state, detail, resolution FROM exceptions WHERE kind = :k"),
                {"k": kind},
            ).all()
        )


def test_a_payout_the_wallet_cannot_pay_does_not_hold_back_the_ones_behind_it(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    _earn(rt, "giant", {"whale": 2_000_000})  # rolled up first: the oldest payout
    _earn(rt, "ordinary", {f"creator-{i}": 20_000 for i in range(31)})
    roll_up_now(rt)
    _leave_in_wallet(rt, 1_000_000)

    plan = settlement.settle(rt, actor="test")["USDC"]

    assert sum(b.size for b in plan.sealed) == 31
    assert plan.pending_left == 1
    assert "cannot pay the 1 payouts left (1620000 missing)" in plan.reason
    [(state, detail, _)] = _exceptions(rt, "low_balance")
    assert state == "open"
    assert detail["missing"] == "1620000"
    assert detail["payouts_waiting"] == "1"


def test_the_low_balance_alert_closes_itself_once_the_wallet_can_pay(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    _earn(rt, "giant", {"whale": 2_000_000})
    roll_up_now(rt)
    _leave_in_wallet(rt, 1_000_000)
    assert settlement.settle(rt, actor="test")["USDC"].sealed == []
    assert [e.state for e in _exceptions(rt, "low_balance")] == ["open"]

    token = rt.settings.assets[0].address
    rt.chain.rpc(
        "eth_sendTransaction",
        [
            {
                "from": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",  # the dev token's minter
                "to": token,
                "data": "0x40c10f19"  # mint(address,uint256)
                + rt.signer.address[2:].lower().rjust(64, "0")
                + hex(5_000_000)[2:].rjust(64, "0"),
            }
        ],
    )
    wait_until(
        lambda: token_balance(rt, str(token), rt.signer.address) == 6_000_000,
        timeout=30,
        what="the top-up mined",
    )
    plan = settlement.settle(rt, actor="test")["USDC"]

    assert [b.size for b in plan.sealed] == [1]
    [(state, detail, resolution)] = _exceptions(rt, "low_balance")
    assert state == "resolved"
    assert detail["missing"] == "1000000"
    assert "nothing waiting" in resolution


def test_one_marketplaces_backlog_does_not_starve_another(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(max_batch_size=10)
    _earn(rt, "busy", {f"busy-{i}": 20_000 for i in range(40)})
    _earn(rt, "small", {f"small-{i}": 20_000 for i in range(3)})
    roll_up_now(rt)

    first = settlement.settle(rt, actor="test")["USDC"].sealed[0]

    marketplaces = scalar(
        rt,
        f"""
        SELECT count(*) FROM batch_items i JOIN payouts p ON p.id = i.payout_id
          JOIN creators c ON c.id = p.creator_id JOIN marketplaces m ON m.id = c.marketplace_id
         WHERE i.batch_id = {first.batch_id} AND m.name = 'small'
        """,
    )
    assert first.size == 10
    assert marketplaces == 3  # every payout of the small marketplace is in the first batch


def test_a_payout_no_batch_can_carry_is_an_exception_at_once_and_blocks_nothing(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    # A gas cap below what one transfer needs: no batch can carry any payout, ever.
    rt = make_chain_runtime(max_gas_per_tx=30_000)
    _earn(rt, "m", {f"creator-{i}": 20_000 for i in range(3)})
    roll_up_now(rt)

    first = settlement.settle(rt, actor="test")["USDC"]
    again = settlement.settle(rt, actor="test")["USDC"]

    assert first.sealed == again.sealed == []
    over = _exceptions(rt, "payout_over_gas_cap")
    assert len(over) == 3  # one per payout, told once
    assert all(e.state == "open" and e.detail["gas_cap"] == 30_000 for e in over)
    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'pending'") == 3
