"""One write path for states: the code is read as text and held to what the lifecycle promises.

- no state name is spelt as a string literal in SQL (or anywhere) outside ``payouts.states``:
  SQL takes the enum's literal, so a renamed state cannot leave a query behind;
- nothing but ``payouts.lifecycle`` writes a ``state`` column or a row of ``transitions``, so
  every change has its audit row (and its event, and later its metric) from one function;
- nothing but ``payouts.events`` spells an insert into ``events``: the stages write their
  events through it, so every event has the one shape its type promises.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from payouts.lifecycle import LIFECYCLES

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p for top in ("payouts", "workers", "config", "devstack") for p in (ROOT / top).rglob("*.py")
)
STATES_MODULE = ROOT / "payouts" / "states.py"
LIFECYCLE_MODULE = ROOT / "payouts" / "lifecycle.py"
EVENTS_MODULE = ROOT / "payouts" / "events.py"

ALL_STATES = sorted({str(s) for lc in LIFECYCLES.values() for s in lc.states})
QUOTED_STATE = re.compile(r"'(" + "|".join(ALL_STATES) + r")'")
WRITES_TRANSITIONS = re.compile(r"INSERT\s+INTO\s+transitions", re.IGNORECASE)
WRITES_EVENTS = re.compile(r"INSERT\s+INTO\s+events\b", re.IGNORECASE)
# ``SET state =`` or ``SET a = b, state =`` in an UPDATE, and ORM assignments to ``.state``.
SETS_STATE_SQL = re.compile(r"\bSET\s+(?:[a-z_]+\s*=\s*[^,;]+?,\s*)*state\s*=", re.IGNORECASE)
SETS_STATE_ORM = re.compile(r"^\s*[a-z_]+\.state\s*=(?!=)", re.MULTILINE)


def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_sources_are_found() -> None:
    assert STATES_MODULE in SOURCES
    assert len(SOURCES) > 50


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_state_name_is_a_string_literal_outside_the_states_module(path: Path) -> None:
    if path == STATES_MODULE:
        return
    hits = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(_source(path).splitlines(), 1)
        if QUOTED_STATE.search(line)
    ]
    assert not hits, "spell states with payouts.states:\n" + "\n".join(hits)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_lifecycle_writes_states_and_transitions(path: Path) -> None:
    if path == LIFECYCLE_MODULE:
        return
    text = _source(path)
    assert not WRITES_TRANSITIONS.search(text), "audit rows come from payouts.lifecycle"
    assert not SETS_STATE_SQL.search(text), "a state moves through payouts.lifecycle"
    assert not SETS_STATE_ORM.search(text), "a state moves through payouts.lifecycle"


def test_the_patterns_catch_what_they_are_for() -> None:
    assert QUOTED_STATE.search("WHERE state = 'pending'")
    assert not QUOTED_STATE.search("WHERE kind = 'transfer_failed'")
    assert WRITES_TRANSITIONS.search("insert into  transitions (entity)")
    assert SETS_STATE_SQL.search("UPDATE payouts SET batch_id = NULL, state = :s WHERE")
    assert SETS_STATE_SQL.search("UPDATE batches t SET state = :_to FROM prev")
    assert not SETS_STATE_SQL.search("UPDATE batches SET last_error = NULL WHERE state = 'x'")
    assert SETS_STATE_ORM.search("batch.state = 'sealed'")
    assert not SETS_STATE_ORM.search("if batch.state == 'sealed':")
    assert not SETS_STATE_ORM.search("   WHERE p.state = {P.PENDING.sql}")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_events_module_writes_events(path: Path) -> None:
    if path == EVENTS_MODULE:
        return
    assert not WRITES_EVENTS.search(_source(path)), "events are written through payouts.events"
