"""Units of work that are savepoints inside one transaction the test rolls back.

Most ledger and stage tests need no database of their own: each runs inside one transaction
on a database shared by the whole session, and the handlers' units of work (``rt.uow()``) are
savepoints in it. A handler's ``commit`` releases its savepoint and first fires the deferred
constraints (``SET CONSTRAINTS ALL IMMEDIATE``), so the zero-sum check of every journal runs
where a real commit would run it; a rollback returns to the savepoint. At the end the test's
transaction is rolled back and the next test finds the database as it was.

What a savepoint cannot give (tests that need these keep a database of their own, ``db_url``):
other connections seeing the data (threads, the CLI, worker processes), ``now()`` moving on
(it is the outer transaction's start), and ``txid_current()`` differing between units of work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.orm import Session

from payouts.db import UnitOfWork


def _fire_deferred_checks(session: Session) -> None:
    # What COMMIT would check, checked now; deferred again for the next unit of work.
    session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    session.execute(text("SET CONSTRAINTS ALL DEFERRED"))


def savepoint_units(connection: Connection) -> UnitOfWork:
    @contextmanager
    def unit() -> Iterator[Session]:
        session = Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        event.listen(session, "before_commit", _fire_deferred_checks)
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    return unit


def in_transaction(connection: Connection) -> Any:
    """Open the test's outer transaction on ``connection``; the caller rolls it back."""
    return connection.begin()
