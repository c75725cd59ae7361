"""How one batch's logs match the positions it was sealed with: pure, no I/O.

The batcher pays positions in order and reports a refused transfer (``TransferFailed``) with
its index instead of reverting; the token's ``Transfer`` logs of the transaction, in log
order, must then be exactly the positions that were not refused, each to its recipient and
for its amount. Anything else is a mismatch the operator sees with both lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Position:
    """What a batch was sealed with at one position."""

    position: int
    payout_id: int
    recipient: str
    amount: int


@dataclass(frozen=True)
class Paid:
    """A token transfer seen in the batch's transaction."""

    recipient: str
    amount: int
    log_index: int


@dataclass(frozen=True)
class Refused:
    """A position the batcher reported the token refused."""

    index: int
    recipient: str
    amount: int
    log_index: int


@dataclass(frozen=True)
class Reported:
    """One row the reconciler keeps: a position as the chain reported it."""

    position: int
    payout_id: int
    recipient: str
    amount: int
    log_index: int
    succeeded: bool


@dataclass(frozen=True)
class Matched:
    rows: list[Reported]
    refused: list[tuple[Refused, int]]  # each refusal with the payout it concerns


@dataclass(frozen=True)
class Mismatch:
    expected: list[tuple[str, int]]
    seen: list[tuple[str, int]]
    refusals: list[tuple[int, str, int]] = field(default_factory=list)  # as the chain said


def match_batch(
    positions: Sequence[Position], paid: Sequence[Paid], refused: Sequence[Refused]
) -> Matched | Mismatch:
    """Match a batch's transfers and refusals to its positions (ordered by position).

    Each refusal must name a position of the batch once, with that position's recipient and
    amount; the transfers, in log order, must be the other positions exactly."""
    by_index = {p.position: p for p in positions}
    refused_at = {r.index for r in refused}
    expected = [p for p in positions if p.position not in refused_at]
    transfers = sorted(paid, key=lambda t: t.log_index)
    refusals_fit = len(refused_at) == len(refused) and all(
        r.index in by_index
        and (by_index[r.index].recipient, by_index[r.index].amount) == (r.recipient, r.amount)
        for r in refused
    )
    transfers_fit = len(expected) == len(transfers) and all(
        e.recipient == t.recipient and e.amount == t.amount
        for e, t in zip(expected, transfers, strict=True)
    )
    if not (refusals_fit and transfers_fit):
        return Mismatch(
            [(e.recipient, e.amount) for e in expected],
            [(t.recipient, t.amount) for t in transfers],
            [(r.index, r.recipient, r.amount) for r in refused],
        )
    rows = [
        Reported(e.position, e.payout_id, e.recipient, e.amount, t.log_index, True)
        for e, t in zip(expected, transfers, strict=True)
    ] + [
        Reported(r.index, by_index[r.index].payout_id, r.recipient, r.amount, r.log_index, False)
        for r in refused
    ]
    return Matched(rows, [(r, by_index[r.index].payout_id) for r in refused])
