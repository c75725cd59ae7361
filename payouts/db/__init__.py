"""Engines, sessions and the unit of work.

A unit of work rolls back unless it is told to commit, so an exception anywhere in a handler
leaves nothing half-written. Handlers never open one by URL: they call the factory their
runtime carries (``rt.uow()``), which is a real transaction per call in production and a
savepoint inside one rolled-back transaction in the tests that share a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from functools import cache, partial

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from payouts.errors import DatabaseError, DatabaseRefused, DatabaseUnavailable

# What a handler opens: ``with uow() as session: ...; session.commit()``.
UnitOfWork = Callable[[], AbstractContextManager[Session]]


@cache
def engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@cache
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


def database_error(exc: SQLAlchemyError) -> DatabaseError:
    """The project's error for what SQLAlchemy or psycopg raised (the caller chains it)."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        cause = getattr(exc, "orig", None) or exc
        return DatabaseUnavailable(f"database unavailable: {type(cause).__name__}")
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return DatabaseRefused(f"database refused: {reason}")


@contextmanager
def unit_of_work(url: str) -> Iterator[Session]:
    """Yield a session in one transaction; the caller commits, anything else rolls back.

    What the database raises out of the unit of work leaves as ``DatabaseError``."""
    session = session_factory(url)()
    try:
        yield session
    except SQLAlchemyError as exc:
        with suppress(SQLAlchemyError):  # a dead connection cannot roll back; nothing to undo
            session.rollback()
        raise database_error(exc) from exc
    finally:
        with suppress(SQLAlchemyError):
            session.rollback()
        session.close()


def units_of_work(url: str) -> UnitOfWork:
    """The production factory: each unit of work is a transaction of its own on ``url``."""
    return partial(unit_of_work, url)
