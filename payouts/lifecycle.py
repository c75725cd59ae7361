"""The state machines, and the only way any state changes.

Each lifecycle is a table of one-way moves over a state enum (``payouts.states``). The
functions below are the single write path for the state of a credit, payout, batch,
transaction attempt, creator or exception: one row or a set, they update the rows that are in
a state the move is allowed from and write one audit row per changed row in the same
statement, and, for the moves a marketplace cares about (``events.MOVES``), its event row:
the change, its record and its event commit or vanish together. Nothing else in the code
may write a ``state`` column or a row of ``transitions`` (a test greps for it); this is where
events and metrics of a change are produced.

A credit's lifecycle is derived (``Lifecycle.derived``): a credit row is written once, and
``credit_states`` (a view) reads its state from the roll-up run that claimed it and that run's
payout for its creator, so nothing moves a credit; the moves below say which states follow
which, and a move of it writes nothing (finalizing a payout is what makes its credits paid).

Rows already in the target state, or in a state the move is not allowed from, are left alone;
``strict=True`` turns that into an ``IllegalTransition``. A move may set other columns of the
same rows in the same UPDATE (``also``: column -> SQL expression over bound parameters), so a
payout leaves its batch in the statement that moves it back to pending.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import events
from payouts.errors import IllegalTransition
from payouts.states import (
    BatchState,
    CreatorState,
    CreditState,
    ExceptionState,
    HoldState,
    PayoutState,
    State,
    TxAttemptState,
)


@dataclass(frozen=True)
class Lifecycle:
    entity: str
    table: str
    states: type[State]
    initial: State
    moves: Mapping[State, frozenset[State]]
    final: frozenset[State]
    derived: bool = False  # read from a view; no row of it is ever moved

    def allows(self, from_state: str, to_state: str) -> bool:
        if from_state not in self.states.__members__.values():
            return False
        return to_state in self.moves.get(self.states(from_state), frozenset())

    def sources(self, to_state: State) -> list[State]:
        return sorted(s for s, targets in self.moves.items() if to_state in targets)

    def check(self, from_state: str, to_state: str) -> None:
        if not self.allows(from_state, to_state):
            raise IllegalTransition(f"{self.entity}: {from_state} -> {to_state} is not allowed")


def _lifecycle(
    entity: str,
    table: str,
    states: type[State],
    initial: State,
    moves: Mapping[State, Iterable[State]],
    final: Iterable[State],
    *,
    derived: bool = False,
) -> Lifecycle:
    finals = frozenset(final)
    for state in finals:
        if moves.get(state):
            raise ValueError(f"{entity}: final state {state} must have no way out")
    named = {initial, *finals, *moves, *(t for ts in moves.values() for t in ts)}
    if named != set(states):
        raise ValueError(f"{entity}: the moves name {sorted(named)}, the enum {sorted(states)}")
    frozen = {k: frozenset(v) for k, v in moves.items()}
    return Lifecycle(entity, table, states, initial, frozen, finals, derived)


C, P, B, T = CreditState, PayoutState, BatchState, TxAttemptState

CREDIT = _lifecycle(
    "credit",
    "credit_states",
    CreditState,
    C.ACCRUED,
    {
        # A run claims it: into its creator's payout, or carried when the run paid them
        # nothing (below the minimum, no address, on hold).
        C.ACCRUED: {C.ROLLED_UP, C.CARRIED},
        C.ROLLED_UP: {C.PAID, C.CARRIED},  # carried when its payout is cancelled into carry
    },
    {C.PAID, C.CARRIED},
    derived=True,
)

PAYOUT = _lifecycle(
    "payout",
    "payouts",
    PayoutState,
    P.PENDING,
    {
        P.PENDING: {P.BATCHED, P.CANCELLED, P.HELD, P.CLAIMABLE},
        P.HELD: {P.PENDING, P.CANCELLED},  # released, or rejected in review
        P.BATCHED: {P.SUBMITTED, P.PENDING},
        P.SUBMITTED: {P.CONFIRMED, P.PENDING},
        # back to submitted when a reorg drops its block; back to pending when, at finality,
        # the token turned out to have refused the transfer
        P.CONFIRMED: {P.FINALIZED, P.SUBMITTED, P.PENDING},
        # By claim instead of a batch: never back to pending, so push and pull never cover
        # the same cents; back to claimable when a reorg removes the Claimed log covering it.
        P.CLAIMABLE: {P.CLAIMED},
        P.CLAIMED: {P.FINALIZED, P.CLAIMABLE},
    },
    {P.FINALIZED, P.CANCELLED},
)

BATCH = _lifecycle(
    "batch",
    "batches",
    BatchState,
    B.OPEN,
    {
        B.OPEN: {B.SEALED},
        B.SEALED: {B.BROADCAST, B.FAILED},
        B.BROADCAST: {B.INCLUDED, B.FAILED},
        B.INCLUDED: {B.CONFIRMED, B.BROADCAST},
        B.CONFIRMED: {B.FINALIZED, B.BROADCAST},
    },
    {B.FINALIZED, B.FAILED},
)

TX_ATTEMPT = _lifecycle(
    "tx_attempt",
    "tx_attempts",
    TxAttemptState,
    T.SIGNED,
    {
        T.SIGNED: {T.BROADCAST, T.REPLACED, T.FAILED},
        T.BROADCAST: {T.MINED, T.REPLACED, T.FAILED},
        T.MINED: {T.BROADCAST},  # reorged out
    },
    {T.REPLACED, T.FAILED},
)

# A hold keeps a creator's payouts out of batches until an operator releases it: no final
# state, a creator may be held and released any number of times.
CREATOR = _lifecycle(
    "creator",
    "creators",
    CreatorState,
    CreatorState.ACTIVE,
    {
        CreatorState.ACTIVE: {CreatorState.HELD},
        CreatorState.HELD: {CreatorState.ACTIVE},
    },
    (),
)

EXCEPTION = _lifecycle(
    "exception",
    "exceptions",
    ExceptionState,
    ExceptionState.OPEN,
    {ExceptionState.OPEN: {ExceptionState.RESOLVED}},
    {ExceptionState.RESOLVED},
)

HOLD = _lifecycle(
    "hold",
    "holds",
    HoldState,
    HoldState.ACTIVE,
    {HoldState.ACTIVE: {HoldState.RELEASED, HoldState.REJECTED}},
    {HoldState.RELEASED, HoldState.REJECTED},
)

# The credits (aliased ``c``) no roll-up run has claimed yet: the runs' ranges touch from the
# first, so these are the credits from where the last run stopped, but those a run claimed of
# its own transaction (see ``payouts.rollup.runs``).
CREDIT_UNCLAIMED = """
    c.created_xid >= (SELECT coalesce(max(xid_to), CAST('1' AS xid8)) FROM rollup_runs)
    AND NOT EXISTS (SELECT 1 FROM rollup_runs o
                     WHERE o.own_xid = c.created_xid AND o.own_id_to >= c.id)"""


def payout_credits_join(payout: str) -> str:
    """``JOIN`` the credits (``c``) a payout (aliased ``payout``) was made of: those of its
    creator and asset in its run's range."""
    return (
        f"JOIN rollup_runs pr ON pr.id = {payout}.rollup_run_id"
        f" JOIN credits c ON c.creator_id = {payout}.creator_id"
        f" AND c.asset_id = {payout}.asset_id"
        " AND c.created_xid >= pr.xid_from AND c.created_xid < pr.xid_to"
    )


