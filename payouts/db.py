"""Engines, sessions and the unit of work.

A unit of work rolls back unless it is told to commit, so an exception anywhere in a service
leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker


@cache
def engine_for(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@cache
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


@contextmanager
def unit_of_work(url: str) -> Iterator[Session]:
    """Yield a session in one transaction; the caller commits, anything else rolls back."""
    session = session_factory(url)()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
