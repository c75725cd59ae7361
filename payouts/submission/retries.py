"""Where a failing submission stands in its retry tiers, kept on the batch row.

``submit_tier`` only moves forward by compare-and-set, so a redelivered task cannot skip a
tier; after the last tier the batch is parked until an operator replays it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.states import BatchState


def next_tier(
    session: Session, batch_id: int, *, tier: int, error: str, delay: float, park: bool
) -> datetime | None:
    """Move a sealed batch from ``tier`` to the next (due after ``delay`` seconds, or parked);
    returns when it was sealed, or None if another delivery of this try moved it already."""
    row = session.execute(
        text(
            f"""
            UPDATE batches SET submit_tier = :next, last_error = :error,
                   retry_at = now() + make_interval(secs => :delay),
                   parked_at = CASE WHEN CAST(:park AS boolean) THEN now() END
             WHERE id = :b AND submit_tier = :tier AND state = {BatchState.SEALED.sql}
               AND parked_at IS NULL
            RETURNING created_at
            """
        ),
        {
            "b": batch_id,
            "tier": tier,
            "next": tier + 1,
            "error": error[:2000],
            "delay": delay,
            "park": park,
        },
    ).one_or_none()
    return None if row is None else row.created_at


def clear_retry(session: Session, batch_id: int) -> None:
    """The batch is out: its last error and next retry no longer apply."""
    session.execute(
        text("UPDATE batches SET last_error = NULL, retry_at = NULL WHERE id = :b"),
        {"b": batch_id},
    )


def unpark(session: Session, batch_id: int) -> None:
    """An operator's replay starts the tiers afresh."""
    session.execute(
        text(
            "UPDATE batches SET parked_at = NULL, retry_at = NULL, submit_tier = 0"
            " WHERE id = :b AND parked_at IS NOT NULL"
        ),
        {"b": batch_id},
    )


def park(session: Session, batch_id: int, error: str) -> None:
    """The replay failed too: parked again, with the new error as evidence."""
    session.execute(
        text(
            "UPDATE batches SET parked_at = now(), last_error = :e"
            f" WHERE id = :b AND state = {BatchState.SEALED.sql}"
        ),
        {"b": batch_id, "e": error[:2000]},
    )