LIFECYCLES = {lc.entity: lc for lc in (CREDIT, PAYOUT, BATCH, TX_ATTEMPT, CREATOR, EXCEPTION, HOLD)}


def _sources(
    lifecycle: Lifecycle, to_state: State, from_states: Sequence[State] | None
) -> list[str]:
    sources = lifecycle.sources(to_state)
    if from_states is not None:
        sources = [s for s in sources if s in from_states]
    if not sources:
        raise IllegalTransition(f"{lifecycle.entity}: nothing may move to {to_state}")
    return [str(s) for s in sources]


def created_sql(lifecycle: Lifecycle, *, source: str, cause: str) -> str:
    """SQL inserting one audit row per row of ``source`` (a CTE of rows just inserted into
    ``lifecycle.table``, with an ``id``): created in the initial state, ``cause`` an SQL
    expression over the source's columns, the actor the bound ``:_actor``. For a set-based
    insert (the roll-up's payouts) to audit each row it creates in the same statement."""
    return (
        "INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)"
        f" SELECT '{lifecycle.entity}', id, NULL, '{lifecycle.initial}', {cause}, :_actor"
        f" FROM {source}"
    )


def _assignments(also: Mapping[str, str] | None) -> str:
    """``, col = expr`` for each extra column the move sets."""
    return "".join(f", {column} = {expr}" for column, expr in (also or {}).items())


