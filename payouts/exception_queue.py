"""The operators' queue: what the system could not settle by itself, with its evidence.

An exception is opened once per (kind, dedupe key) by whoever finds the fault (see
``record_exception``) and closed once, with a resolution: by an operator, or by the stage
that sees its cause gone (``resolve_for_batch``). A resolved exception is final and stays in
the history, and the closing is written to the audit trail like any state change. Opening and
closing are events (``exception.opened``, ``exception.resolved``) for each marketplace the
exception concerns: its payout's, or every one with a payout in its batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import events, holds, lifecycle
from payouts.errors import IllegalTransition, InvalidInput, NotFound
from payouts.states import ExceptionState

STATES = tuple(ExceptionState)

# A stuck transaction could not be replaced: the fee cap leaves no room for a bump.
FEE_CAP_REACHED = "fee_cap_reached"
# Every retry tier failed and the batch waits for an operator (the node may still hold a
# transaction it took before it stopped answering).
SUBMISSION_EXHAUSTED = "submission_exhausted"
# Exceptions about a batch's transaction not getting mined (stuck under the cap, or sent and
# never heard of): their cause is gone once the batch is final, its transaction mined for good.
CLOSED_WHEN_BATCH_LANDS = (FEE_CAP_REACHED, SUBMISSION_EXHAUSTED)


def record_exception(
    session: Session,
    kind: str,
    key: str,
    detail: dict[str, Any],
    *,
    batch_id: int | None = None,
    payout_id: int | None = None,
    tx_hash: str | None = None,
) -> bool:
    """Record an exception once per (kind, key); returns whether it is new."""
    # The exception and its exception.opened events (one per marketplace it concerns).
    opened = events.insert_sql("exception", "'exception.opened'", source="opened", cause="m.kind")
    inserted = session.execute(
        text(
            f"""
            WITH opened AS (
                INSERT INTO exceptions (kind, dedupe_key, batch_id, payout_id, tx_hash, detail)
                VALUES (:kind, :key, :b, :p, :tx, CAST(:detail AS jsonb))
                ON CONFLICT (kind, dedupe_key) DO NOTHING
                RETURNING *, CAST(NULL AS text) AS from_state
            ), evented AS ({opened})
            SELECT id FROM opened
            """
        ),
        {
            "_event": "{}",
            "kind": kind,
            "key": key,
            "b": batch_id,
            "p": payout_id,
            "tx": tx_hash,
            "detail": json.dumps(detail, default=str),
        },
    ).scalar()
    return inserted is not None


def _row(r: Any) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {
        "id": r.id,
        "kind": r.kind,
        "status": r.state,
        "batch_id": r.batch_id,
        "payout_id": r.payout_id,
        "tx_hash": r.tx_hash,
        "detail": r.detail,
        "resolution": r.resolution,
        "created_at": iso(r.created_at),
        "resolved_at": iso(r.resolved_at),
    }


_SELECT = (
    "SELECT id, kind, state, batch_id, payout_id, tx_hash, detail, resolution, created_at,"
    " resolved_at FROM exceptions"
)


def list_exceptions(
    session: Session, *, state: str | None = "open", before_id: int | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; the second value is the id to continue from, None on the last page."""
    if state is not None and state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}", field="state")
    rows = session.execute(
        text(
            _SELECT + " WHERE (CAST(:s AS text) IS NULL OR state = :s)"
            " AND (CAST(:before AS bigint) IS NULL OR id < :before)"
            " ORDER BY id DESC LIMIT :limit"
        ),
        {"s": state, "before": before_id, "limit": limit + 1},
    ).all()
    page = [_row(r) for r in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


def get_exception(session: Session, exception_id: int) -> dict[str, Any]:
    row = session.execute(text(_SELECT + " WHERE id = :id"), {"id": exception_id}).one_or_none()
    if row is None:
        raise NotFound(f"exception {exception_id}")
    return _row(row)


def resolve_exception(
    session: Session, exception_id: int, resolution: str, *, actor: str
) -> dict[str, Any]:
    """Close an open exception; closing one that is already closed is refused, not repeated."""
    resolution = resolution.strip()
    if not resolution:
        raise InvalidInput("say how it was resolved", field="resolution")
    moved = lifecycle.move(
        session,
        lifecycle.EXCEPTION,
        [exception_id],
        ExceptionState.RESOLVED,
        cause=resolution,
        actor=actor,
        also={"resolution": ":resolution", "resolved_at": "now()"},
        params={"resolution": resolution},
    )
    if not moved:
        current = get_exception(session, exception_id)  # NotFound if there is none
        raise IllegalTransition(
            f"exception {exception_id} is already {current['status']}: {current['resolution']}"
        )
    _release_hold_if_last(session, exception_id, resolution, actor)
    return get_exception(session, exception_id)


def resolve_for_batch(
    session: Session, batch_id: int, kinds: Sequence[str], resolution: str, *, actor: str
) -> list[int]:
    """Close the batch's open exceptions of ``kinds`` whose cause is gone, each through
    ``resolve_exception`` (audited, final). Rows are locked first, so one an operator closes
    meanwhile is skipped, not closed twice. Returns the ids closed."""
    open_ids = list(
        session.execute(
            text(
                f"""
                SELECT id FROM exceptions
                 WHERE batch_id = :b AND kind = ANY(:kinds)
                   AND state = {ExceptionState.OPEN.sql}
                 ORDER BY id FOR UPDATE
                """
            ),
            {"b": batch_id, "kinds": list(kinds)},
        ).scalars()
    )
    for exception_id in open_ids:
        resolve_exception(session, exception_id, resolution, actor=actor)
    return open_ids


def _release_hold_if_last(session: Session, exception_id: int, resolution: str, actor: str) -> None:
    """A creator held because the token refused their address is released when the last
    open refusal of theirs is resolved; their pending payout goes into the next batch."""
    creator_id = session.execute(
        text(
            f"""
            SELECT p.creator_id FROM exceptions x JOIN payouts p ON p.id = x.payout_id
             WHERE x.id = :id AND x.kind = 'transfer_failed' AND NOT EXISTS (
                   SELECT 1 FROM exceptions o JOIN payouts q ON q.id = o.payout_id
                    WHERE o.kind = 'transfer_failed' AND o.state = {ExceptionState.OPEN.sql}
                      AND q.creator_id = p.creator_id)
            """
        ),
        {"id": exception_id},
    ).scalar()
    if creator_id is not None:
        holds.release_creator(
            session,
            creator_id,
            actor=actor,
            resolution=f"exception {exception_id} resolved: {resolution}",
            rule=holds.TRANSFER_FAILED,
        )
