"""The state machines of credits, payouts, batches and transaction attempts.

Each lifecycle is a table of one-way moves. ``move`` is the only way a state changes: it
updates the rows that are in a state the move is allowed from, and writes one audit row per
changed row in the same statement, so the change and its record commit or vanish together.
Rows already in the target state or in a state the move is not allowed from are left alone;
``strict=True`` turns that into an ``IllegalTransition``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.errors import IllegalTransition


@dataclass(frozen=True)
class Lifecycle:
    entity: str
    table: str
    moves: Mapping[str, frozenset[str]]
    final: frozenset[str]

    def allows(self, from_state: str, to_state: str) -> bool:
        return to_state in self.moves.get(from_state, frozenset())

    def sources(self, to_state: str) -> list[str]:
        return sorted(s for s, targets in self.moves.items() if to_state in targets)

    def check(self, from_state: str, to_state: str) -> None:
        if not self.allows(from_state, to_state):
            raise IllegalTransition(f"{self.entity}: {from_state} -> {to_state} is not allowed")


def _lifecycle(entity: str, table: str, moves: dict[str, set[str]], final: set[str]) -> Lifecycle:
    for state in final:
        if moves.get(state):
            raise ValueError(f"{entity}: final state {state} must have no way out")
    frozen = {k: frozenset(v) for k, v in moves.items()}
    return Lifecycle(entity, table, frozen, frozenset(final))


CREDIT = _lifecycle(
    "credit",
    "credits",
    {
        "accrued": {"rolled_up", "held"},
        "rolled_up": {"paid", "accrued"},  # back to accrued only when its payout is cancelled
        "held": {"accrued", "voided"},
    },
    {"paid", "voided"},
)

PAYOUT = _lifecycle(
    "payout",
    "payouts",
    {
        "pending": {"batched", "cancelled"},
        "batched": {"submitted", "pending"},
        "submitted": {"confirmed", "pending"},
        # back to submitted when a reorg drops its block; back to pending when, at finality,
        # the token turned out to have refused the transfer
        "confirmed": {"finalized", "submitted", "pending"},
    },
    {"finalized", "cancelled"},
)

BATCH = _lifecycle(
    "batch",
    "batches",
    {
        "open": {"sealed"},
        "sealed": {"broadcast", "failed"},
        "broadcast": {"included", "failed"},
        "included": {"confirmed", "broadcast"},
        "confirmed": {"finalized", "broadcast"},
    },
    {"finalized", "failed"},
)

TX_ATTEMPT = _lifecycle(
    "tx_attempt",
    "tx_attempts",
    {
        "signed": {"broadcast", "replaced", "failed"},
        "broadcast": {"mined", "replaced", "failed"},
        "mined": {"broadcast"},  # reorged out
    },
    {"replaced", "failed"},
)

LIFECYCLES = {lc.entity: lc for lc in (CREDIT, PAYOUT, BATCH, TX_ATTEMPT)}


def move_where(
    session: Session,
    lifecycle: Lifecycle,
    to_state: str,
    *,
    where: str,
    params: Mapping[str, Any] | None = None,
    cause: str,
    actor: str,
    from_states: Sequence[str] | None = None,
) -> list[int]:
    """Move every row of ``lifecycle.table`` (aliased ``t``) matching ``where`` to ``to_state``.

    ``where`` is static SQL written in this package with bound parameters. Returns the ids of
    the rows that moved.
    """
    sources = lifecycle.sources(to_state)
    if from_states is not None:
        sources = [s for s in sources if s in from_states]
    if not sources:
        raise IllegalTransition(f"{lifecycle.entity}: nothing may move to {to_state}")
    sql = text(
        f"""
        WITH prev AS (
            SELECT t.id, t.state FROM {lifecycle.table} t
             WHERE ({where}) AND t.state = ANY(:_sources)
             ORDER BY t.id FOR UPDATE
        ), moved AS (
            UPDATE {lifecycle.table} t SET state = :_to FROM prev
             WHERE t.id = prev.id RETURNING t.id, prev.state AS from_state
        )
        INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)
        SELECT :_entity, id, from_state, :_to, :_cause, :_actor FROM moved
        RETURNING entity_id
        """
    )
    bound = dict(params or {})
    bound.update(
        _sources=sources, _to=to_state, _entity=lifecycle.entity, _cause=cause, _actor=actor
    )
    return [row[0] for row in session.execute(sql, bound)]


def move(
    session: Session,
    lifecycle: Lifecycle,
    ids: Sequence[int],
    to_state: str,
    *,
    cause: str,
    actor: str,
    from_states: Sequence[str] | None = None,
    strict: bool = False,
) -> list[int]:
    """Move the rows with ``ids`` to ``to_state``; see ``move_where``."""
    if not ids:
        return []
    moved = move_where(
        session,
        lifecycle,
        to_state,
        where="t.id = ANY(:_ids)",
        params={"_ids": list(ids)},
        cause=cause,
        actor=actor,
        from_states=from_states,
    )
    if strict and len(moved) != len(set(ids)):
        stuck = sorted(set(ids) - set(moved))
        states = session.execute(
            text(f"SELECT id, state FROM {lifecycle.table} WHERE id = ANY(:ids)"), {"ids": stuck}
        ).all()
        detail = ", ".join(f"{row.id}:{row.state}" for row in states) or "missing rows"
        raise IllegalTransition(f"{lifecycle.entity} -> {to_state} refused for {detail}")
    return moved


def move_batch_payouts(
    session: Session,
    batch_id: int,
    to_state: str,
    *,
    cause: str,
    actor: str,
    from_states: Sequence[str],
) -> list[int]:
    """Move the payouts of one batch that are in ``from_states``; see ``move_where``."""
    return move_where(
        session,
        PAYOUT,
        to_state,
        where="t.batch_id = :_batch",
        params={"_batch": batch_id},
        cause=cause,
        actor=actor,
        from_states=from_states,
    )
