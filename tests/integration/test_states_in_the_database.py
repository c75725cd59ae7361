"""The enums, the lifecycles and the database's own guards name the same states.

Read from the migrated schema itself (pg_catalog), not from the migration files: each state
column's CHECK lists exactly its enum, its default is the lifecycle's initial state, and the
final-state trigger guards exactly the lifecycle's final states.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payouts.db import unit_of_work
from payouts.lifecycle import LIFECYCLES, Lifecycle

QUOTED = re.compile(r"'([a-z_]+)'")
# A credit's state is derived (a view), never stored: nothing to guard.
STORED = [lc for lc in LIFECYCLES.values() if not lc.derived]


def _one(db_url: str, sql: str, **params: object) -> object:
    with unit_of_work(db_url) as session:
        return session.execute(text(sql), params).scalar()


@pytest.mark.parametrize("lc", STORED, ids=lambda lc: lc.entity)
def test_the_check_constraint_lists_exactly_the_enum(db_url: str, lc: Lifecycle) -> None:
    definition = _one(
        db_url,
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " WHERE c.conrelid = CAST(:t AS regclass) AND c.conname = :n",
        t=lc.table,
        n=f"{lc.table}_state_known",
    )
    assert isinstance(definition, str)
    assert set(QUOTED.findall(definition)) == {str(s) for s in lc.states}


@pytest.mark.parametrize("lc", STORED, ids=lambda lc: lc.entity)
def test_a_new_row_starts_in_the_initial_state(db_url: str, lc: Lifecycle) -> None:
    default = _one(
        db_url,
        "SELECT column_default FROM information_schema.columns"
        " WHERE table_name = :t AND column_name = 'state'",
        t=lc.table,
    )
    assert isinstance(default, str)
    assert QUOTED.findall(default) == [str(lc.initial)]


@pytest.mark.parametrize("lc", STORED, ids=lambda lc: lc.entity)
def test_the_final_state_trigger_guards_exactly_the_final_states(
    db_url: str, lc: Lifecycle
) -> None:
    definition = _one(
        db_url,
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t"
        " WHERE t.tgrelid = CAST(:t AS regclass) AND t.tgname = :n",
        t=lc.table,
        n=f"{lc.table}_final_state",
    )
    if not lc.final:
        assert definition is None  # a creator's hold has no end
        return
    assert isinstance(definition, str)
    when = definition.split("WHEN", 1)[1]
    assert set(QUOTED.findall(when)) == {str(s) for s in lc.final}


def test_a_state_nobody_named_is_refused(db_url: str) -> None:
    with unit_of_work(db_url) as session:
        session.execute(text("INSERT INTO marketplaces (name) VALUES ('m')"))
        with pytest.raises(DBAPIError, match="creators_state_known"):
            session.execute(
                text(
                    "INSERT INTO creators (marketplace_id, external_id, state)"
                    " SELECT id, 'c', 'on_holiday' FROM marketplaces"
                )
            )
