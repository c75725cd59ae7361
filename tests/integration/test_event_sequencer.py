"""Events are numbered per marketplace, without gaps, in an order no reader can overtake.

Numbers are given after commit: an event still uncommitted is numbered after everything that
committed before it, so a reader that saw number N never finds a new event below N later.
On a database of its own: the point is transactions that overlap for real."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payouts import catalog, events
from payouts.runtime import Runtime
from tests.waiting import wait_until


def shops(rt: Runtime, *names: str) -> list[int]:
    with rt.uow() as session:
        ids = [catalog.create_marketplace(session, name).id for name in names]
        session.commit()
    return ids


def sequence(rt: Runtime) -> int:
    with rt.uow() as session:
        n = events.sequence(session)
        session.commit()
    return n


def sequence_until(rt: Runtime, expected: int) -> None:
    """Number until ``expected`` events are numbered (a call that finds another sequencer at
    work numbers nothing)."""
    numbered = 0

    def more() -> bool:
        nonlocal numbered
        numbered += sequence(rt)
        return numbered >= expected

    wait_until(more, timeout=60, what=f"{expected} events numbered")
    assert numbered == expected


def listed(rt: Runtime, marketplace: int, after: int = 0) -> list[tuple[int, str]]:
    with rt.uow() as session:
        return [
            (e["seq"], e["data"]["n"])
            for e in events.list_events(session, marketplace, after=after, limit=1000)
        ]


def test_a_reader_never_finds_a_new_event_below_one_it_has_seen(
    committed_ledger_runtime: Runtime,
) -> None:
    """An event written first but committed last is numbered after what committed before it:
    a reader past those numbers still finds it, after them."""
    rt = committed_ledger_runtime
    alice, bob = shops(rt, "alice", "bob")
    with rt.uow() as early:
        events.emit(early, alice, "test.event", "t:1", {"n": "early"})
        # A later transaction writes and commits while the early one still runs.
        with rt.uow() as late:
            events.emit(late, alice, "test.event", "t:2", {"n": "late"})
            events.emit(late, bob, "test.event", "t:3", {"n": "bob"})
            late.commit()
        sequence_until(rt, 2)  # what committed is numbered; the early event is not seen yet
        assert listed(rt, alice) == [(1, "late")]
        assert listed(rt, bob) == [(1, "bob")]
        early.commit()

    sequence_until(rt, 1)
    assert listed(rt, alice) == [(1, "late"), (2, "early")]
    assert listed(rt, alice, after=1) == [(2, "early")]
    assert sequence(rt) == 0  # each event is numbered once


def test_a_rolled_back_event_is_never_numbered(committed_ledger_runtime: Runtime) -> None:
    rt = committed_ledger_runtime
    (alice,) = shops(rt, "alice")
    with rt.uow() as session:
        events.emit(session, alice, "test.event", "t:1", {"n": "gone"})
        session.rollback()
    with rt.uow() as session:
        events.emit(session, alice, "test.event", "t:2", {"n": "kept"})
        session.commit()

    sequence_until(rt, 1)
    assert listed(rt, alice) == [(1, "kept")]


def test_events_are_append_only_but_for_their_number(committed_ledger_runtime: Runtime) -> None:
    rt = committed_ledger_runtime
    (alice,) = shops(rt, "alice")
    with rt.uow() as session:
        events.emit(session, alice, "test.event", "t:1", {"n": "one"})
        session.commit()
    sequence_until(rt, 1)
    for statement in (
        "UPDATE events SET payload = '{}'",
        "UPDATE events SET seq = 7",
        "DELETE FROM events",
    ):
        with rt.uow() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
    assert listed(rt, alice) == [(1, "one")]
