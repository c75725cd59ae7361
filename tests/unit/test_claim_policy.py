"""Push or claim, decided per payout without a database or a node (``settle_by``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from config.settings import AssetConfig, Settings
from payouts.settlement.policy import (
    WEI_PER_NATIVE,
    ClaimPolicy,
    SettleBy,
    SettleMode,
    claim_policy_for,
    push_threshold,
    settle_by,
)

GWEI = 10**9
# A 6-decimals dollar token with the native coin at 3,000 dollars: 3e9 base units per 1e18 wei.
USDC_PER_NATIVE = 3_000 * 10**6


def _decide(
    mode: SettleMode,
    amount: int,
    *,
    gas: int = 9_200,
    fee: int = 2 * GWEI,
    units: int | None = USDC_PER_NATIVE,
    multiple: int = 20,
) -> SettleBy:
    return settle_by(
        mode, amount, marginal_gas=gas, fee_per_gas=fee, units_per_native=units, multiple=multiple
    )


def _auto(amount: int, **figures: int) -> SettleBy:
    return _decide(SettleMode.AUTO, amount, **figures)


def test_a_creator_who_asked_for_push_is_pushed_however_small() -> None:
    assert _decide(SettleMode.PUSH, 1, gas=26_300, fee=100 * GWEI, multiple=1_000) is SettleBy.PUSH


def test_a_creator_who_asked_for_claim_claims_however_large() -> None:
    assert _decide(SettleMode.CLAIM, 10**30, gas=0, fee=0, units=None) is SettleBy.CLAIM


def test_auto_pushes_from_the_multiple_of_the_gas_and_claims_below_it() -> None:
    # 9,200 gas at 2 gwei is 18,400 gwei, 0.0000184 native: 55,200 base units (5.5 cents);
    # twenty times that is 1,104,000.
    assert push_threshold(9_200, 2 * GWEI, USDC_PER_NATIVE, 20) == 1_104_000
    assert _auto(1_104_000) is SettleBy.PUSH
    assert _auto(1_103_999) is SettleBy.CLAIM


def test_the_threshold_rounds_up_so_a_payout_never_pushes_below_the_multiple() -> None:
    # 1 gas at 1 wei costs 3e9 / 1e18 base units: a fraction, so one base unit is the least.
    assert push_threshold(1, 1, USDC_PER_NATIVE, 1) == 1
    assert _auto(1, gas=1, fee=1, multiple=1) is SettleBy.PUSH


def test_without_a_price_gas_is_not_weighed_and_auto_pushes() -> None:
    assert push_threshold(26_300, 500 * GWEI, None, 1_000) == 0
    decided = _decide(SettleMode.AUTO, 1, gas=26_300, fee=500 * GWEI, units=None, multiple=1_000)
    assert decided is SettleBy.PUSH


def test_a_fresh_holder_costs_more_so_the_same_amount_may_claim() -> None:
    policy = ClaimPolicy(
        multiple=20, units_per_native=USDC_PER_NATIVE, gas_fresh_holder=26_300,
        gas_existing_holder=9_200,
    )  # fmt: skip
    existing, fresh = policy.thresholds(2 * GWEI)
    assert (existing, fresh) == (1_104_000, 3_156_000)
    between = 2_000_000
    assert policy.settle_by(SettleMode.AUTO, between, 2 * GWEI, fresh=False) is SettleBy.PUSH
    assert policy.settle_by(SettleMode.AUTO, between, 2 * GWEI, fresh=True) is SettleBy.CLAIM
    assert policy.settle_by(SettleMode.PUSH, 1, 2 * GWEI, fresh=True) is SettleBy.PUSH


def test_the_policy_reads_its_figures_from_the_settings() -> None:
    asset = AssetConfig(symbol="USDC", decimals=6, units_per_native=USDC_PER_NATIVE)
    settings = Settings(assets=[asset], claim_push_multiple=7, claim_gas_fresh_holder=30_000)
    policy = claim_policy_for(settings, "USDC")
    assert policy == ClaimPolicy(7, USDC_PER_NATIVE, 30_000, settings.claim_gas_existing_holder)


@given(
    amount=st.integers(min_value=1, max_value=10**30),
    gas=st.integers(min_value=0, max_value=10**6),
    fee=st.integers(min_value=0, max_value=10**13),
    units=st.integers(min_value=1, max_value=10**24),
    multiple=st.integers(min_value=1, max_value=10**4),
)
def test_auto_pushes_exactly_when_the_amount_is_worth_the_multiple_in_integers(
    amount: int, gas: int, fee: int, units: int, multiple: int
) -> None:
    decided = _auto(amount, gas=gas, fee=fee, units=units, multiple=multiple)
    worth = amount * WEI_PER_NATIVE >= multiple * gas * fee * units
    assert decided is (SettleBy.PUSH if worth else SettleBy.CLAIM)