def move_where(
    session: Session,
    lifecycle: Lifecycle,
    to_state: State,
    *,
    where: str,
    params: Mapping[str, Any] | None = None,
    cause: str,
    actor: str,
    from_states: Sequence[State] | None = None,
    also: Mapping[str, str] | None = None,
    event: Mapping[str, Any] | None = None,
    cause_sql: str | None = None,
) -> list[int]:
    """Move every row of ``lifecycle.table`` (aliased ``t``) matching ``where`` to ``to_state``.

    ``where`` and the expressions of ``also`` are static SQL written in this package with
    bound parameters. Rows are locked in id order (two movers of overlapping sets never
    deadlock). A move a marketplace cares about (``events.MOVES``) writes each moved row's
    event in the same statement, ``event`` added to its payload. ``cause_sql``, an SQL
    expression over the moved row ``m``, gives each row a cause of its own instead of
    ``cause`` (the payouts of many batches, each naming its batch). Returns the ids of the
    rows that moved.
    """
    if lifecycle.derived:
        return []  # nothing to write: its state follows from the rows that did move
    sources = _sources(lifecycle, to_state, from_states)
    event_type = events.for_move(lifecycle.entity, str(to_state), sources)
    # The events read the rows as the UPDATE left them (its RETURNING) and as they were
    # (prev): a re-read of the table would see the statement's snapshot, from before it.
    evented = ""
    said = cause_sql or "CAST(:_cause AS text)"
    if event_type is not None:
        # The row before is joined only when the move changes more than the state: a CTE's
        # row count is unknown to the planner, which joins the two by nested loop, O(n^2).
        insert = events.insert_sql(
            lifecycle.entity, event_type, source="moved", cause=said, old="prev" if also else None
        )
        evented = f", evented AS ({insert})"
    columns = "t.*" if event_type or cause_sql else "t.id, t.state"
    sql = text(
        f"""
        WITH prev AS (
            SELECT {columns} FROM {lifecycle.table} t
             WHERE ({where}) AND t.state = ANY(:_sources)
             ORDER BY t.id FOR UPDATE
        ), moved AS (
            UPDATE {lifecycle.table} t SET state = :_to{_assignments(also)} FROM prev
             WHERE t.id = prev.id RETURNING {columns}, prev.state AS from_state
        ){evented}
        INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)
        SELECT :_entity, m.id, m.from_state, :_to, {said}, :_actor FROM moved m
        RETURNING entity_id
        """
    )
    bound = dict(params or {})
    bound.update(
        _sources=sources,
        _to=str(to_state),
        _entity=lifecycle.entity,
        _cause=cause,
        _actor=actor,
        _event=json.dumps(event or {}, default=str),
    )
    return [row[0] for row in session.execute(sql, bound)]


def move(
    session: Session,
    lifecycle: Lifecycle,
    ids: Sequence[int],
    to_state: State,
    *,
    cause: str,
    actor: str,
    from_states: Sequence[State] | None = None,
    strict: bool = False,
    also: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    event: Mapping[str, Any] | None = None,
) -> list[int]:
    """Move the rows with ``ids`` to ``to_state``; see ``move_where``."""
    if not ids:
        return []
    moved = move_where(
        session,
        lifecycle,
        to_state,
        where="t.id = ANY(:_ids)",
        params={**(params or {}), "_ids": list(ids)},
        cause=cause,
        actor=actor,
        from_states=from_states,
        also=also,
        event=event,
    )
    if strict and len(moved) != len(set(ids)):
        stuck = sorted(set(ids) - set(moved))
        states = session.execute(
            text(f"SELECT id, state FROM {lifecycle.table} WHERE id = ANY(:ids)"), {"ids": stuck}
        ).all()
        detail = ", ".join(f"{row.id}:{row.state}" for row in states) or "missing rows"
        raise IllegalTransition(f"{lifecycle.entity} -> {to_state} refused for {detail}")
    return moved


