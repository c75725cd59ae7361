"""The operators' queue: what the system could not settle by itself, with its evidence.

An exception is opened once per (kind, dedupe key) by whoever finds the fault (see
``reconcile.record_exception``) and closed once by an operator with a resolution; a resolved
exception is final, and the closing is written to the audit trail like any state change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.errors import IllegalTransition, InvalidInput, NotFound

STATES = ("open", "resolved")


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
    row = session.execute(
        text(
            "UPDATE exceptions SET state = 'resolved', resolution = :r, resolved_at = now()"
            " WHERE id = :id AND state = 'open' RETURNING id"
        ),
        {"id": exception_id, "r": resolution},
    ).scalar()
    if row is None:
        current = get_exception(session, exception_id)  # NotFound if there is none
        raise IllegalTransition(
            f"exception {exception_id} is already {current['status']}: {current['resolution']}"
        )
    session.execute(
        text(
            "INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)"
            " VALUES ('exception', :id, 'open', 'resolved', :r, :actor)"
        ),
        {"id": exception_id, "r": resolution, "actor": actor},
    )
    return get_exception(session, exception_id)
