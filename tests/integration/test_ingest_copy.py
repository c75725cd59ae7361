"""The COPY path of ingest: replays and conflicts found after the insert, request hashes of
both versions, and the references PostgreSQL checks once per statement (migration 0014).

Each test runs in a rolled-back transaction on the shared database (tests/savepoints.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payouts.errors import IdempotencyConflict
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.runtime import Runtime
from payouts.tracking import reports
from tests.apikit import count, ledger_rows

MARKETPLACE = "market"
FOREIGN_KEY_VIOLATION = "23503"
RESTRICT_VIOLATION = "23001"


def _chunk(prefix: str, n: int, creators: int = 40) -> list[Earning]:
    return [Earning(f"{prefix}-{i}", f"c-{i % creators}", 100 + i, "USDC") for i in range(n)]


# -- replays and conflicts -------------------------------------------------------------------


def test_a_chunk_sent_again_is_replayed_with_the_same_answer_and_writes_nothing(
    ledger_runtime: Runtime,
) -> None:
    chunk = _chunk("k", 300)
    first = ingest.record(ledger_runtime, MARKETPLACE, chunk)
    before = ledger_rows(ledger_runtime)
    again = ingest.record(ledger_runtime, MARKETPLACE, list(reversed(chunk)))
    assert [(r.credit_id, r.idempotency_key) for r in reversed(again)] == [
        (r.credit_id, r.idempotency_key) for r in first
    ]
    assert all(r.replayed for r in again)
    assert ledger_rows(ledger_runtime) == before


def test_new_and_replayed_keys_in_one_chunk_are_told_apart(ledger_runtime: Runtime) -> None:
    old = ingest.record(ledger_runtime, MARKETPLACE, _chunk("old", 50))
    mixed = [*_chunk("new", 60), *_chunk("old", 50)]
    results = ingest.record(ledger_runtime, MARKETPLACE, mixed)
    assert [r.replayed for r in results] == [False] * 60 + [True] * 50
    assert [r.credit_id for r in results[60:]] == [r.credit_id for r in old]
    assert len({r.credit_id for r in results}) == 110
    assert count(ledger_runtime, "SELECT count(*) FROM credits") == 110
    with ledger_runtime.uow() as session:
        assert reports.check(session).ok


def test_one_key_with_another_body_refuses_the_whole_chunk_and_leaves_no_row(
    ledger_runtime: Runtime,
) -> None:
    ingest.record(ledger_runtime, MARKETPLACE, [Earning("taken", "c-0", 100, "USDC")])
    before = ledger_rows(ledger_runtime)
    accounts = count(ledger_runtime, "SELECT count(*) FROM accounts")
    # New creators too: the conflict is found after the insert, and undoes it all.
    chunk = [*_chunk("fresh", 200, creators=200), Earning("taken", "c-0", 101, "USDC")]
    with pytest.raises(IdempotencyConflict) as raised:
        ingest.record(ledger_runtime, MARKETPLACE, chunk)
    assert raised.value.keys == ["taken"]
    assert ledger_rows(ledger_runtime) == before
    assert count(ledger_runtime, "SELECT count(*) FROM accounts") == accounts
    # The transaction goes on: the same chunk without the conflict is recorded.
    assert len(ingest.record(ledger_runtime, MARKETPLACE, chunk[:-1])) == 200


def test_a_credit_stored_with_a_version_1_hash_is_compared_in_version_1(
    ledger_runtime: Runtime,
) -> None:
    earning = Earning(
        "legacy", "c-0", 700, "USDC", datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "r", {"b": [1]}
    )
    [first] = ingest.record(ledger_runtime, MARKETPLACE, [Earning("seed", "c-0", 1, "USDC")])
    with ledger_runtime.uow() as session:
        # A row as the code before version 2 wrote it (its hash column is immutable since).
        session.execute(
            text(
                """
                WITH j AS (INSERT INTO journals (kind, cause) VALUES ('earnings', 'v1')
                           RETURNING id),
                c AS (INSERT INTO credits (marketplace_id, creator_id, asset_id, amount,
                                           idempotency_key, request_hash, reference, metadata,
                                           occurred_at, journal_id)
                      SELECT marketplace_id, creator_id, asset_id, 700, 'legacy', :hash, 'r',
                             '{"b": [1]}', :at, (SELECT id FROM j)
                        FROM credits WHERE id = :seed
                      RETURNING id, journal_id)
                INSERT INTO entries (journal_id, account_id, amount, credit_id)
                SELECT c.journal_id, e.account_id, e.amount * 700, CASE WHEN e.amount < 0
                       THEN c.id END
                  FROM c, entries e WHERE e.journal_id = (SELECT journal_id FROM credits
                                                           WHERE id = :seed)
                """
            ),
            {"hash": earning.request_hash_v1(), "at": earning.occurred_at, "seed": first.credit_id},
        )
        session.commit()
    [replayed] = ingest.record(ledger_runtime, MARKETPLACE, [earning])
    assert replayed.replayed
    with pytest.raises(IdempotencyConflict):
        ingest.record(ledger_runtime, MARKETPLACE, [Earning("legacy", "c-0", 701, "USDC")])


def test_request_hashes_are_pinned_so_stored_ones_stay_comparable() -> None:
    """A change of the encoding would turn every replay of a stored earning into a conflict:
    version 2 changes only under a new version prefix, and version 1 never."""
    earning = Earning("k", "alice", 12_345, "USDC", reference="order 1", metadata={"x": 1})
    assert (
        earning.request_hash() == "v2:95e83638a4d1758b4d04f3cc489e4fd62f07a4d4185fa5acfd99c6a21072"
    )
    assert earning.request_hash_v1() == (
        "b0cddf0e7c9ed96757511d883567f510ee0731217bce238958a14dcc11fb9819"
    )
    absent, empty = Earning("k", "a", 1, "USDC"), Earning("k", "a", 1, "USDC", reference="")
    assert absent.request_hash() != empty.request_hash()


# -- references checked per statement ----------------------------------------------------------


def _refused(rt: Runtime, sql: str, params: dict[str, object]) -> str | None:
    with rt.uow() as session:
        with pytest.raises(DBAPIError) as raised:
            session.execute(text(sql), params)
        session.rollback()
    return getattr(raised.value.orig, "sqlstate", None)


def test_a_credit_naming_no_creator_is_refused(ledger_runtime: Runtime) -> None:
    [seed] = ingest.record(ledger_runtime, MARKETPLACE, [Earning("seed", "c-0", 1, "USDC")])
    sql = """
        INSERT INTO credits (marketplace_id, creator_id, asset_id, amount, idempotency_key,
                             request_hash, occurred_at, journal_id)
        SELECT marketplace_id, creator_id + :shift, asset_id, 5, 'orphan-' || g, 'h', now(),
               journal_id
          FROM credits, generate_series(1, 3) g WHERE id = :seed
        """
    assert _refused(ledger_runtime, sql, {"seed": seed.credit_id, "shift": 10**9}) == (
        FOREIGN_KEY_VIOLATION
    )
    assert count(ledger_runtime, "SELECT count(*) FROM credits") == 1


def test_an_entry_naming_no_account_or_journal_is_refused(ledger_runtime: Runtime) -> None:
    [seed] = ingest.record(ledger_runtime, MARKETPLACE, [Earning("seed", "c-0", 1, "USDC")])
    sql = """
        WITH j AS (INSERT INTO journals (kind, cause) VALUES ('test', 'orphans') RETURNING id)
        INSERT INTO entries (journal_id, account_id, amount)
        SELECT CASE WHEN :bad_journal THEN 10^12 ELSE (SELECT id FROM j) END, account_id + :shift,
               amount
          FROM entries WHERE journal_id = (SELECT journal_id FROM credits WHERE id = :seed)
        """
    for bad_journal, shift in ((False, 10**9), (True, 0)):
        params = {"seed": seed.credit_id, "shift": shift, "bad_journal": bad_journal}
        assert _refused(ledger_runtime, sql, params) == FOREIGN_KEY_VIOLATION


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM creators",
        "DELETE FROM accounts",
        "DELETE FROM marketplaces",
        "DELETE FROM assets",
        "UPDATE creators SET id = id + 1000000",
        "UPDATE accounts SET id = id + 1000000",
        "TRUNCATE creators CASCADE",
    ],
)
def test_a_row_credits_and_entries_name_never_goes(ledger_runtime: Runtime, sql: str) -> None:
    ingest.record(ledger_runtime, MARKETPLACE, [Earning("seed", "c-0", 1, "USDC")])
    assert _refused(ledger_runtime, sql, {}) == RESTRICT_VIOLATION
