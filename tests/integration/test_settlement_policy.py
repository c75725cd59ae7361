"""What settlement does when the chain is expensive or the hot wallet runs low, on anvil."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from tests.chainkit import roll_up_now, scalar, seed

GWEI = 10**9


def runtime_with(make_chain_runtime: Callable[..., Runtime], **asset: Any) -> Runtime:
    """A runtime whose USDC carries extra asset settings (price, alert levels)."""
    base = make_chain_runtime().settings.assets[0].model_dump()
    return make_chain_runtime(assets=[{**base, **asset}])


def test_fees_above_the_soft_limit_wait_unless_payouts_are_overdue(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(defer_fee_per_gas=1)  # any fee is too high
    seed(rt, creators=3)
    roll_up_now(rt)

    plan = settlement.settle(rt, actor="test")["USDC"]

    assert plan.sealed == []
    assert "deferred" in plan.reason
    overdue = make_chain_runtime(defer_fee_per_gas=1, payout_overdue_seconds=0)
    assert len(settlement.settle(overdue, actor="test")["USDC"].sealed) == 1


def test_payouts_too_small_for_todays_gas_wait_for_a_cheaper_window(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    # Gas priced so high in USDC that no payout of this test is worth it; no escrow, so
    # they cannot go by claim instead (tests/integration/test_settle_by_claim.py).
    push_only = functools.partial(make_chain_runtime, claims_address=None)
    rt = runtime_with(push_only, units_per_native=10**18)
    seed(rt, creators=3)
    roll_up_now(rt)

    plan = settlement.settle(rt, actor="test")["USDC"]

    assert plan.sealed == []
    assert "wait for cheaper gas" in plan.reason
    assert plan.pending_left == 3
    overdue = runtime_with(push_only, units_per_native=10**18)
    overdue.settings.payout_overdue_seconds = 0
    assert len(settlement.settle(overdue, actor="test")["USDC"].sealed) == 1


def test_a_low_hot_wallet_alerts_an_operator_once(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = runtime_with(make_chain_runtime, low_balance_alert=10**30)
    seed(rt, creators=2)
    roll_up_now(rt)
    settlement.settle(rt, actor="test", dry_run=True)
    settlement.settle(rt, actor="test", dry_run=False)
    settlement.settle(rt, actor="test")

    assert scalar(rt, "SELECT count(*) FROM exceptions WHERE kind = 'low_balance'") == 1


def test_no_batch_the_wallet_cannot_pay_gas_for(make_chain_runtime: Callable[..., Runtime]) -> None:
    rt = make_chain_runtime(low_gas_balance_wei=10**18)
    seed(rt, creators=2)
    roll_up_now(rt)
    rt.chain.rpc("anvil_setBalance", [rt.signer.address, hex(10**12)])
    try:
        plan = settlement.settle(rt, actor="test")["USDC"]
    finally:
        rt.chain.rpc("anvil_setBalance", [rt.signer.address, hex(10**22)])

    assert plan.sealed == []
    assert plan.reason == "hot wallet has too little gas money"
    assert scalar(rt, "SELECT count(*) FROM exceptions WHERE kind = 'low_balance'") == 1