def move_rows(
    session: Session,
    lifecycle: Lifecycle,
    from_state: State,
    to_state: State,
    *,
    rows: str,
    params: Mapping[str, Any] | None = None,
    columns: Sequence[str] = (),
    cause: str,
    actor: str,
    event: Mapping[str, Any] | None = None,
    event_sql: str | None = None,
) -> int:
    """Move a large set in one statement: the rows named by the query ``rows`` (an ``id``
    column, plus one column per name in ``columns`` whose value the row takes) that are still
    in ``from_state``. ``event_sql``, a jsonb expression over ``src``, is merged into each
    row's event (a claimable payout's voucher). Returns how many moved.

    For the set-based stages (a roll-up links a million credits): no lock pass and no ids
    sent back, and ``cause`` is an SQL expression that may use the columns of ``rows``
    (aliased ``src``). A row another transaction moved meanwhile is re-checked by PostgreSQL
    and left alone. Events are written in the same statement, as ``move_where`` writes them.
    """
    lifecycle.check(from_state, to_state)
    if lifecycle.derived:
        return 0  # nothing to write: its state follows from the rows that did move
    assignments = "".join(f", {c} = src.{c}" for c in columns)
    event_type = events.for_move(lifecycle.entity, str(to_state), [str(from_state)])
    returning, evented = "t.id", ""
    if event_type is not None:
        # Every row moved from the one state: the row after stands for the row before.
        returning = "t.*, CAST(:_from AS text) AS from_state"
        if event_sql is not None:
            returning += f", {event_sql} AS event_sql"
        insert = events.insert_sql(
            lifecycle.entity,
            event_type,
            source="moved",
            cause="m.cause",
            extra="m.event_sql" if event_sql is not None else None,
        )
        evented = f", evented AS ({insert})"
    sql = text(
        f"""
        WITH src AS ({rows}), moved AS (
            UPDATE {lifecycle.table} t SET state = :_to{assignments} FROM src
             WHERE t.id = src.id AND t.state = :_from
            RETURNING {returning}, {cause} AS cause
        ){evented}, audited AS (
            INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)
            SELECT :_entity, id, :_from, :_to, cause, :_actor FROM moved RETURNING 1
        )
        SELECT count(*) FROM audited
        """
    )
    bound = dict(params or {})
    bound.update(
        _from=str(from_state),
        _to=str(to_state),
        _entity=lifecycle.entity,
        _actor=actor,
        _event=json.dumps(event or {}, default=str),
    )
    return int(session.execute(sql, bound).scalar_one())


