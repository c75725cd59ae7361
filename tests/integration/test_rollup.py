"""The roll-up: accrued credits become one payout per creator, asset and window, exactly once.

The runtime's one asset, USDC, pays from 10_000 base units up in steps of 100. Windows are
fixed by the tests (``rollups.rollup(window_start=...)``), starting after the credits were
created, so that every credit recorded so far falls before the window's end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import text
from typer.testing import CliRunner

from config.settings import get_settings
from payouts.catalog import ensure_marketplace, set_payout_address, set_payout_addresses
from payouts.cli import app
from payouts.db import unit_of_work
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.rollup import handlers as rollups
from payouts.rollup.windows import RollupResult
from payouts.runtime import Runtime
from payouts.tracking import reports
from tests.clikit import table_rows
from tests.waiting import wait_until

MARKETPLACE = "market"
HOUR = timedelta(hours=1)


def _address() -> str:
    return str(Account.create().address)


def _give_addresses(rt: Runtime, *external_ids: str) -> dict[str, str]:
    addresses = {x: _address() for x in external_ids}
    with rt.uow() as session:
        set_payout_addresses(session, ensure_marketplace(session, MARKETPLACE), addresses)
        session.commit()
    return addresses


_keys = iter(range(10**9))


def _earn(rt: Runtime, *items: tuple[str, int]) -> list[int]:
    recorded = ingest.record(
        rt, MARKETPLACE, [Earning(f"e-{next(_keys)}", who, amount, "USDC") for who, amount in items]
    )
    return [r.credit_id for r in recorded]


def _window() -> datetime:
    """A window that ends an hour from now: every credit recorded so far is inside it."""
    return datetime.now(UTC)


def _payouts(rt: Runtime) -> dict[str, tuple[int, str, str, datetime]]:
    """external id -> (amount, recipient, state, window_start) of its payouts, one per window."""
    with rt.uow() as session:
        rows = session.execute(
            text(
                "SELECT c.external_id, p.amount, p.recipient, p.state, p.window_start"
                " FROM payouts p JOIN creators c ON c.id = p.creator_id ORDER BY p.id"
            )
        ).all()
    out: dict[str, tuple[int, str, str, datetime]] = {}
    for r in rows:
        out[f"{r.external_id}@{r.window_start.isoformat()}"] = (
            int(r.amount),
            r.recipient,
            r.state,
            r.window_start,
        )
    return out


def _credit_states(rt: Runtime, ids: list[int]) -> list[str]:
    with rt.uow() as session:
        return list(
            session.execute(
                text(
                    "SELECT state FROM credit_states WHERE credit_id = ANY(:ids) ORDER BY credit_id"
                ),
                {"ids": ids},
            ).scalars()
        )


def _scalar(rt: Runtime, sql: str, **params: object) -> int:
    with rt.uow() as session:
        return int(session.execute(text(sql), params).scalar_one())


def _dust(rt: Runtime, external_id: str) -> int:
    """What the creator's carry account holds (a liability: minus its balance), summed over
    its entries; the balance the roll-up reads (``account_balances``) must say the same."""
    with rt.uow() as session:
        summed, kept = session.execute(
            text(
                """
                SELECT -coalesce(sum(e.amount), 0),
                       -coalesce((SELECT b.balance FROM account_balances b
                                   WHERE b.account_id = a.id), 0)
                  FROM creators c
                  JOIN accounts a ON a.owner_id = c.id AND a.kind = 'creator_dust'
                  LEFT JOIN entries e ON e.account_id = a.id
                 WHERE c.external_id = :x GROUP BY a.id
                """
            ),
            {"x": external_id},
        ).one_or_none() or (0, 0)
    assert summed == kept
    return int(summed)


def _check_ok(rt: Runtime) -> reports.CheckReport:
    with rt.uow() as session:
        report = reports.check(session)
    assert report.ok, [r for r in report.results if not r.ok]
    return report


# -- who is paid, and how much --------------------------------------------------------------


def test_each_creator_with_an_address_gets_one_payout_per_window_and_asset(
    ledger_runtime: Runtime,
) -> None:
    addresses = _give_addresses(ledger_runtime, "alice", "bob")
    credits = _earn(
        ledger_runtime, ("alice", 10_000), ("alice", 5_000), ("bob", 20_000), ("alice", 1_000)
    )
    start = _window()
    result = rollups.rollup(ledger_runtime, window_start=start)
    assert result == RollupResult(start, start + HOUR, True, 2, 4, 36_000)
    payouts = _payouts(ledger_runtime)
    assert sorted(payouts.values()) == sorted(
        [
            (16_000, addresses["alice"], "pending", start),
            (20_000, addresses["bob"], "pending", start),
        ]
    )
    assert _credit_states(ledger_runtime, credits) == ["rolled_up"] * 4
    _check_ok(ledger_runtime)


def test_creators_below_the_minimum_carry_it_and_are_paid_once_they_reach_it(
    ledger_runtime: Runtime,
) -> None:
    _give_addresses(ledger_runtime, "alice", "bob")
    small = _earn(ledger_runtime, ("alice", 6_000), ("alice", 3_000))  # 9_000 < 10_000
    paid = _earn(ledger_runtime, ("bob", 10_000))
    first = _window()
    result = rollups.rollup(ledger_runtime, window_start=first)
    assert (result.payouts, result.credits, result.total) == (1, 1, 10_000)
    assert _credit_states(ledger_runtime, small) == ["carried", "carried"]
    assert _credit_states(ledger_runtime, paid) == ["rolled_up"]
    assert _dust(ledger_runtime, "alice") == 9_000

    # still short in the next window: nothing for alice
    rollups.rollup(ledger_runtime, window_start=first + HOUR)
    assert _credit_states(ledger_runtime, small) == ["carried", "carried"]

    more = _earn(ledger_runtime, ("alice", 1_000))
    result = rollups.rollup(ledger_runtime, window_start=first + 2 * HOUR)
    assert (result.payouts, result.credits, result.total) == (1, 1, 10_000)
    assert _credit_states(ledger_runtime, small + more) == ["carried", "carried", "rolled_up"]
    assert _dust(ledger_runtime, "alice") == 0
    alice = [p for k, p in _payouts(ledger_runtime).items() if k.startswith("alice@")]
    assert [(p[0], p[3]) for p in alice] == [(10_000, first + 2 * HOUR)]
    _check_ok(ledger_runtime)


def test_a_creator_without_a_payout_address_carries_until_they_set_one(
    ledger_runtime: Runtime,
) -> None:
    _give_addresses(ledger_runtime, "bob")
    waiting = _earn(ledger_runtime, ("alice", 50_000))
    _earn(ledger_runtime, ("bob", 50_000))
    start = _window()
    result = rollups.rollup(ledger_runtime, window_start=start)
    assert result.payouts == 1
    assert list(_payouts(ledger_runtime)) == [f"bob@{start.isoformat()}"]
    assert _credit_states(ledger_runtime, waiting) == ["carried"]
    _check_ok(ledger_runtime)

    # paid on what they carry alone, though they earned nothing since
    addresses = _give_addresses(ledger_runtime, "alice")
    rollups.rollup(ledger_runtime, window_start=start + HOUR)
    assert _dust(ledger_runtime, "alice") == 0
    assert _payouts(ledger_runtime)[f"alice@{(start + HOUR).isoformat()}"][:2] == (
        50_000,
        addresses["alice"],
    )


def test_a_creator_on_hold_after_an_address_change_waits_for_the_hold_to_end(
    ledger_runtime: Runtime,
) -> None:
    _give_addresses(ledger_runtime, "alice")
    with ledger_runtime.uow() as session:
        marketplace_id = ensure_marketplace(session, MARKETPLACE)
        set_payout_address(session, marketplace_id, "alice", _address(), cool_down=HOUR * 24)
        session.commit()
    held = _earn(ledger_runtime, ("alice", 50_000))
    assert rollups.rollup(ledger_runtime, window_start=_window()).payouts == 0
    assert _credit_states(ledger_runtime, held) == ["carried"]
    assert _dust(ledger_runtime, "alice") == 50_000


# -- rounding and dust -----------------------------------------------------------------------


def test_a_rounded_payout_carries_its_dust_into_the_next_window(ledger_runtime: Runtime) -> None:
    _give_addresses(ledger_runtime, "alice")
    _earn(ledger_runtime, ("alice", 12_345))
    first = _window()
    assert rollups.rollup(ledger_runtime, window_start=first).total == 12_300
    assert _dust(ledger_runtime, "alice") == 45
    _check_ok(ledger_runtime)

    # 10_000 + 45 carried pays 10_000: the 45 is still carried
    _earn(ledger_runtime, ("alice", 10_000))
    assert rollups.rollup(ledger_runtime, window_start=first + HOUR).total == 10_000
    assert _dust(ledger_runtime, "alice") == 45

    # 10_055 + 45 carried pays 10_100: the dust is used up
    _earn(ledger_runtime, ("alice", 10_055))
    assert rollups.rollup(ledger_runtime, window_start=first + 2 * HOUR).total == 10_100
    assert _dust(ledger_runtime, "alice") == 0

    amounts = sorted(p[0] for p in _payouts(ledger_runtime).values())
    assert amounts == [10_000, 10_100, 12_300]
    credited = _scalar(ledger_runtime, "SELECT sum(amount) FROM credits")
    assert sum(amounts) + _dust(ledger_runtime, "alice") == credited == 32_400
    _check_ok(ledger_runtime)


def _accounts_of(rt: Runtime, external_id: str) -> list[str]:
    with rt.uow() as session:
        return list(
            session.execute(
                text(
                    "SELECT a.kind FROM accounts a JOIN creators c ON c.id = a.owner_id"
                    " WHERE c.external_id = :x AND a.kind LIKE 'creator_%' ORDER BY a.kind"
                ),
                {"x": external_id},
            ).scalars()
        )


def test_a_new_creator_gets_its_carry_account_with_its_payable_one(
    ledger_runtime: Runtime,
) -> None:
    """Created once at ingest, not by the hourly roll-up; it holds no balance until a
    roll-up carries something, and then the balance the roll-up reads is its entries'."""
    _give_addresses(ledger_runtime, "newcomer")
    _earn(ledger_runtime, ("newcomer", 12_345))
    assert _accounts_of(ledger_runtime, "newcomer") == ["creator_dust", "creator_payable"]
    assert _scalar(ledger_runtime, "SELECT count(*) FROM account_balances") == 0
    assert rollups.rollup(ledger_runtime, window_start=_window()).total == 12_300
    assert _dust(ledger_runtime, "newcomer") == 45
    _check_ok(ledger_runtime)


