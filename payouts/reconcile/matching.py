"""How one batch's logs match the positions it was sealed with: pure, no I/O.

The batcher pays positions in order and reports a refused transfer (``TransferFailed``) with
its index instead of reverting; the token's ``Transfer`` logs of the transaction, in log
order, must then be exactly the positions that were not refused, each to its recipient and
for its amount. Anything else is a mismatch the operator sees with both lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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


def match_batch(
    positions: Sequence[Position], paid: Sequence[Paid], refused: Sequence[Refused]
) -> Matched | Mismatch:
    """Match a batch's transfers and refusals to its positions (ordered by position)."""
    refused_at = {r.index for r in refused}
    expected = [p for p in positions if p.position not in refused_at]
    transfers = sorted(paid, key=lambda t: t.log_index)
    if len(expected) != len(transfers) or any(
        e.recipient != t.recipient or e.amount != t.amount
        for e, t in zip(expected, transfers, strict=False)
    ):
        return Mismatch(
            [(e.recipient, e.amount) for e in expected],
            [(t.recipient, t.amount) for t in transfers],
        )
    by_index = {p.position: p for p in positions}
    known = [r for r in refused if r.index in by_index]
    rows = [
        Reported(e.position, e.payout_id, e.recipient, e.amount, t.log_index, True)
        for e, t in zip(expected, transfers, strict=True)
    ] + [
        Reported(r.index, by_index[r.index].payout_id, r.recipient, r.amount, r.log_index, False)
        for r in known
    ]
    return Matched(rows, [(r, by_index[r.index].payout_id) for r in known])
