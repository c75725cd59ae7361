"""Business finality: how many blocks deep a batch must be before the ledger calls it paid.

Specified here: ``FinalityRule.depth_for`` is the default depth, or deeper for larger amounts
(a tier ``(at_least, depth)`` applies from ``at_least`` exactly); it is never below the
default, never shallower for a larger amount, and the order the tiers are listed in does not
matter.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payouts.settlement.finality import FinalityRule

USDC = 10**6
RULE = FinalityRule(12, [(10_000 * USDC, 32), (100_000 * USDC, 64)])


@pytest.mark.parametrize(
    ("situation", "rule", "amount", "depth"),
    [
        ("no tiers: the default", FinalityRule(12), 10**30, 12),
        ("no tiers, nothing paid", FinalityRule(12), 0, 12),
        ("below every tier", RULE, 9_999 * USDC, 12),
        ("one unit below the first tier", RULE, 10_000 * USDC - 1, 12),
        ("exactly the first tier", RULE, 10_000 * USDC, 32),
        ("between the tiers", RULE, 50_000 * USDC, 32),
        ("one unit below the second tier", RULE, 100_000 * USDC - 1, 32),
        ("exactly the second tier", RULE, 100_000 * USDC, 64),
        ("above every tier", RULE, 10**30, 64),
        (
            "tiers listed largest first",
            FinalityRule(12, [(100_000 * USDC, 64), (10_000 * USDC, 32)]),
            50_000 * USDC,
            32,
        ),
        (
            "a tier shallower than the default never lowers it",
            FinalityRule(12, [(1_000 * USDC, 6)]),
            5_000 * USDC,
            12,
        ),
        (
            "a larger tier that is shallower: the deepest that applies wins",
            FinalityRule(12, [(1_000 * USDC, 50), (10_000 * USDC, 20)]),
            10_000 * USDC,
            50,
        ),
        ("a tier from zero applies to everything", FinalityRule(1, [(0, 3)]), 0, 3),
    ],
)
def test_depth_for(situation: str, rule: FinalityRule, amount: int, depth: int) -> None:
    assert rule.depth_for(amount) == depth


_depths = st.integers(min_value=0, max_value=10_000)
_amounts = st.integers(min_value=0, max_value=10**30)
_tiers = st.lists(st.tuples(_amounts, _depths), max_size=8)


@given(default=_depths, tiers=_tiers, amount=_amounts)
def test_the_depth_is_never_below_the_default(
    default: int, tiers: list[tuple[int, int]], amount: int
) -> None:
    assert FinalityRule(default, tiers).depth_for(amount) >= default


@given(default=_depths, tiers=_tiers, amounts=st.tuples(_amounts, _amounts))
def test_a_larger_amount_is_never_final_sooner(
    default: int, tiers: list[tuple[int, int]], amounts: tuple[int, int]
) -> None:
    smaller, larger = sorted(amounts)
    rule = FinalityRule(default, tiers)
    assert rule.depth_for(smaller) <= rule.depth_for(larger)


@given(default=_depths, amount=_amounts)
def test_with_no_tiers_the_depth_is_the_default(default: int, amount: int) -> None:
    assert FinalityRule(default).depth_for(amount) == default
    assert FinalityRule(default, []).depth_for(amount) == default


@given(
    default=_depths,
    at_least=st.integers(min_value=1, max_value=10**30),
    extra=st.integers(min_value=1, max_value=10_000),
)
def test_a_tier_applies_from_its_amount_exactly(default: int, at_least: int, extra: int) -> None:
    rule = FinalityRule(default, [(at_least, default + extra)])
    assert rule.depth_for(at_least - 1) == default
    assert rule.depth_for(at_least) == default + extra


@given(default=_depths, tiers=_tiers, amount=_amounts)
def test_every_tier_that_applies_is_honoured_and_the_depth_is_one_of_them_or_the_default(
    default: int, tiers: list[tuple[int, int]], amount: int
) -> None:
    depth = FinalityRule(default, tiers).depth_for(amount)
    applying = [d for at_least, d in tiers if amount >= at_least]
    assert all(depth >= d for d in applying)
    assert depth in [default, *applying]


@given(default=_depths, tiers=_tiers.flatmap(lambda t: st.tuples(st.just(t), st.permutations(t))))
def test_the_order_the_tiers_are_listed_in_does_not_matter(
    default: int, tiers: tuple[list[tuple[int, int]], list[tuple[int, int]]]
) -> None:
    listed, shuffled = tiers
    rule, other = FinalityRule(default, listed), FinalityRule(default, shuffled)
    for at_least, _ in listed:
        for amount in (max(at_least - 1, 0), at_least, at_least + 1):
            assert rule.depth_for(amount) == other.depth_for(amount)