def test_a_creator_from_before_carry_accounts_came_with_payable_ones_still_carries(
    ledger_runtime: Runtime,
) -> None:
    """A ledger written before ingest made carry accounts holds creators with a payable
    account only: the roll-up creates the carry account the first time it carries."""
    _give_addresses(ledger_runtime, "veteran")
    with ledger_runtime.uow() as session:
        ledger_runtime.sync_assets(session)
        creator, asset = session.execute(
            text(
                "SELECT c.id, a.id FROM creators c, assets a"
                " WHERE c.external_id = 'veteran' AND a.symbol = 'USDC'"
            )
        ).one()
        ensure_accounts(session, [(AccountKind.CREATOR_PAYABLE, creator, asset)])
        session.commit()
    _earn(ledger_runtime, ("veteran", 12_345))
    assert _accounts_of(ledger_runtime, "veteran") == ["creator_payable"]
    assert rollups.rollup(ledger_runtime, window_start=_window()).total == 12_300
    assert _accounts_of(ledger_runtime, "veteran") == ["creator_dust", "creator_payable"]
    assert _dust(ledger_runtime, "veteran") == 45
    _earn(ledger_runtime, ("veteran", 10_055))
    assert rollups.rollup(ledger_runtime, window_start=_window() + HOUR).total == 10_100
    assert _dust(ledger_runtime, "veteran") == 0
    _check_ok(ledger_runtime)


