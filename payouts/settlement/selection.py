"""Which pending payouts go into the next batch: pure, no I/O.

Fair between tenants: the queue takes marketplaces in turn (the oldest payout of each, then
the second oldest of each, ...), so one marketplace's backlog cannot starve another's.

Skip, never stall: a payout the wallet cannot pay now is passed over and waits for funds; the
ones behind it that fit still go. A payout that would take a velocity limit or an outflow
ceiling past it is held with the rule and its figures (``risk``). Nothing is dropped: what is
passed over stays pending, what is held waits for an operator, and the sealing step says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from payouts.settlement.risk import Limit, Tripped, Usage, tripped


@dataclass(frozen=True)
class Candidate:
    """A pending payout that may go now."""

    payout_id: int
    marketplace_id: int
    creator_id: int
    recipient: str
    amount: int


def fair_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Marketplaces in turn, oldest payout first within each: the k-th payout of every
    marketplace comes before the (k+1)-th of any."""
    queues: dict[int, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: c.payout_id):
        queues.setdefault(c.marketplace_id, []).append(c)
    ranked = sorted(
        (turn, c.payout_id, c) for queue in queues.values() for turn, c in enumerate(queue)
    )
    return [c for _, _, c in ranked]


@dataclass(frozen=True)
class Selection:
    chosen: list[Candidate]  # in queue order, together at most the funds, within every limit
    passed_over: list[Candidate]  # looked at, but more than the funds left at their turn
    held: list[Tripped] = field(default_factory=list)  # a limit would be exceeded
    usage: Usage = field(default_factory=Usage)  # with the chosen ones counted


def select(
    queue: Sequence[Candidate],
    *,
    funds: int,
    size: int,
    limits: Sequence[Limit] = (),
    usage: Usage | None = None,
    approved: frozenset[int] = frozenset(),
) -> Selection:
    """Take payouts in queue order while fewer than ``size`` are chosen: hold one that would
    exceed a limit (unless an operator approved it), pass over one that does not fit what is
    left of ``funds``, choose the others."""
    used = usage.copy() if usage is not None else Usage()
    chosen: list[Candidate] = []
    passed_over: list[Candidate] = []
    held: list[Tripped] = []
    left = funds
    for candidate in queue:
        if len(chosen) >= size:
            break
        trip = None if candidate.payout_id in approved else tripped(candidate, limits, used)
        if trip is not None:
            held.append(trip)
        elif candidate.amount <= left:
            chosen.append(candidate)
            left -= candidate.amount
            used.add(candidate)
        else:
            passed_over.append(candidate)
    return Selection(chosen, passed_over, held, used)


def shortfall(queue: Sequence[Candidate], funds: int) -> int:
    """How much the wallet lacks to pay every payout still waiting (0 when it can)."""
    return max(0, sum(c.amount for c in queue) - funds)
