"""BatchPolicy: how many payouts go into the next transaction, and the fees it may pay
(including what a replacement of a stuck transaction pays)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from payouts.chain.fees import Fees, bumped, fees_for
from payouts.settlement.policy import BatchPolicy, Conditions

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


# --- plan: the situation decides ----------------------------------------------------------

ETH = 10**18
CALM = Conditions(available=1_000, base_fee=1 * GWEI, block_gas_limit=30_000_000, gas_balance=ETH)
POLICY = BatchPolicy(gas_cap=EIP_7825_CAP, max_size=500, priority_fee=1 * GWEI)


@pytest.mark.parametrize(
    ("situation", "policy", "now", "size", "reason"),
    [
        # (13_981_013 budget - 60_000) // 30_000 = 464
        ("calm chain: bounded by the per-transaction gas cap", POLICY, CALM, 464, "go"),
        ("bounded by max_size", replace(POLICY, max_size=100), CALM, 100, "go"),
        ("few waiting", POLICY, replace(CALM, available=7), 7, "go"),
        ("nothing waiting", POLICY, replace(CALM, available=0), 0, "no pending payouts"),
        (
            "base fee at the hard cap: nothing goes, overdue or not",
            replace(POLICY, max_fee_per_gas=50 * GWEI),
            replace(CALM, base_fee=50 * GWEI, overdue=True),
            0,
            "base fee 50000000000 is at the cap",
        ),
        (
            "fees above the soft limit: wait",
            replace(POLICY, defer_fee_per_gas=20 * GWEI),
            replace(CALM, base_fee=30 * GWEI),
            0,
            "fee 31000000000 above 20000000000: deferred",
        ),
        (
            "fees above the soft limit but payouts overdue: go",
            replace(POLICY, defer_fee_per_gas=20 * GWEI),
            replace(CALM, base_fee=30 * GWEI, overdue=True),
            # 1 ETH at 61 gwei = 16_393_442 gas: (16_393_442 - 72_000) // 36_000 = 453
            453,
            "go",
        ),
        (
            "a small block gas limit bounds the batch below the tx cap",
            POLICY,
            replace(CALM, block_gas_limit=3_060_000),
            # budget 2_550_000 -> (2_550_000 - 60_000) // 30_000 = 83
            83,
            "go",
        ),
        (
            "the wallet's gas money bounds the batch",
            POLICY,
            # at 3 gwei worst case: 10**15 / 3e9 = 333_333 gas; (333_333 - 72_000) // 36_000 = 7
            replace(CALM, gas_balance=10**15),
            7,
            "go",
        ),
        (
            "no gas money: nothing goes",
            POLICY,
            replace(CALM, gas_balance=10**14),
            0,
            "hot wallet has too little gas money",
        ),
        (
            "after two failures the batch is a quarter",
            replace(POLICY, max_size=400),
            replace(CALM, recent_outcomes=(True, False, False)),
            100,
            "go",
        ),
        (
            "successes grow it back",
            replace(POLICY, max_size=400),
            replace(CALM, recent_outcomes=(False, False, True)),
            200,
            "go",
        ),
    ],
)
def test_plan(situation: str, policy: BatchPolicy, now: Conditions, size: int, reason: str) -> None:
    decision = policy.plan(now)
    assert (decision.size, decision.reason) == (size, reason)


@given(outcomes=st.lists(st.booleans(), max_size=40), max_size=st.integers(1, 5_000))
def test_the_ceiling_stays_between_one_and_max_size(outcomes: list[bool], max_size: int) -> None:
    assert 1 <= BatchPolicy(gas_cap=EIP_7825_CAP, max_size=max_size).ceiling(outcomes) <= max_size


@pytest.mark.parametrize(
    ("situation", "units_per_native", "share_bps", "fee", "min_amount"),
    [
        ("no price configured: no minimum", None, 500, 10 * GWEI, 0),
        # 30_000 gas * 1 gwei = 3e13 wei; at 3_000 USDC/ETH (6 decimals) that is 90_000 units
        # ($0.09), so a 5% share asks for payouts of 1_800_000 units ($1.80) or more
        ("cheap gas", 3_000 * 10**6, 500, 1 * GWEI, 1_800_000),
        ("ten times the fee, ten times the minimum", 3_000 * 10**6, 500, 10 * GWEI, 18_000_000),
        ("a 1% share asks five times more than 5%", 3_000 * 10**6, 100, 1 * GWEI, 9_000_000),
        # 30_000 * 7 wei * 1 unit/1e18 rounds up to 1 unit; 1 unit at 100% is 1
        ("never rounded down to free", 1, 10_000, 7, 1),
    ],
)
def test_min_amount_keeps_the_gas_share_under_the_limit(
    situation: str, units_per_native: int | None, share_bps: int, fee: int, min_amount: int
) -> None:
    policy = replace(POLICY, units_per_native=units_per_native, max_gas_share_bps=share_bps)
    assert policy.min_amount(fee) == min_amount
    assert policy.plan(replace(CALM, base_fee=fee - POLICY.priority_fee)).min_amount == min_amount


# --- replacement fees ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("situation", "old", "base_fee", "cap", "expected"),
    [
        (
            "both fees up 12.5%",
            Fees(10 * GWEI, 2 * GWEI),
            1 * GWEI,
            200 * GWEI,
            Fees(11_250_000_000, 2_250_000_000),
        ),
        (
            "the base fee rose past the old max fee: follow it",
            Fees(3 * GWEI, 1 * GWEI),
            10 * GWEI,
            200 * GWEI,
            Fees(21_125_000_000, 1_125_000_000),
        ),
        (
            "capped, but still a valid bump",
            Fees(100 * GWEI, 1 * GWEI),
            80 * GWEI,
            115 * GWEI,
            Fees(115 * GWEI, 1_125_000_000),
        ),
        ("the cap leaves no room", Fees(190 * GWEI, 1 * GWEI), 1 * GWEI, 200 * GWEI, None),
    ],
)
def test_bumped(situation: str, old: Fees, base_fee: int, cap: int, expected: Fees | None) -> None:
    assert (
        bumped(old, base_fee=base_fee, priority_fee=1 * GWEI, bump_bps=1_250, max_fee_cap=cap)
        == expected
    )


@given(
    max_fee=st.integers(min_value=1, max_value=10**12),
    tip_share=st.integers(min_value=0, max_value=100),
    base_fee=st.integers(min_value=0, max_value=10**12),
    bump_bps=st.integers(min_value=1_000, max_value=10_000),
    cap=st.integers(min_value=1, max_value=2 * 10**12),
)
def test_a_bump_is_a_valid_replacement_or_none(
    max_fee: int, tip_share: int, base_fee: int, bump_bps: int, cap: int
) -> None:
    old = Fees(max_fee, max_fee * tip_share // 100)
    new = bumped(old, base_fee=base_fee, priority_fee=0, bump_bps=bump_bps, max_fee_cap=cap)
    if new is not None:
        assert new.max_fee_per_gas <= cap
        assert new.max_fee_per_gas * 10_000 >= old.max_fee_per_gas * (10_000 + bump_bps)
        assert new.max_priority_fee_per_gas * 10_000 >= old.max_priority_fee_per_gas * (
            10_000 + bump_bps
        )
        assert new.max_priority_fee_per_gas <= new.max_fee_per_gas
