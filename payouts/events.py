"""Events: what happened to a marketplace's money, as an outbox written with the change.

The lifecycle writes an event row in the statement that moves a state (``payouts.lifecycle``),
and the stages write the events that are not moves (an earning accepted, a payout created) in
the transaction that makes them; so no event exists without its change, and no change without
its event. Events are append-only.

A marketplace reads its events in the order of ``seq``, a number per marketplace with no gaps.
Rows get it from ``sequence``, after their transaction committed, not when they are written:
numbered at write time, a transaction could commit after one that took a later number, and a
reader that had already passed that number would never see the earlier event. ``sequence``
numbers what has committed (an uncommitted event is invisible to it, and is numbered by a
later call), in the order the rows were written, under a lock only the sequencer takes; the
writers never wait for one another or for the sequencer. Two events of one payout come in
the order of their changes: the second change waited for the first's commit (the row lock),
so its event is written, and numbered, after the first's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.states import (
    CreatorState,
    ExceptionState,
    HoldState,
    PayoutState,
    TxAttemptState,
    sql_in,
)

P, H = PayoutState, HoldState

# Every event type, where it is written and what it says: the one list of them. A move's
# event is written by the lifecycle in the statement that moves the row (``MOVES`` below);
# the others by the stage that makes the change, in its transaction.
TYPES: dict[str, str] = {
    "earnings.accepted": "a request's new earnings were recorded (one event per request, none"
    " for a replay): how many, the totals per asset; a single earning's id and link",
    "payout.created": "the roll-up made a payout (pending): creator, amount, asset, recipient",
    "payout.batched": "sealed into a batch (batch_id)",
    "payout.submitted": "its batch's transaction was sent (tx_hash)",
    "payout.confirmed": "technical confirmation: in a block (block_number) N blocks deep"
    " (confirmations); not final yet",
    "payout.finalized": "business finality: deep enough for its amount; the one to act on",
    "payout.failed": "back to pending from batched, submitted or confirmed (the batch failed,"
    " or the token refused the transfer): cause; it goes again in a later batch",
    "payout.unconfirmed": "a reorg dropped the block that carried it: back to submitted; the"
    " same transaction is resent (orphaned_block_number, orphaned_block_hash)",
    "payout.held": "kept out of batches by a hold on the payout (cause: rule and reason)",
    "payout.released": "its last hold ended: pending again",
    "payout.cancelled": "cancelled for good (rejected in review): the amount goes back to the"
    " creator's carried balance",
    "payout.claimable": "settled by claim: its amount waits in the claims escrow; carries the"
    " recipient's current voucher (cumulative and signature) to claim it with",
    "payout.claimed": "a claim on chain covers it (tx_hash); not final yet",
    "payout.unclaimed": "a reorg removed the claim that covered it: claimable again",
    "hold.placed": "a hold on a creator (payout_id null) or one payout: rule, reason, expiry",
    "hold.released": "a hold ended: released or expired (resolution)",
    "hold.rejected": "review rejected the held payout (resolution)",
    "creator.held": "the creator's payouts wait: a creator-wide hold is active (reason)",
    "creator.released": "the creator's last creator-wide hold ended",
    "exception.opened": "operators must look at something concerning the marketplace's"
    " payouts (kind; its payout, or a batch holding some of them)",
    "exception.resolved": "that exception was closed (resolution)",
}

# (entity, from, to) -> the event the move writes; a move not named here writes none.
MOVES: dict[tuple[str, str, str], str] = {
    ("payout", P.PENDING, P.BATCHED): "payout.batched",
    ("payout", P.BATCHED, P.SUBMITTED): "payout.submitted",
    ("payout", P.SUBMITTED, P.CONFIRMED): "payout.confirmed",
    ("payout", P.CONFIRMED, P.FINALIZED): "payout.finalized",
    ("payout", P.BATCHED, P.PENDING): "payout.failed",
    ("payout", P.SUBMITTED, P.PENDING): "payout.failed",
    ("payout", P.CONFIRMED, P.PENDING): "payout.failed",
    ("payout", P.CONFIRMED, P.SUBMITTED): "payout.unconfirmed",
    ("payout", P.PENDING, P.HELD): "payout.held",
    ("payout", P.HELD, P.PENDING): "payout.released",
    ("payout", P.PENDING, P.CANCELLED): "payout.cancelled",
    ("payout", P.HELD, P.CANCELLED): "payout.cancelled",
    ("payout", P.PENDING, P.CLAIMABLE): "payout.claimable",
    ("payout", P.CLAIMABLE, P.CLAIMED): "payout.claimed",
    ("payout", P.CLAIMED, P.CLAIMABLE): "payout.unclaimed",
    ("payout", P.CLAIMED, P.FINALIZED): "payout.finalized",
    ("hold", H.ACTIVE, H.RELEASED): "hold.released",
    ("hold", H.ACTIVE, H.REJECTED): "hold.rejected",
    ("creator", CreatorState.ACTIVE, CreatorState.HELD): "creator.held",
    ("creator", CreatorState.HELD, CreatorState.ACTIVE): "creator.released",
    ("exception", ExceptionState.OPEN, ExceptionState.RESOLVED): "exception.resolved",
}

# The sequencer's advisory lock: one numbering at a time, so numbers are never skipped.
SEQUENCER_LOCK = 0x6576656E7473  # "events"
# How many events one call numbers at most (a later call takes the rest).
SEQUENCE_CHUNK = 50_000


def public_id(event_id: int) -> str:
    """The id a marketplace sees, stable across redeliveries (the webhook-id too)."""
    return f"evt_{event_id}"


def emit(
    session: Session, marketplace_id: int, type_: str, subject: str, payload: dict[str, Any]
) -> None:
    """Write one event in the caller's transaction."""
    session.execute(
        text(
            "INSERT INTO events (marketplace_id, type, subject, payload)"
            " VALUES (:m, :type, :subject, CAST(:payload AS jsonb))"
        ),
        {"m": marketplace_id, "type": type_, "subject": subject, "payload": json.dumps(payload)},
    )


