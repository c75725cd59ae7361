"""Events: what happened to a marketplace's money, as an outbox written with the change.

The lifecycle writes an event row in the statement that moves a state (``payouts.lifecycle``),
and the stages write the events that are not moves (an earning accepted, a payout created) in
the transaction that makes them; so no event exists without its change, and no change without
its event. Events are append-only.

A marketplace reads its events in the order of ``seq``, a number per marketplace with no gaps.
Rows get it from ``sequence``, not when they are written: a transaction that wrote an event
may commit after one that started later, and a reader that had already passed the later one's
number would never see the earlier. ``sequence`` numbers only the events of transactions that
have ended (their ``xid`` below the oldest transaction still running), in the order they were
written, under a lock only the sequencer takes; the writers never wait for one another. The
price: an event is readable once every write transaction that was running when it was
written has ended (a long roll-up delays the events written while it runs).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

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


def sequence(session: Session, limit: int = SEQUENCE_CHUNK) -> int:
    """Number the events whose transactions have ended, oldest first, per marketplace; returns
    how many were numbered (0 as well when another sequencer holds the lock). The caller
    commits."""
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
                 WHERE seq IS NULL AND xid < pg_snapshot_xmin(pg_current_snapshot())
                 ORDER BY id LIMIT :limit
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
