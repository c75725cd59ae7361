"""BatchPolicy: how many payouts go into the next transaction, and the fees it may pay."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from payouts.batching import BatchPolicy
from payouts.chain.fees import fees_for

GWEI = 10**9
EIP_7825_CAP = 2**24

DEFAULT = BatchPolicy(gas_cap=EIP_7825_CAP, max_size=500)


def _proportional(policy: BatchPolicy, size: int, estimate: int, new_size: int) -> int:
    """The estimate of ``new_size`` payouts if each costs what it cost in ``size`` (rounded up)."""
    variable = estimate - policy.base_gas
    return policy.base_gas + -(-variable * new_size // size)


@pytest.mark.parametrize(
    ("situation", "policy", "available", "expected"),
    [
        ("bounded by max_size", BatchPolicy(gas_cap=EIP_7825_CAP, max_size=50), 1_000, 50),
        ("bounded by what is available", DEFAULT, 3, 3),
        ("nothing available", DEFAULT, 0, 0),
        # budget 833_333 -> (833_333 - 60_000) // 30_000 = 25
        ("bounded by the gas budget", BatchPolicy(gas_cap=1_000_000, max_size=500), 1_000, 25),
        # with no headroom the budget is the cap: (1_000_000 - 60_000) // 30_000 = 31
        (
            "no headroom: the whole cap is the budget",
            BatchPolicy(gas_cap=1_000_000, max_size=500, headroom_percent=0),
            1_000,
            31,
        ),
        (
            "a learnt cheaper payout lets more in",
            BatchPolicy(gas_cap=1_000_000, max_size=500, gas_per_payout=10_000),
            1_000,
            77,
        ),
        # the cap does not even cover the fixed cost: one payout is still tried, the chain's
        # estimate has the last word
        ("a cap below the base gas still tries one", BatchPolicy(gas_cap=50_000, max_size=9), 5, 1),
    ],
)
def test_first_guess(situation: str, policy: BatchPolicy, available: int, expected: int) -> None:
    assert policy.first_guess(available) == expected


@given(
    gas_cap=st.integers(min_value=200_000, max_value=2**26),
    max_size=st.integers(min_value=1, max_value=2_000),
    headroom=st.integers(min_value=0, max_value=100),
    per_payout=st.integers(min_value=1, max_value=200_000),
    available=st.integers(min_value=0, max_value=5_000),
)
def test_first_guess_never_exceeds_any_bound_and_its_model_estimate_fits(
    gas_cap: int, max_size: int, headroom: int, per_payout: int, available: int
) -> None:
    policy = BatchPolicy(
        gas_cap=gas_cap, max_size=max_size, headroom_percent=headroom, gas_per_payout=per_payout
    )
    assume(policy.base_gas + per_payout <= policy.budget())
    guess = policy.first_guess(available)
    assert 0 <= guess <= min(available, max_size)
    assert policy.fits(policy.base_gas + guess * per_payout)


@pytest.mark.parametrize(
    ("policy", "estimate", "fits"),
    [
        (BatchPolicy(gas_cap=120, max_size=1, base_gas=0), 100, True),  # 100 + 20% = 120
        (BatchPolicy(gas_cap=119, max_size=1, base_gas=0), 100, False),  # 120 > 119
        (BatchPolicy(gas_cap=100, max_size=1, base_gas=0, headroom_percent=0), 100, True),
        (BatchPolicy(gas_cap=100, max_size=1, base_gas=0, headroom_percent=0), 101, False),
        (BatchPolicy(gas_cap=200, max_size=1, base_gas=0, headroom_percent=100), 100, True),
        (BatchPolicy(gas_cap=199, max_size=1, base_gas=0, headroom_percent=100), 100, False),
        (DEFAULT, DEFAULT.budget(), True),
        (DEFAULT, EIP_7825_CAP, False),  # fits raw, but not with its headroom
    ],
)
def test_fits_counts_the_headroom_against_the_cap(
    policy: BatchPolicy, estimate: int, fits: bool
) -> None:
    assert policy.fits(estimate) is fits
    assert policy.gas_limit(estimate) == estimate * (100 + policy.headroom_percent) // 100


@given(
    gas_cap=st.integers(min_value=21_000, max_value=2**26),
    headroom=st.integers(min_value=0, max_value=100),
)
def test_the_budget_itself_fits(gas_cap: int, headroom: int) -> None:
    policy = BatchPolicy(gas_cap=gas_cap, max_size=1, headroom_percent=headroom)
    assert policy.fits(policy.budget())


@pytest.mark.parametrize("size", [0, 1])
def test_shrink_gives_up_below_two_payouts(size: int) -> None:
    assert DEFAULT.shrink(size, EIP_7825_CAP * 2) == 0


@pytest.mark.parametrize(
    ("situation", "size", "estimate", "expected"),
    [
        # 500 payouts at 40_000 each: (13_981_013 - 60_000) // 40_000 = 348
        ("in proportion to the real cost", 500, 60_000 + 500 * 40_000, 348),
        # just over the budget: at least one payout goes
        ("just over: one less", 100, DEFAULT.budget() + 1, 99),
        # an estimate below the base cost says nothing about payouts; still makes progress
        ("estimate below the base gas", 10, 1_000, 9),
    ],
)
def test_shrink_table(situation: str, size: int, estimate: int, expected: int) -> None:
    assert DEFAULT.shrink(size, estimate) == expected


@given(
    gas_cap=st.integers(min_value=21_000, max_value=2**26),
    headroom=st.integers(min_value=0, max_value=100),
    size=st.integers(min_value=1, max_value=5_000),
    estimate=st.integers(min_value=0, max_value=2**32),
)
def test_shrink_always_makes_progress(
    gas_cap: int, headroom: int, size: int, estimate: int
) -> None:
    policy = BatchPolicy(gas_cap=gas_cap, max_size=5_000, headroom_percent=headroom)
    smaller = policy.shrink(size, estimate)
    assert 0 <= smaller < size


@example(headroom=20, size=553, per_payout_x100=8_000_590)  # estimate 44_303_262 -> 174
@given(
    headroom=st.integers(min_value=0, max_value=50),
    size=st.integers(min_value=2, max_value=1_000),
    per_payout_x100=st.integers(min_value=21_000 * 100, max_value=100_000 * 100),
)
def test_shrink_returns_a_size_whose_proportional_estimate_fits(
    headroom: int, size: int, per_payout_x100: int
) -> None:
    """A candidate of ``size`` payouts estimated over the budget is cut to one that would fit
    if every payout cost what it cost in the candidate (gas per payout needs not be whole)."""
    policy = BatchPolicy(gas_cap=EIP_7825_CAP, max_size=1_000, headroom_percent=headroom)
    estimate = policy.base_gas + size * per_payout_x100 // 100
    assume(not policy.fits(estimate))
    smaller = policy.shrink(size, estimate)
    assert smaller < size
    if smaller:
        assert policy.fits(_proportional(policy, size, estimate, smaller))


def test_learn_folds_the_real_per_payout_cost_into_the_model() -> None:
    learnt = DEFAULT.learn(100, DEFAULT.base_gas + 100 * 25_000)
    assert learnt.gas_per_payout == 25_000
    assert learnt == replace(DEFAULT, gas_per_payout=25_000)
    assert DEFAULT.gas_per_payout == 30_000  # the policy is a value: the old one is unchanged


def test_learn_makes_the_next_first_guess_follow_the_real_cost() -> None:
    policy = BatchPolicy(gas_cap=1_000_000, max_size=500)
    assert policy.first_guess(1_000) == 25
    cheaper = policy.learn(10, policy.base_gas + 10 * 15_000)
    assert cheaper.first_guess(1_000) == (cheaper.budget() - cheaper.base_gas) // 15_000 == 51


@pytest.mark.parametrize(
    ("size", "estimate", "per_payout"),
    [
        (0, 1_000_000, 30_000),  # nothing learnt from an empty candidate
        (-1, 1_000_000, 30_000),
        (10, 5_000, 1),  # an estimate below the base gas: the model stays positive
        (10, 60_000, 1),
    ],
)
def test_learn_ignores_empty_candidates_and_keeps_the_model_positive(
    size: int, estimate: int, per_payout: int
) -> None:
    assert DEFAULT.learn(size, estimate).gas_per_payout == per_payout


@pytest.mark.parametrize(
    ("situation", "base_fee", "priority_fee", "cap", "max_fee", "tip"),
    [
        ("tip plus twice the base fee", 10 * GWEI, 1 * GWEI, 200 * GWEI, 21 * GWEI, 1 * GWEI),
        ("max fee capped at the ceiling", 150 * GWEI, 2 * GWEI, 200 * GWEI, 200 * GWEI, 2 * GWEI),
        ("tip capped at the ceiling", 1 * GWEI, 300 * GWEI, 200 * GWEI, 200 * GWEI, 200 * GWEI),
        ("no tip", 7, 0, 1_000, 14, 0),
        ("exactly at the cap", 50, 100, 200, 200, 100),
    ],
)
def test_fees_for(
    situation: str, base_fee: int, priority_fee: int, cap: int, max_fee: int, tip: int
) -> None:
    fees = fees_for(base_fee, priority_fee, cap)
    assert fees.max_fee_per_gas == max_fee
    assert fees.max_priority_fee_per_gas == tip
    assert fees.affordable


@given(
    base_fee=st.integers(min_value=0, max_value=10**13),
    priority_fee=st.integers(min_value=0, max_value=10**13),
    cap=st.integers(min_value=1, max_value=10**13),
)
def test_fees_never_pass_the_ceiling_and_the_tip_never_passes_the_max_fee(
    base_fee: int, priority_fee: int, cap: int
) -> None:
    fees = fees_for(base_fee, priority_fee, cap)
    assert fees.max_fee_per_gas <= cap
    assert fees.max_priority_fee_per_gas <= fees.max_fee_per_gas
    assert fees.max_priority_fee_per_gas == min(priority_fee, cap)
    assert fees.affordable
