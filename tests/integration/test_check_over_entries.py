"""``payouts check`` sums the entries once for every check that proves the ledger from them:
each such check still fails on the corruption it exists for, and names what it found."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from payouts.db import UnitOfWork
from payouts.rollup import handlers as rollups
from payouts.runtime import Runtime
from payouts.tracking import reports
from tests.integration.test_rollup import _earn, _give_addresses, _window

CARRIED = "each carried balance equals its carry account's entries"
IN_FLIGHT = "payouts in flight equal the payouts not yet final"
JOURNALS = "every journal sums to zero per asset"

# Each a write only a superuser bypassing the ledger's triggers could make.
CORRUPTIONS = {
    # A carried balance that its entries do not make: the roll-up would pay from it.
    CARRIED: (
        "UPDATE account_balances SET balance = balance - 1 WHERE account_id ="
        " (SELECT min(id) FROM accounts WHERE kind = 'creator_dust')",
        {CARRIED},
    ),
    # A leg on the in-flight account with no payout behind it (and a journal that no
    # longer balances).
    IN_FLIGHT: (
        "INSERT INTO entries (journal_id, account_id, amount)"
        " SELECT max(j.id), (SELECT id FROM accounts WHERE kind = 'payouts_in_flight'), -5"
        " FROM journals j WHERE j.kind = 'rollup'",
        {IN_FLIGHT, JOURNALS, "all balances sum to zero per asset"},
    ),
}


def _rolled_up(rt: Runtime) -> None:
    """Two creators paid with dust carried, so every entry check has rows to prove."""
    _give_addresses(rt, "alice", "bob")
    _earn(rt, ("alice", 12_345), ("bob", 30_077))
    rollups.rollup(rt, window_start=_window())


def _failed(uow: UnitOfWork) -> dict[str, str]:
    with uow() as session:
        report = reports.check(session)
    return {r.name: r.detail for r in report.results if not r.ok}


@pytest.mark.parametrize("broken", sorted(CORRUPTIONS))
def test_an_entry_check_fails_on_its_corruption_and_only_there(
    ledger_runtime: Runtime, uow: UnitOfWork, broken: str
) -> None:
    _rolled_up(ledger_runtime)
    assert _failed(uow) == {}
    sql, expected = CORRUPTIONS[broken]
    with uow() as session:
        session.execute(text("SET LOCAL session_replication_role = replica"))
        session.execute(text(sql))
        session.commit()

    failed = _failed(uow)

    assert set(failed) == expected
    assert failed[broken].startswith("(")  # the offending row, as PostgreSQL prints it


def test_the_checks_over_entries_keep_their_place_among_all_checks(
    ledger_runtime: Runtime, uow: UnitOfWork
) -> None:
    _rolled_up(ledger_runtime)
    heard: list[str] = []
    with uow() as session:
        report = reports.check(session, lambda result: heard.append(result.name))
    assert heard == [r.name for r in report.results] == [name for name, _ in reports.CHECKS]
    assert {name for name, _ in reports.ENTRY_CHECKS} <= set(heard)