def test_nothing_is_lost_to_rounding_across_many_creators_and_windows(
    ledger_runtime: Runtime,
) -> None:
    creators = [f"creator-{i}" for i in range(30)]
    _give_addresses(ledger_runtime, *creators)
    start = _window()
    for window in range(3):
        _earn(ledger_runtime, *[(c, 3_337 + 1_013 * i + window) for i, c in enumerate(creators)])
        rollups.rollup(ledger_runtime, window_start=start + window * HOUR)
    paid = _scalar(ledger_runtime, "SELECT coalesce(sum(amount), 0) FROM payouts")
    owed = _scalar(
        ledger_runtime,
        "SELECT coalesce(sum(c.amount), 0) FROM credits c JOIN credit_states s"
        " ON s.credit_id = c.id WHERE s.state = 'accrued'",
    )
    dust = sum(_dust(ledger_runtime, c) for c in creators)
    assert paid + dust + owed == _scalar(ledger_runtime, "SELECT sum(amount) FROM credits")
    assert _scalar(ledger_runtime, "SELECT count(*) FROM payouts WHERE amount % 100 <> 0") == 0
    _check_ok(ledger_runtime)


# -- exactly once ----------------------------------------------------------------------------


def _row_counts(rt: Runtime) -> dict[str, int]:
    tables = ("payouts", "rollup_runs", "journals", "entries", "transitions")
    return {t: _scalar(rt, f"SELECT count(*) FROM {t}") for t in tables}