def emit_many(session: Session, rows: Sequence[tuple[int, str, str, dict[str, Any]]]) -> None:
    """Write events (marketplace, type, subject, payload) in one statement, in order."""
    if not rows:
        return
    session.execute(
        text(
            """
            INSERT INTO events (marketplace_id, type, subject, payload)
            SELECT CAST(v.e ->> 'm' AS bigint), v.e ->> 'type', v.e ->> 'subject',
                   CAST(v.e -> 'payload' AS jsonb)
              FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS v(e, i)
             ORDER BY v.i
            """
        ),
        {
            "rows": json.dumps(
                [{"m": m, "type": t, "subject": s, "payload": p} for m, t, s, p in rows]
            )
        },
    )


# The payload of each entity's events, as SQL over ``m`` (the row as the change left it, with
# a ``from_state`` column) and ``o`` (the row before it). Amounts leave as strings of base
# units; the creator is the marketplace's own id for them, never our key; a batch is its
# public id, as ``GET /v1/payouts`` shows them. ``:_event`` adds what only the caller knows.
def _payout_payload(fields: dict[str, str]) -> str:
    """A payout event's payload: the same keys in the same order wherever it is written."""
    return "jsonb_build_object(" + ", ".join(f"'{k}', {v}" for k, v in fields.items()) + ")"


