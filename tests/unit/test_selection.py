"""Which pending payouts go into the next batch: fair between marketplaces, skip never stall.

Properties for any mix of payouts, funds and batch sizes: the choice never exceeds the funds
or the size; no payout that fits is left behind one that does not; the fair order takes
every marketplace in turn and keeps each one's payouts oldest first.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from payouts.settlement.risk import Limit, Usage
from payouts.settlement.selection import Candidate, fair_order, select, shortfall


def _c(payout_id: int, marketplace_id: int, amount: int) -> Candidate:
    return Candidate(payout_id, marketplace_id, payout_id, f"0x{payout_id:040x}", amount)


candidates = st.lists(
    st.builds(
        _c,
        payout_id=st.integers(1, 10**6),
        marketplace_id=st.integers(1, 4),
        amount=st.integers(1, 10**6),
    ),
    max_size=60,
    unique_by=lambda c: c.payout_id,
)


def test_a_payout_too_large_is_passed_over_and_the_ones_behind_it_go() -> None:
    queue = [_c(1, 1, 2_000), _c(2, 2, 300), _c(3, 2, 400)]
    picked = select(queue, funds=1_000, size=10)
    assert [c.payout_id for c in picked.chosen] == [2, 3]
    assert [c.payout_id for c in picked.passed_over] == [1]
    assert shortfall(queue[:1], 1_000 - 700) == 1_700


def test_a_backlog_of_one_marketplace_takes_turns_with_the_others() -> None:
    backlog = [_c(i, 1, 10) for i in range(1, 8)]
    other = [_c(100, 2, 10), _c(101, 2, 10)]
    order = [c.payout_id for c in fair_order(backlog + other)]
    assert order[:4] == [1, 100, 2, 101]
    assert order[4:] == [3, 4, 5, 6, 7]


@given(queue=candidates, funds=st.integers(0, 5 * 10**6), size=st.integers(0, 30))
def test_the_choice_never_exceeds_the_funds_or_the_size(
    queue: list[Candidate], funds: int, size: int
) -> None:
    picked = select(queue, funds=funds, size=size)
    assert sum(c.amount for c in picked.chosen) <= funds
    assert len(picked.chosen) <= size


@given(queue=candidates, funds=st.integers(0, 5 * 10**6), size=st.integers(0, 30))
def test_no_payout_that_fits_is_left_behind_one_that_does_not(
    queue: list[Candidate], funds: int, size: int
) -> None:
    picked = select(queue, funds=funds, size=size)
    chosen = {c.payout_id for c in picked.chosen}
    spent = 0
    for candidate in queue:
        if len([c for c in queue[: queue.index(candidate)] if c.payout_id in chosen]) >= size:
            break  # the batch was full before this one's turn
        if candidate.payout_id in chosen:
            spent += candidate.amount
        else:
            assert candidate.amount > funds - spent, "a payout that fit was left behind"
            assert candidate in picked.passed_over


@given(queue=candidates, funds=st.integers(0, 5 * 10**6), size=st.integers(0, 30))
def test_the_choice_keeps_the_queue_order(queue: list[Candidate], funds: int, size: int) -> None:
    picked = select(queue, funds=funds, size=size)
    positions = [queue.index(c) for c in picked.chosen]
    assert positions == sorted(positions)


@given(queue=candidates)
def test_the_fair_order_is_every_marketplace_in_turn_oldest_first(
    queue: list[Candidate],
) -> None:
    order = fair_order(queue)
    assert sorted(order, key=lambda c: c.payout_id) == sorted(queue, key=lambda c: c.payout_id)
    for marketplace in {c.marketplace_id for c in queue}:
        own = [c.payout_id for c in order if c.marketplace_id == marketplace]
        assert own == sorted(own)
    # In any prefix, no marketplace is more than one turn ahead of another that still waits.
    seen: Counter[int] = Counter()
    total = Counter(c.marketplace_id for c in queue)
    for c in order:
        seen[c.marketplace_id] += 1
        for other, count in total.items():
            if seen[other] < count:
                assert seen[c.marketplace_id] <= seen[other] + 1


limits = st.lists(
    st.builds(
        Limit,
        scope=st.sampled_from(["creator", "marketplace", "asset"]),
        window=st.sampled_from(["hour", "day"]),
        measure=st.sampled_from(["amount", "count"]),
        ceiling=st.integers(0, 3 * 10**6),
    ),
    max_size=4,
)


def _usage_after(queue: list[Candidate], chosen: list[Candidate]) -> Usage:
    usage = Usage()
    for c in chosen:
        usage.add(c)
    return usage


@given(queue=candidates, funds=st.integers(0, 5 * 10**6), size=st.integers(0, 30), rules=limits)
def test_no_limit_is_exceeded_by_what_is_chosen(
    queue: list[Candidate], funds: int, size: int, rules: list[Limit]
) -> None:
    picked = select(queue, funds=funds, size=size, limits=rules)
    usage = _usage_after(queue, picked.chosen)
    for limit in rules:
        for c in picked.chosen:
            owner = {"creator": c.creator_id, "marketplace": c.marketplace_id, "asset": 0}
            key = (limit.scope, limit.window, limit.measure, owner[limit.scope])
            assert usage.used[key] <= limit.ceiling, limit.rule


@given(queue=candidates, funds=st.integers(0, 5 * 10**6), size=st.integers(0, 30), rules=limits)
def test_with_limits_no_payout_that_fits_is_left_behind_and_none_is_dropped(
    queue: list[Candidate], funds: int, size: int, rules: list[Limit]
) -> None:
    picked = select(queue, funds=funds, size=size, limits=rules)
    held = {t.candidate.payout_id for t in picked.held}
    passed = {c.payout_id for c in picked.passed_over}
    chosen = {c.payout_id for c in picked.chosen}
    assert not held & passed
    assert not held & chosen
    assert not passed & chosen
    spent, taken = 0, 0
    for c in queue:
        if taken >= size:
            break
        if c.payout_id in chosen:
            spent, taken = spent + c.amount, taken + 1
        elif c.payout_id in passed:
            assert c.amount > funds - spent, "a payout that fit was left behind"
        else:
            assert c.payout_id in held, "a payout looked at was neither chosen, passed nor held"


def test_a_payout_over_a_creators_hourly_amount_is_held_with_its_figures() -> None:
    hourly = Limit("creator", "hour", "amount", 1_000)
    used = Usage()
    used.add(_c(9, 1, 700))  # paid earlier this hour to creator 9
    queue = [Candidate(10, 1, 9, "0x" + "0" * 39 + "a", 400), _c(11, 1, 300)]
    picked = select(queue, funds=10**6, size=10, limits=[hourly], usage=used)
    assert [c.payout_id for c in picked.chosen] == [11]
    [trip] = picked.held
    assert trip.figures == {
        "rule": "velocity:creator:hour:amount",
        "ceiling": "1000",
        "used": "700",
        "with_this_payout": "1100",
        "amount": "400",
    }
    approved = select(
        queue, funds=10**6, size=10, limits=[hourly], usage=used, approved=frozenset({10})
    )
    assert [c.payout_id for c in approved.chosen] == [10, 11]
