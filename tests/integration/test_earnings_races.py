"""Recording earnings from concurrent requests: every key is credited once, whoever wins.

These need connections of their own (threads racing into the same table), so each test has a
database of its own with real commits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest
from sqlalchemy import text

from payouts.catalog import ensure_marketplace
from payouts.db import unit_of_work
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning, Recorded, record_earnings
from payouts.runtime import Runtime
from payouts.tracking import reports
from tests.waiting import wait_until

MARKETPLACE = "market"
TABLES = ("credits", "entries", "journals", "creators", "accounts", "marketplaces")


def _counts(db_url: str) -> dict[str, int]:
    with unit_of_work(db_url) as session:
        return {
            t: int(session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def _earnings(n: int, prefix: str = "k", creators: int = 50) -> list[Earning]:
    return [
        Earning(f"{prefix}-{i}", f"creator-{i % creators}", 1_000 + i, "USDC") for i in range(n)
    ]


def _in_threads(calls: Sequence[Callable[[], list[Recorded]]]) -> list[list[Recorded]]:
    results: list[list[Recorded] | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    return _joined(threads, results, errors)


def _joined(
    threads: list[threading.Thread],
    results: list[list[Recorded] | None],
    errors: list[BaseException],
) -> list[list[Recorded]]:
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert errors == []
    return [r for r in results if r is not None]


def _waiting_on(db_url: str, table: str) -> int:
    with unit_of_work(db_url) as session:
        return int(
            session.execute(
                text(
                    """
                    SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                     WHERE c.relname = :t AND NOT l.granted
                       AND l.database = (SELECT oid FROM pg_database
                                          WHERE datname = current_database())
                    """
                ),
                {"t": table},
            ).scalar_one()
        )


def _record_racing(
    rt: Runtime, db_url: str, batches: Sequence[list[Earning]]
) -> list[list[Recorded]]:
    """Let every batch read "no such key" first, then race them into the credits table.

    A third session holds a lock that blocks INSERT (not SELECT) on credits until every
    recording waits on it, so the recordings truly overlap on the same keys.
    """
    results: list[list[Recorded] | None] = [None] * len(batches)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            with unit_of_work(db_url) as session:
                marketplace_id = ensure_marketplace(session, MARKETPLACE)
                results[index] = record_earnings(session, marketplace_id, batches[index])
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    with unit_of_work(db_url) as gate:
        gate.execute(text("LOCK TABLE credits IN SHARE ROW EXCLUSIVE MODE"))
        for t in threads:
            t.start()
        wait_until(
            lambda: _waiting_on(db_url, "credits") >= len(batches),
            timeout=20,
            interval=0.01,
            what="every recording to reach the insert",
        )
        gate.rollback()
    return _joined(threads, results, errors)


@pytest.fixture
def known_creators(committed_ledger_runtime: Runtime) -> None:
    """The creators and their accounts exist, so concurrent recordings only race on credits."""
    ingest.record(
        committed_ledger_runtime,
        MARKETPLACE,
        [Earning(f"seed-{i}", f"creator-{i}", 1, "USDC") for i in range(50)],
    )


def test_two_threads_recording_the_same_keys_yield_one_credit_per_key(
    committed_ledger_runtime: Runtime, db_url: str, known_creators: None
) -> None:
    earnings = _earnings(200)
    first, second = _record_racing(committed_ledger_runtime, db_url, [earnings, earnings])
    assert [r.credit_id for r in first] == [r.credit_id for r in second]
    # each key is new for exactly one of the two requests
    for a, b in zip(first, second, strict=True):
        assert sorted([a.replayed, b.replayed]) == [False, True]
    with unit_of_work(db_url) as session:
        per_key = session.execute(
            text(
                "SELECT idempotency_key, count(*) FROM credits WHERE idempotency_key LIKE 'k-%'"
                " GROUP BY 1"
            )
        ).all()
        assert len(per_key) == 200
        assert {n for _, n in per_key} == {1}
        assert reports.check(session).ok


def test_two_threads_recording_the_same_keys_in_opposite_orders_yield_one_credit_per_key(
    committed_ledger_runtime: Runtime, db_url: str, known_creators: None
) -> None:
    """A retried batch need not keep its order; the two requests meet in the middle."""
    earnings = _earnings(2_000)
    first, second = _record_racing(committed_ledger_runtime, db_url, [earnings, earnings[::-1]])
    assert [r.credit_id for r in first] == [r.credit_id for r in reversed(second)]
    with unit_of_work(db_url) as session:
        assert (
            session.execute(
                text("SELECT count(*) FROM credits WHERE idempotency_key LIKE 'k-%'")
            ).scalar_one()
            == 2_000
        )
        assert reports.check(session).ok


def test_two_services_recording_the_same_new_creators_at_once_agree(
    committed_ledger_runtime: Runtime, db_url: str
) -> None:
    earnings = _earnings(300, creators=300)
    first, second = _in_threads(
        [
            lambda: ingest.record(committed_ledger_runtime, MARKETPLACE, earnings),
            lambda: ingest.record(committed_ledger_runtime, MARKETPLACE, earnings),
        ]
    )
    assert [r.credit_id for r in first] == [r.credit_id for r in second]
    counts = _counts(db_url)
    assert counts["credits"] == 300
    assert counts["creators"] == 300
    with unit_of_work(db_url) as session:
        assert reports.check(session).ok