def test_rolling_up_the_same_window_twice_creates_nothing_the_second_time(
    ledger_runtime: Runtime,
) -> None:
    _give_addresses(ledger_runtime, "alice", "bob")
    _earn(ledger_runtime, ("alice", 12_345), ("bob", 20_000))
    start = _window()
    first = rollups.rollup(ledger_runtime, window_start=start)
    before = _row_counts(ledger_runtime)
    _earn(ledger_runtime, ("alice", 50_000))  # arrives late: belongs to a later window
    again = rollups.rollup(ledger_runtime, window_start=start)
    assert first.created is True
    assert again == RollupResult(start, start + HOUR, False, 2, 2, 32_300)
    after = _row_counts(ledger_runtime)
    assert after["payouts"] == before["payouts"]
    assert after["rollup_runs"] == before["rollup_runs"]
    assert after["transitions"] == before["transitions"]
    _check_ok(ledger_runtime)


def _waiting_on(db_url: str, table: str) -> int:
    """Sessions waiting on ``table``, or on the advisory lock runs take in turn."""
    with unit_of_work(db_url) as session:
        waiting = session.execute(
            text(
                """
                SELECT count(*) FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
                 WHERE (c.relname = :t OR l.locktype = 'advisory') AND NOT l.granted
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """
            ),
            {"t": table},
        ).scalar_one()
    return int(waiting)