_PAYOUT_FIELDS = {
    "payout_id": "m.id",
    "status": "m.state",
    "previous_status": "m.from_state",
    "creator_id": "cr.external_id",
    "amount": "CAST(m.amount AS text)",
    "asset": "a.symbol",
    "recipient": "m.recipient",
    "batch_id": "CAST(b.public_id AS text)",
    "tx_hash": "CASE WHEN b.id IS NOT NULL THEN coalesce(b.tx_hash, ("
    " SELECT x.tx_hash FROM tx_attempts x WHERE x.batch_id = b.id"
    f" AND x.state IN {sql_in(TxAttemptState.BROADCAST, TxAttemptState.MINED)}"
    " ORDER BY x.id DESC LIMIT 1)) END",
    "block_number": "b.block_number",
    "cause": "{cause}",
    "url": "'/v1/payouts/' || m.id",
}
_PAYOUT = f"""
    SELECT cr.marketplace_id, {{type}}, 'payout:' || m.id,
           {_payout_payload(_PAYOUT_FIELDS)} || CAST(:_event AS jsonb){{extra}}, m.id
      FROM {{source}} m {{old}}
      JOIN creators cr ON cr.id = m.creator_id
      JOIN assets a ON a.id = m.asset_id
      LEFT JOIN batches b ON b.id = coalesce(m.batch_id, {{o}}.batch_id)
"""
# A payout the statement has just created: pending, in no batch, and its creator's and
# asset's names already at hand in the source, so the payload needs no join.
_NEW_PAYOUT = f"""
    INSERT INTO events (marketplace_id, type, subject, payload)
    SELECT m.marketplace_id, 'payout.created', 'payout:' || m.payout_id,
           {
    _payout_payload(
        _PAYOUT_FIELDS
        | {
            "payout_id": "m.payout_id",
            "status": f"'{PayoutState.PENDING}'",
            "previous_status": "NULL",
            "creator_id": "m.external_id",
            "asset": "m.symbol",
            "batch_id": "NULL",
            "tx_hash": "NULL",
            "block_number": "NULL",
            "url": "'/v1/payouts/' || m.payout_id",
        }
    )
} || CAST(:_event AS jsonb)
      FROM {{source}} m WHERE {{where}} ORDER BY m.payout_id
"""
_HOLD = """
    SELECT cr.marketplace_id, {type}, 'hold:' || m.id, jsonb_build_object(
               'hold_id', m.id, 'status', m.state, 'previous_status', m.from_state,
               'creator_id', cr.external_id, 'payout_id', m.payout_id, 'rule', m.rule,
               'reason', m.reason, 'expires_at', m.expires_at, 'resolution', m.resolution,
               'cause', {cause},
               'url', '/v1/payouts/' || m.payout_id) || CAST(:_event AS jsonb), m.id
      FROM {source} m {old}
      JOIN creators cr ON cr.id = m.creator_id
"""
_CREATOR = """
    SELECT m.marketplace_id, {type}, 'creator:' || m.id, jsonb_build_object(
               'creator_id', m.external_id, 'status', m.state,
               'previous_status', m.from_state, 'reason', coalesce(m.held_reason, {o}.held_reason),
               'cause', {cause}) || CAST(:_event AS jsonb), m.id
      FROM {source} m {old}
"""
# An exception concerns the marketplace of its payout or, without one, every marketplace
# with a payout in its batch; one that concerns none (a foreign transaction) writes no event.
_EXCEPTION = """
    SELECT w.marketplace_id, {type}, 'exception:' || m.id, jsonb_build_object(
               'exception_id', m.id, 'kind', m.kind, 'status', m.state,
               'previous_status', m.from_state, 'payout_id', m.payout_id,
               'batch_id', CAST(b.public_id AS text), 'tx_hash', m.tx_hash,
               'resolution', m.resolution, 'cause', {cause},
               'url', '/v1/payouts/' || m.payout_id) || CAST(:_event AS jsonb), m.id
      FROM {source} m {old}
      LEFT JOIN batches b ON b.id = m.batch_id
      JOIN LATERAL (
          SELECT cr.marketplace_id FROM payouts p JOIN creators cr ON cr.id = p.creator_id
           WHERE p.id = m.payout_id
          UNION
          SELECT cr.marketplace_id FROM batch_items bi
            JOIN payouts p ON p.id = bi.payout_id JOIN creators cr ON cr.id = p.creator_id
           WHERE m.payout_id IS NULL AND bi.batch_id = m.batch_id
      ) w ON true
"""
_PAYLOADS = {"payout": _PAYOUT, "hold": _HOLD, "creator": _CREATOR, "exception": _EXCEPTION}


def insert_sql(
    entity: str,
    type_sql: str,
    *,
    source: str,
    cause: str,
    old: str | None = None,
    extra: str | None = None,
) -> str:
    """``INSERT INTO events`` of one event per row of ``source`` (a CTE of the changed rows
    with a ``from_state`` column, aliased ``m``), for a data-modifying CTE in the statement
    that changes them. ``old`` names a CTE of the rows before the change (same ids); without
    it the row after stands for both. ``type_sql`` and ``cause`` are SQL expressions; rows
    whose type is NULL write nothing. The statement binds ``:_event`` (a JSON object merged
    into every payload); ``extra``, a payout's only, a jsonb expression over ``m`` merged
    into its own (a claimable payout's voucher)."""
    old_join, o = (f"JOIN {old} o ON o.id = m.id", "o") if old else ("", "m")
    if extra is not None and entity != "payout":
        raise ValueError(f"only a payout's events take a payload of their own, not {entity}'s")
    select = _PAYLOADS[entity].format(
        type=type_sql,
        cause=cause,
        source=source,
        old=old_join,
        o=o,
        extra=f" || {extra}" if extra else "",
    )
    return f"""
        INSERT INTO events (marketplace_id, type, subject, payload)
        SELECT marketplace_id, type, subject, payload
          FROM ({select}) e(marketplace_id, type, subject, payload, row_id)
         WHERE type IS NOT NULL ORDER BY row_id, marketplace_id
    """


