"""Helpers for event tests: number what has committed, and read a marketplace's events back.

Numbering is a try-lock: a call that finds another sequencer at work numbers nothing, so
tests number until every event has its number, with a deadline.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from payouts import events
from payouts.runtime import Runtime
from tests.waiting import wait_until


def _numbered_all(rt: Runtime) -> bool:
    with rt.uow() as session:
        events.sequence(session)
        session.commit()
        left = session.execute(text("SELECT count(*) FROM events WHERE seq IS NULL"))
        return int(left.scalar_one()) == 0


def number_all(rt: Runtime, timeout: float = 60) -> None:
    """Wait until every committed event has its number."""
    wait_until(lambda: _numbered_all(rt), timeout=timeout, what="every event numbered")


def listed(rt: Runtime, marketplace_id: int, **kw: Any) -> list[dict[str, Any]]:
    """The marketplace's events, all of them, once every one is numbered."""
    number_all(rt)
    with rt.uow() as session:
        return events.list_events(session, marketplace_id, limit=100_000, **kw)


def written(rt: Runtime, sql_filter: str = "true") -> list[Any]:
    """Rows of ``events`` as written (numbered or not), in the order they were written."""
    with rt.uow() as session:
        return list(
            session.execute(
                text(
                    "SELECT id, marketplace_id, type, subject, payload FROM events"
                    f" WHERE {sql_filter} ORDER BY id"
                )
            )
        )