def move_path(
    session: Session,
    lifecycle: Lifecycle,
    path: Sequence[State],
    *,
    rows: str,
    params: Mapping[str, Any] | None = None,
    causes: Sequence[str],
    actor: str,
    event_sql: str | None = None,
    locked: bool = False,
    key: str = "id",
) -> int:
    """Move a set along ``path`` (the state the rows are in, then each state they pass
    through, in order) with one UPDATE, as if each move were made in turn; returns how many
    rows moved.

    A row updated once costs half what two moves cost, and the reconciler moves a hundred
    thousand payouts submitted -> confirmed -> finalized when their batch is deep enough for
    both at once. Nothing of the record is skipped: each row gets one audit row per move, in
    order, with that move's cause (``causes``, one SQL expression over ``src`` per move), and
    each move a marketplace cares about its event, every event of a move written before any
    of the next (a reader sees them in the order of the moves). ``rows`` names the rows (its
    ``key`` column, one row per value, matched to the table's column of that name: the
    reconciler names batches, not their hundred thousand payouts, plus what the causes and
    ``event_sql`` read, aliased ``src``);
    ``event_sql``, a jsonb expression over ``src``, is merged into each row's events. Rows
    are locked in id order first, as ``move_where`` locks them, unless the caller says they
    are ``locked`` already (it holds a lock every other mover of these rows takes first); a
    row no longer in ``path[0]`` is left alone.
    """
    steps = list(pairwise(path))
    if not steps or len(causes) != len(steps):
        raise ValueError(f"{lifecycle.entity}: {len(path)} states in a path, {len(causes)} causes")
    for from_state, to_state in steps:
        lifecycle.check(from_state, to_state)
    if lifecycle.derived:
        return 0  # nothing to write: its state follows from the rows that did move
    said = "".join(f", {cause} AS _cause_{n}" for n, cause in enumerate(causes))
    extra = event_sql or "CAST('{}' AS jsonb)"
    evented = _path_events(lifecycle, steps, event_sql)
    # A lock pass is a lock written per row before the UPDATE writes the row itself.
    source, ordered, match = "src", "", f"t.{key} = src.{key}"
    if not locked:
        source, match = "prev", "t.id = src._id"
        ordered = (
            f", prev AS (SELECT t.id AS _id, src.* FROM src JOIN {lifecycle.table} t"
            f" ON t.{key} = src.{key} WHERE t.state = :_s0 ORDER BY t.id FOR UPDATE OF t)"
        )
    audits = ", ".join(
        f"({n}, CAST(:_s{n} AS text), CAST(:_s{n + 1} AS text), m._cause_{n})"
        for n in range(len(steps))
    )
    sql = text(
        f"""
        WITH src AS ({rows}){ordered}, moved AS (
            UPDATE {lifecycle.table} t SET state = :_s{len(steps)} FROM {source} src
             WHERE {match} AND t.state = :_s0
            RETURNING t.*, CAST(:_s0 AS text) AS from_state, {extra} AS _event_sql{said}
        ){evented}, audited AS (
            INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)
            SELECT :_entity, m.id, s.from_state, s.to_state, s.cause, :_actor
              FROM moved m CROSS JOIN LATERAL (VALUES {audits}) AS s(n, from_state, to_state, cause)
             ORDER BY m.id, s.n
            RETURNING 1
        )
        SELECT count(*) FROM audited
        """
    )
    bound = dict(params or {})
    bound.update({f"_s{n}": str(state) for n, state in enumerate(path)})
    bound.update(_entity=lifecycle.entity, _actor=actor, _event="{}")
    return int(session.execute(sql, bound).scalar_one()) // len(steps)


def _path_events(
    lifecycle: Lifecycle, steps: Sequence[tuple[State, State]], event_sql: str | None
) -> str:
    """The event CTEs of ``move_path``: one INSERT per move a marketplace cares about, each
    reading ``moved`` (the row as the whole path left it) with the status and previous status
    of its own move, and each waiting for the count of the one before, which it cannot have
    before that INSERT has written every row."""
    ctes = ""
    before: str | None = None
    for n, (from_state, to_state) in enumerate(steps):
        event_type = events.MOVES.get((lifecycle.entity, str(from_state), str(to_state)))
        if event_type is None:
            continue
        source = "moved"
        if before is not None:
            source = f"after_{n}"
            ctes += (
                f", {source} AS (SELECT m.* FROM moved m"
                f" CROSS JOIN (SELECT count(*) FROM {before}) AS written)"
            )
        insert = events.insert_sql(
            lifecycle.entity,
            f"'{event_type}'",
            source=source,
            cause=f"m._cause_{n}",
            extra=f"m._event_sql || jsonb_build_object('status', CAST(:_s{n + 1} AS text),"
            f" 'previous_status', CAST(:_s{n} AS text))",
        )
        before = f"evented_{n}"
        ctes += f", {before} AS ({insert} RETURNING 1)"
    return ctes


def record_change(
    session: Session,
    entity: str,
    entity_id: int,
    *,
    before: str,
    after: str,
    cause: str,
    actor: str,
) -> None:
    """An audit row for a change that is not a move between states (a creator's payout
    address), so the trail of an entity is complete in one table."""
    session.execute(
        text(
            "INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)"
            " VALUES (:entity, :id, :before, :after, :cause, :actor)"
        ),
        {
            "entity": entity,
            "id": entity_id,
            "before": before,
            "after": after,
            "cause": cause,
            "actor": actor,
        },
    )


def move_batch_payouts(
    session: Session,
    batch_id: int,
    to_state: PayoutState,
    *,
    cause: str,
    actor: str,
    from_states: Sequence[PayoutState],
    also: Mapping[str, str] | None = None,
    event: Mapping[str, Any] | None = None,
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
        also=also,
        event=event,
    )