def created_payouts_sql(*, source: str, where: str, cause: str) -> str:
    """``INSERT INTO events`` of ``payout.created`` for each row of ``source`` that ``where``
    selects: rows of payouts the same statement inserts, with the columns ``payout_id``,
    ``marketplace_id``, ``external_id`` (the creator), ``amount``, ``symbol`` and
    ``recipient``. The payload is the one ``insert_sql`` writes for a new payout; the
    roll-up's hundred thousand at a time skip its joins to creators, assets and batches."""
    return _NEW_PAYOUT.format(source=source, where=where, cause=cause)


def for_move(entity: str, to_state: str, from_states: Sequence[str]) -> str | None:
    """The type of a move's events as SQL over ``m.from_state``, or None when no source
    state's move to ``to_state`` concerns a marketplace."""
    types = {f: MOVES[(entity, f, to_state)] for f in from_states if (entity, f, to_state) in MOVES}
    if not types:
        return None
    whens = " ".join(f"WHEN '{f}' THEN '{t}'" for f, t in sorted(types.items()))
    return f"CASE m.from_state {whens} END"


def sequence(session: Session, limit: int = SEQUENCE_CHUNK) -> int:
    """Number the committed events not numbered yet, oldest first, per marketplace; returns
    how many were numbered (0 as well when another sequencer holds the lock). The caller
    commits; until then no reader sees any of these numbers."""
    if not session.execute(
        text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SEQUENCER_LOCK}
    ).scalar_one():
        return 0
    # Counters first, in a statement of their own: a CTE's insert is not seen by its siblings.
    session.execute(
        text(
            """
            INSERT INTO event_counters (marketplace_id)
            SELECT DISTINCT marketplace_id FROM events WHERE seq IS NULL
            ON CONFLICT DO NOTHING
            """
        )
    )
    numbered = session.execute(
        text(
            """
            WITH ready AS (
                SELECT id, marketplace_id FROM events
                 WHERE seq IS NULL ORDER BY id LIMIT :limit
            ), counts AS (
                SELECT marketplace_id, count(*) AS n FROM ready GROUP BY marketplace_id
            ), bumped AS (
                UPDATE event_counters k SET last_seq = k.last_seq + counts.n FROM counts
                 WHERE k.marketplace_id = counts.marketplace_id
                RETURNING k.marketplace_id, k.last_seq - counts.n AS base
            ), ordered AS (
                SELECT r.id, b.base + row_number() OVER (
                           PARTITION BY r.marketplace_id ORDER BY r.id) AS seq
                  FROM ready r JOIN bumped b USING (marketplace_id)
            )
            UPDATE events e SET seq = o.seq, sequenced_at = now() FROM ordered o
             WHERE e.id = o.id
            """
        ),
        {"limit": limit},
    )
    return int(numbered.rowcount or 0)  # type: ignore[attr-defined]


def last_seq(session: Session, marketplace_id: int) -> int:
    """The marketplace's newest sequence number (0 before its first event)."""
    value = session.execute(
        text("SELECT last_seq FROM event_counters WHERE marketplace_id = :m"),
        {"m": marketplace_id},
    ).scalar()
    return int(value or 0)


def _iso(value: datetime) -> str:
    return value.isoformat()


def as_message(row: Any) -> dict[str, Any]:
    """An event as it is listed and pushed (the Standard Webhooks shape: type, timestamp,
    data), with its id and sequence number for deduplication and order."""
    return {
        "id": public_id(int(row.id)),
        "seq": int(row.seq),
        "type": row.type,
        "timestamp": _iso(row.created_at),
        "data": row.payload,
    }


EVENT_COLUMNS = "id, seq, type, payload, created_at"


def list_events(
    session: Session,
    marketplace_id: int,
    *,
    after: int = 0,
    limit: int = 100,
    types: list[str] | None = None,
) -> list[dict[str, Any]]:
    """A marketplace's numbered events after ``after``, in order (a range scan of its
    ``(marketplace_id, seq)`` index)."""
    rows = session.execute(
        text(
            f"""
            SELECT {EVENT_COLUMNS} FROM events
             WHERE marketplace_id = :m AND seq > :after
               AND (CAST(:types AS text[]) IS NULL OR type = ANY(CAST(:types AS text[])))
             ORDER BY seq LIMIT :limit
            """
        ),
        {"m": marketplace_id, "after": after, "limit": limit, "types": types},
    ).all()
    return [as_message(r) for r in rows]
