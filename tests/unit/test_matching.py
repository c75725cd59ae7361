"""How one batch's logs match the positions it was sealed with.

Specified here: the token's ``Transfer`` logs of the batch's transaction, taken in log order
whatever order they are handed over in, must be exactly the positions the batcher did not
report refused, each to its recipient and for its amount. Then every position gets one
reported row (succeeded or refused) carrying its payout, and every refusal is named with the
payout it concerns. Anything else (a transfer missing or extra, a wrong amount or recipient,
positions paid out of order) is a mismatch that shows both lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from payouts.reconcile.matching import (
    Matched,
    Mismatch,
    Paid,
    Position,
    Refused,
    Reported,
    match_batch,
)

ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
CAROL = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
DAVE = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"

USDC = 10**6
BATCH = [
    Position(0, 101, ALICE, 5 * USDC),
    Position(1, 102, BOB, 7 * USDC),
    Position(2, 103, CAROL, 11 * USDC),
]


def _pairs(items: Sequence[Position | Paid]) -> list[tuple[str, int]]:
    return [(i.recipient, i.amount) for i in items]


def _in_log_order(paid: Sequence[Paid]) -> list[Paid]:
    return sorted(paid, key=lambda t: t.log_index)


def _matched(result: Matched | Mismatch) -> Matched:
    assert isinstance(result, Matched), result
    return result


# --- examples -------------------------------------------------------------------------------


def test_a_batch_paid_in_full_and_in_order_matches_with_one_succeeded_row_per_position() -> None:
    paid = [Paid(ALICE, 5 * USDC, 3), Paid(BOB, 7 * USDC, 4), Paid(CAROL, 11 * USDC, 5)]
    assert match_batch(BATCH, paid, []) == Matched(
        rows=[
            Reported(0, 101, ALICE, 5 * USDC, 3, True),
            Reported(1, 102, BOB, 7 * USDC, 4, True),
            Reported(2, 103, CAROL, 11 * USDC, 5, True),
        ],
        refused=[],
    )


def test_a_position_refused_in_the_middle_is_a_failed_row_and_named_with_its_payout() -> None:
    refusal = Refused(1, BOB, 7 * USDC, 4)
    paid = [Paid(ALICE, 5 * USDC, 3), Paid(CAROL, 11 * USDC, 5)]
    assert match_batch(BATCH, paid, [refusal]) == Matched(
        rows=[
            Reported(0, 101, ALICE, 5 * USDC, 3, True),
            Reported(2, 103, CAROL, 11 * USDC, 5, True),
            Reported(1, 102, BOB, 7 * USDC, 4, False),
        ],
        refused=[(refusal, 102)],
    )


def test_every_position_refused_and_nothing_paid_still_matches() -> None:
    refusals = [Refused(p.position, p.recipient, p.amount, 10 + p.position) for p in BATCH]
    result = _matched(match_batch(BATCH, [], refusals))
    assert [(r.position, r.succeeded) for r in result.rows] == [(0, False), (1, False), (2, False)]
    assert [payout for _, payout in result.refused] == [101, 102, 103]


def test_an_empty_batch_with_no_logs_matches_with_no_rows() -> None:
    assert match_batch([], [], []) == Matched(rows=[], refused=[])


def test_transfers_handed_over_out_of_log_order_are_taken_in_log_order() -> None:
    paid = [Paid(CAROL, 11 * USDC, 9), Paid(ALICE, 5 * USDC, 2), Paid(BOB, 7 * USDC, 6)]
    result = _matched(match_batch(BATCH, paid, []))
    assert [(r.position, r.payout_id, r.log_index) for r in result.rows] == [
        (0, 101, 2),
        (1, 102, 6),
        (2, 103, 9),
    ]


@pytest.mark.parametrize(
    ("situation", "paid", "refused"),
    [
        (
            "a transfer is missing",
            [Paid(ALICE, 5 * USDC, 3), Paid(CAROL, 11 * USDC, 5)],
            [],
        ),
        (
            "an extra transfer",
            [
                Paid(ALICE, 5 * USDC, 3),
                Paid(BOB, 7 * USDC, 4),
                Paid(CAROL, 11 * USDC, 5),
                Paid(DAVE, 1 * USDC, 6),
            ],
            [],
        ),
        (
            "a refused position was paid as well",
            [Paid(ALICE, 5 * USDC, 3), Paid(BOB, 7 * USDC, 4), Paid(CAROL, 11 * USDC, 5)],
            [Refused(1, BOB, 7 * USDC, 6)],
        ),
        (
            "a wrong amount",
            [Paid(ALICE, 5 * USDC, 3), Paid(BOB, 7 * USDC - 1, 4), Paid(CAROL, 11 * USDC, 5)],
            [],
        ),
        (
            "a wrong recipient",
            [Paid(ALICE, 5 * USDC, 3), Paid(DAVE, 7 * USDC, 4), Paid(CAROL, 11 * USDC, 5)],
            [],
        ),
        (
            "the right transfers in the wrong order",
            [Paid(ALICE, 5 * USDC, 3), Paid(CAROL, 11 * USDC, 4), Paid(BOB, 7 * USDC, 5)],
            [],
        ),
        ("nothing at all", [], []),
    ],
)
def test_anything_but_the_expected_transfers_is_a_mismatch_with_both_lists(
    situation: str, paid: list[Paid], refused: list[Refused]
) -> None:
    refused_at = {r.index for r in refused}
    assert match_batch(BATCH, paid, refused) == Mismatch(
        expected=_pairs([p for p in BATCH if p.position not in refused_at]),
        seen=_pairs(_in_log_order(paid)),
        refusals=[(r.index, r.recipient, r.amount) for r in refused],
    )


@pytest.mark.parametrize(
    ("situation", "refusals"),
    [
        ("a refusal of a position the batch does not have", [Refused(7, DAVE, 1 * USDC, 9)]),
        ("a refusal naming another recipient", [Refused(2, DAVE, 11 * USDC, 5)]),
        ("a refusal for another amount", [Refused(2, CAROL, 1 * USDC, 5)]),
        (
            "the same position refused twice",
            [Refused(2, CAROL, 11 * USDC, 5), Refused(2, CAROL, 11 * USDC, 6)],
        ),
    ],
)
def test_a_refusal_that_does_not_describe_the_sealed_batch_is_a_mismatch(
    situation: str, refusals: list[Refused]
) -> None:
    refused_at = _at(refusals)
    paid = [Paid(p.recipient, p.amount, p.position) for p in BATCH if p.position not in refused_at]
    assert isinstance(match_batch(BATCH, paid, refusals), Mismatch)


# --- properties -----------------------------------------------------------------------------

# A few recipients, so that a batch may pay one of them more than once.
_recipients = st.sampled_from([ALICE, BOB, CAROL, DAVE])
_amounts = st.integers(min_value=1, max_value=10**30)


@st.composite
def _batches(draw: st.DrawFn, min_size: int = 0) -> list[Position]:
    size = draw(st.integers(min_value=min_size, max_value=30))
    payout_ids = draw(
        st.lists(st.integers(1, 2**63 - 1), min_size=size, max_size=size, unique=True)
    )
    return [
        Position(position, payout_id, draw(_recipients), draw(_amounts))
        for position, payout_id in enumerate(payout_ids)
    ]


@st.composite
def _executions(
    draw: st.DrawFn, min_size: int = 0, min_paid: int = 0
) -> tuple[list[Position], list[Paid], list[Refused]]:
    """A batch and the logs of its transaction: each position in order either a transfer or a
    refusal, at increasing log indices; the transfers handed over in any order."""
    positions = draw(_batches(min_size=max(min_size, min_paid)))
    how_many = draw(st.integers(min_value=0, max_value=len(positions) - min_paid))
    refused_at = set(draw(st.permutations(range(len(positions))))[:how_many])
    log_index = draw(st.integers(min_value=0, max_value=1_000))
    paid: list[Paid] = []
    refused: list[Refused] = []
    for p in positions:
        log_index += draw(st.integers(min_value=1, max_value=3))  # other logs in between
        if p.position in refused_at:
            refused.append(Refused(p.position, p.recipient, p.amount, log_index))
        else:
            paid.append(Paid(p.recipient, p.amount, log_index))
    return positions, draw(st.permutations(paid)), draw(st.permutations(refused))


@given(execution=_executions())
def test_the_chain_reporting_exactly_the_unrefused_positions_always_matches(
    execution: tuple[list[Position], list[Paid], list[Refused]],
) -> None:
    positions, paid, refused = execution
    result = _matched(match_batch(positions, paid, refused))
    refused_at = {r.index for r in refused}

    assert len(result.rows) == len(positions)
    assert {r.position: r.succeeded for r in result.rows} == {
        p.position: p.position not in refused_at for p in positions
    }
    assert sorted(r.payout_id for r in result.rows) == sorted(p.payout_id for p in positions)
    assert sum(r.amount for r in result.rows) == sum(p.amount for p in positions)
    by_position = {p.position: p for p in positions}
    for row in result.rows:
        sealed = by_position[row.position]
        assert (row.payout_id, row.recipient, row.amount) == (
            sealed.payout_id,
            sealed.recipient,
            sealed.amount,
        )
    assert sorted(r.log_index for r in result.rows if r.succeeded) == sorted(
        t.log_index for t in paid
    )
    assert sorted((r.index, payout) for r, payout in result.refused) == sorted(
        (r.index, by_position[r.index].payout_id) for r in refused
    )


@given(execution=_executions())
def test_successful_rows_follow_the_positions_in_log_order(
    execution: tuple[list[Position], list[Paid], list[Refused]],
) -> None:
    positions, paid, refused = execution
    result = _matched(match_batch(positions, paid, refused))
    succeeded = [r for r in result.rows if r.succeeded]
    assert [r.position for r in succeeded] == sorted(r.position for r in succeeded)
    assert [r.log_index for r in succeeded] == sorted(t.log_index for t in paid)


@given(execution=_executions(min_paid=1), data=st.data())
def test_a_transfer_dropped_is_a_mismatch(
    execution: tuple[list[Position], list[Paid], list[Refused]], data: st.DataObject
) -> None:
    positions, paid, refused = execution
    dropped = data.draw(st.integers(min_value=0, max_value=len(paid) - 1))
    result = match_batch(positions, paid[:dropped] + paid[dropped + 1 :], refused)
    assert isinstance(result, Mismatch)
    assert len(result.seen) == len(result.expected) - 1


@given(execution=_executions(), extra=st.builds(Paid, _recipients, _amounts, st.integers()))
def test_a_transfer_added_is_a_mismatch(
    execution: tuple[list[Position], list[Paid], list[Refused]], extra: Paid
) -> None:
    positions, paid, refused = execution
    assume(extra.log_index not in {t.log_index for t in paid})
    result = match_batch(positions, [*paid, extra], refused)
    assert isinstance(result, Mismatch)
    assert len(result.seen) == len(result.expected) + 1


@given(
    execution=_executions(min_paid=1),
    data=st.data(),
    delta=st.integers(min_value=-(10**30), max_value=10**30).filter(lambda d: d != 0),
)
def test_an_amount_changed_by_any_nonzero_delta_is_a_mismatch(
    execution: tuple[list[Position], list[Paid], list[Refused]],
    data: st.DataObject,
    delta: int,
) -> None:
    positions, paid, refused = execution
    i = data.draw(st.integers(min_value=0, max_value=len(paid) - 1))
    changed = [*paid]
    changed[i] = replace(paid[i], amount=paid[i].amount + delta)
    result = match_batch(positions, changed, refused)
    assert isinstance(result, Mismatch)
    assert result.expected == _pairs([p for p in positions if p.position not in _at(refused)])
    assert result.seen == _pairs(_in_log_order(changed))


@given(execution=_executions(min_paid=1), data=st.data(), other=_recipients)
def test_a_transfer_to_another_recipient_is_a_mismatch(
    execution: tuple[list[Position], list[Paid], list[Refused]],
    data: st.DataObject,
    other: str,
) -> None:
    positions, paid, refused = execution
    i = data.draw(st.integers(min_value=0, max_value=len(paid) - 1))
    assume(other != paid[i].recipient)
    changed = [*paid]
    changed[i] = replace(paid[i], recipient=other)
    assert isinstance(match_batch(positions, changed, refused), Mismatch)


@given(execution=_executions(min_paid=2), data=st.data())
def test_two_recipients_amounts_swapped_is_a_mismatch(
    execution: tuple[list[Position], list[Paid], list[Refused]], data: st.DataObject
) -> None:
    positions, paid, refused = execution
    i, j = data.draw(
        st.lists(
            st.integers(min_value=0, max_value=len(paid) - 1), min_size=2, max_size=2, unique=True
        )
    )
    # the swap changes who gets what only between distinct recipients with distinct amounts
    assume(paid[i].recipient != paid[j].recipient and paid[i].amount != paid[j].amount)
    swapped = [*paid]
    swapped[i] = replace(paid[i], amount=paid[j].amount)
    swapped[j] = replace(paid[j], amount=paid[i].amount)
    assert sum(t.amount for t in swapped) == sum(t.amount for t in paid)  # the total hides it
    assert isinstance(match_batch(positions, swapped, refused), Mismatch)


@given(execution=_executions(min_paid=2), data=st.data())
def test_two_transfers_in_each_others_log_places_is_a_mismatch(
    execution: tuple[list[Position], list[Paid], list[Refused]], data: st.DataObject
) -> None:
    """The batcher pays in position order: the right transfers in another order are not it."""
    positions, paid, refused = execution
    i, j = data.draw(
        st.lists(
            st.integers(min_value=0, max_value=len(paid) - 1), min_size=2, max_size=2, unique=True
        )
    )
    assume((paid[i].recipient, paid[i].amount) != (paid[j].recipient, paid[j].amount))
    swapped = [*paid]
    swapped[i] = replace(paid[i], log_index=paid[j].log_index)
    swapped[j] = replace(paid[j], log_index=paid[i].log_index)
    assert isinstance(match_batch(positions, swapped, refused), Mismatch)


@given(execution=_executions(min_paid=1), data=st.data())
def test_a_paid_position_reported_refused_as_well_is_a_mismatch(
    execution: tuple[list[Position], list[Paid], list[Refused]], data: st.DataObject
) -> None:
    positions, paid, refused = execution
    refused_at = _at(refused)
    unrefused = [p for p in positions if p.position not in refused_at]
    p = data.draw(st.sampled_from(unrefused))
    extra = Refused(p.position, p.recipient, p.amount, max(t.log_index for t in paid) + 1)
    assert isinstance(match_batch(positions, paid, [*refused, extra]), Mismatch)


def _at(refused: Sequence[Refused]) -> set[int]:
    return {r.index for r in refused}