def _racing_rollups(rt: Runtime, db_url: str) -> tuple[list[RollupResult], list[BaseException]]:
    """Twenty creators owed 15_000 each; two roll-ups of one window let go at the same instant.

    A third session holds a lock that blocks the roll-ups' first INSERT (into rollup_runs)
    until one waits on it and the other on the first's turn, so they truly overlap.
    """
    creators = [f"creator-{i}" for i in range(20)]
    _give_addresses(rt, *creators)
    _earn(rt, *[(c, 15_000) for c in creators])
    start = _window()
    results: list[RollupResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(rollups.rollup(rt, window_start=start))
        except BaseException as exc:  # noqa: BLE001 - asserted by the tests
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    with unit_of_work(db_url) as gate:
        gate.execute(text("LOCK TABLE rollup_runs IN SHARE ROW EXCLUSIVE MODE"))
        for t in threads:
            t.start()
        wait_until(
            lambda: _waiting_on(db_url, "rollup_runs") >= 2,
            timeout=20,
            interval=0.01,
            what="both roll-ups to reach their insert",
        )
        gate.rollback()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    return results, errors


def test_two_concurrent_rollups_of_one_window_make_exactly_one_set_of_payouts(
    committed_ledger_runtime: Runtime, db_url: str
) -> None:
    results, _ = _racing_rollups(committed_ledger_runtime, db_url)
    assert [r.created for r in results].count(True) == 1
    assert _scalar(committed_ledger_runtime, "SELECT count(*) FROM payouts") == 20
    assert _scalar(committed_ledger_runtime, "SELECT count(*) FROM rollup_runs") == 1
    rolled_up = "SELECT count(*) FROM credit_states WHERE state = 'rolled_up'"
    assert _scalar(committed_ledger_runtime, rolled_up) == 20
    audited = "SELECT count(*) FROM transitions WHERE entity = 'payout'"
    assert _scalar(committed_ledger_runtime, audited) == 20
    _check_ok(committed_ledger_runtime)


def test_the_loser_of_two_concurrent_rollups_is_a_no_op_that_reports_the_winners_run(
    committed_ledger_runtime: Runtime, db_url: str
) -> None:
    """rollup.py: "a second run (a retried task, a second beat) [is] a no-op that waits for the
    first to commit" -- also when the second run started before the first committed."""
    results, errors = _racing_rollups(committed_ledger_runtime, db_url)
    assert errors == []
    assert sorted(r.created for r in results) == [False, True]
    assert {(r.payouts, r.credits, r.total) for r in results} == {(20, 20, 300_000)}


# -- audit, links and the check --------------------------------------------------------------


def test_one_audit_row_per_payout_and_each_credit_points_at_its_creators_payout(
    ledger_runtime: Runtime,
) -> None:
    _give_addresses(ledger_runtime, "alice", "bob", "carol")
    credits = _earn(
        ledger_runtime,
        ("alice", 10_000),
        ("bob", 11_000),
        ("alice", 2_000),
        ("carol", 500),  # below the minimum: carried, in no payout
        ("bob", 300),
    )
    rollups.rollup(ledger_runtime, window_start=_window(), actor="operator")
    with ledger_runtime.uow() as session:
        rows = session.execute(
            text(
                """
                SELECT c.id, s.state, c.creator_id, c.asset_id, s.payout_id,
                       p.creator_id AS payout_creator, p.asset_id AS payout_asset
                  FROM credits c JOIN credit_states s ON s.credit_id = c.id
                  LEFT JOIN payouts p ON p.id = s.payout_id
                 WHERE c.id = ANY(:ids) ORDER BY c.id
                """
            ),
            {"ids": credits},
        ).all()
        audit = session.execute(
            text(
                "SELECT entity, entity_id, from_state, to_state, actor, cause FROM transitions"
                " ORDER BY id"
            )
        ).all()
        payouts = session.execute(text("SELECT id, rollup_run_id FROM payouts ORDER BY id")).all()
    rolled = [r for r in rows if r.state == "rolled_up"]
    assert len(rolled) == 4
    for r in rolled:
        assert (r.payout_creator, r.payout_asset) == (r.creator_id, r.asset_id)
    [carol] = [r for r in rows if r.state == "carried"]
    assert carol.payout_id is None
    # no credit is written to: one audit row per payout, its creation
    assert [tuple(a) for a in audit] == [
        ("payout", p.id, None, "pending", "operator", f"rolled up in run {p.rollup_run_id}")
        for p in payouts
    ]
    # a payout's amount is the sum of its credits (no dust in these amounts)
    with ledger_runtime.uow() as session:
        mismatched = session.execute(
            text(
                "SELECT p.id FROM payouts p JOIN credit_states s ON s.payout_id = p.id"
                " JOIN credits c ON c.id = s.credit_id"
                " GROUP BY p.id, p.amount HAVING sum(c.amount) <> p.amount"
            )
        ).all()
    assert mismatched == []


def test_the_rollup_journal_moves_payable_into_payouts_in_flight(ledger_runtime: Runtime) -> None:
    _give_addresses(ledger_runtime, "alice")
    _earn(ledger_runtime, ("alice", 12_345))
    rollups.rollup(ledger_runtime, window_start=_window())
    with ledger_runtime.uow() as session:
        legs = session.execute(
            text(
                "SELECT a.kind, e.amount FROM entries e JOIN accounts a ON a.id = e.account_id"
                " JOIN journals j ON j.id = e.journal_id WHERE j.kind = 'rollup' ORDER BY a.kind"
            )
        ).all()
    assert [(leg.kind, int(leg.amount)) for leg in legs] == [
        ("creator_dust", -45),
        ("creator_payable", 12_345),
        ("payouts_in_flight", -12_300),
    ]


@pytest.fixture
def cli_env(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    env = {"PAYOUTS_DATABASE_URL": db_url, "PAYOUTS_STATE_DIR": str(tmp_path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def test_check_passes_after_a_rollup_and_reports_a_corrupted_ledger(
    committed_ledger_runtime: Runtime, db_url: str, cli_env: dict[str, str]
) -> None:
    _give_addresses(committed_ledger_runtime, "alice", "bob")
    _earn(committed_ledger_runtime, ("alice", 12_345), ("bob", 30_000), ("bob", 77))
    rollups.rollup(committed_ledger_runtime, window_start=_window())
    report = _check_ok(committed_ledger_runtime)
    assert len(report.results) >= 5
    runner = CliRunner(env=cli_env)
    healthy = runner.invoke(app, ["check"])
    assert healthy.exit_code == 0, healthy.output
    assert "FAIL" not in healthy.output

    # Corrupt the ledger as only a superuser bypassing the triggers could.
    with unit_of_work(db_url) as session:
        session.execute(text("SET LOCAL session_replication_role = replica"))
        session.execute(
            text(
                """
                INSERT INTO entries (journal_id, account_id, amount)
                SELECT j.id, a.id, 1 FROM journals j, accounts a
                 WHERE j.kind = 'earnings' AND a.kind = 'creator_payable'
                 ORDER BY j.id, a.id LIMIT 1
                """
            )
        )
        session.commit()

    with unit_of_work(db_url) as session:
        report = reports.check(session)
    assert not report.ok
    failed = {r.name for r in report.results if not r.ok}
    assert "every journal sums to zero per asset" in failed
    assert "all balances sum to zero per asset" in failed
    assert "creator payable balance equals the creator's unrolled credits" in failed

    broken = runner.invoke(app, ["check"])
    assert broken.exit_code == 1, broken.output
    assert ["FAIL", "every journal sums to zero per asset"] in [
        row[:2] for row in table_rows(broken.output)
    ]
