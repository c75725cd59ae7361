"""Recording earnings: one credit per idempotency key, balanced postings, set-based bulk inserts.

Each test runs in a rolled-back transaction (tests/savepoints.py); the races, which need
connections of their own, are in test_earnings_races.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from config.settings import AssetConfig
from payouts.db import engine_for
from payouts.errors import IdempotencyConflict, InvalidInput
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning
from payouts.runtime import Runtime
from payouts.tracking import reports

MARKETPLACE = "market"
TABLES = ("credits", "entries", "journals", "creators", "accounts", "marketplaces")


def _counts(rt: Runtime) -> dict[str, int]:
    with rt.uow() as session:
        return {
            t: int(session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def _payable(rt: Runtime, external_id: str) -> int:
    """What we owe a creator: the payable account is a liability, so its balance is negative."""
    with rt.uow() as session:
        owed = session.execute(
            text(
                """
                SELECT -coalesce(sum(e.amount), 0) FROM creators c
                  JOIN accounts a ON a.owner_id = c.id AND a.kind = 'creator_payable'
                  JOIN entries e ON e.account_id = a.id
                 WHERE c.external_id = :x
                """
            ),
            {"x": external_id},
        ).scalar_one()
    return int(owed)


def _earnings(n: int, prefix: str = "k", creators: int = 50) -> list[Earning]:
    return [
        Earning(f"{prefix}-{i}", f"creator-{i % creators}", 1_000 + i, "USDC") for i in range(n)
    ]


@contextmanager
def _statements(rt: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = engine_for(rt.database_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


# -- one earning -----------------------------------------------------------------------------


def test_one_earning_is_one_accrued_credit_posted_as_two_legs_that_sum_to_zero(
    ledger_runtime: Runtime,
) -> None:
    [recorded] = ingest.record(
        ledger_runtime,
        MARKETPLACE,
        [Earning("order-1", "alice", 12_345, "USDC", reference="order 1", metadata={"x": 1})],
    )
    assert recorded.replayed is False
    assert recorded.state == "accrued"
    assert recorded.idempotency_key == "order-1"
    with ledger_runtime.uow() as session:
        credit = session.execute(
            text(
                "SELECT amount, state, journal_id, reference, metadata FROM credits WHERE id = :id"
            ),
            {"id": recorded.credit_id},
        ).one()
        assert (int(credit.amount), credit.state) == (12_345, "accrued")
        assert (credit.reference, credit.metadata) == ("order 1", {"x": 1})
        legs = session.execute(
            text(
                "SELECT a.kind, e.amount, e.credit_id FROM entries e"
                " JOIN accounts a ON a.id = e.account_id WHERE e.journal_id = :j ORDER BY a.kind"
            ),
            {"j": credit.journal_id},
        ).all()
    assert [(leg.kind, int(leg.amount)) for leg in legs] == [
        ("creator_payable", -12_345),
        ("marketplace_funding", 12_345),
    ]
    assert sum(int(leg.amount) for leg in legs) == 0
    assert legs[0].credit_id == recorded.credit_id
    assert _payable(ledger_runtime, "alice") == 12_345
    assert _counts(ledger_runtime)["credits"] == 1


def test_the_creator_payable_balance_is_the_sum_of_the_creators_earnings(
    ledger_runtime: Runtime,
) -> None:
    ingest.record(
        ledger_runtime,
        MARKETPLACE,
        [
            Earning("a-1", "alice", 100, "USDC"),
            Earning("a-2", "alice", 250, "USDC"),
            Earning("b-1", "bob", 7, "USDC"),
        ],
    )
    ingest.record(ledger_runtime, MARKETPLACE, [Earning("a-3", "alice", 1_000, "USDC")])
    assert _payable(ledger_runtime, "alice") == 1_350
    assert _payable(ledger_runtime, "bob") == 7
    with ledger_runtime.uow() as session:
        assert reports.check(session).ok


def test_results_come_back_in_the_order_of_the_request(ledger_runtime: Runtime) -> None:
    earnings = _earnings(20)
    results = ingest.record(ledger_runtime, MARKETPLACE, list(reversed(earnings)))
    assert [r.idempotency_key for r in results] == [e.idempotency_key for e in reversed(earnings)]
    assert len({r.credit_id for r in results}) == 20


# -- idempotency -----------------------------------------------------------------------------


def test_the_same_key_and_body_returns_the_first_credit_and_writes_nothing(
    ledger_runtime: Runtime,
) -> None:
    earning = Earning("order-1", "alice", 12_345, "USDC", reference="r", metadata={"a": [1, 2]})
    [first] = ingest.record(ledger_runtime, MARKETPLACE, [earning])
    before = _counts(ledger_runtime)
    [again] = ingest.record(
        ledger_runtime,
        MARKETPLACE,
        [Earning("order-1", "alice", 12_345, "USDC", reference="r", metadata={"a": [1, 2]})],
    )
    assert again.credit_id == first.credit_id
    assert again.replayed is True
    assert first.replayed is False
    assert _counts(ledger_runtime) == before
    assert _payable(ledger_runtime, "alice") == 12_345


def test_a_replayed_batch_flags_only_the_new_keys_as_new(ledger_runtime: Runtime) -> None:
    old = _earnings(3, "old")
    first = ingest.record(ledger_runtime, MARKETPLACE, old)
    new = _earnings(2, "new")
    results = ingest.record(ledger_runtime, MARKETPLACE, [old[0], new[0], old[2], new[1]])
    assert [r.replayed for r in results] == [True, False, True, False]
    assert results[0].credit_id == first[0].credit_id
    assert results[2].credit_id == first[2].credit_id
    assert _counts(ledger_runtime)["credits"] == 5


@pytest.mark.parametrize(
    "changed",
    [
        Earning("order-1", "alice", 12_346, "USDC"),
        Earning("order-1", "bob", 12_345, "USDC"),
        Earning("order-1", "alice", 12_345, "EURC"),
        Earning("order-1", "alice", 12_345, "USDC", reference="other"),
        Earning("order-1", "alice", 12_345, "USDC", metadata={"x": 1}),
    ],
    ids=["amount", "creator", "asset", "reference", "metadata"],
)
def test_the_same_key_with_a_different_body_is_a_conflict_that_writes_nothing(
    ledger_runtime: Runtime, changed: Earning
) -> None:
    # A second configured token, so that the asset too can be the one thing that differs.
    eurc = {"symbol": "EURC", "decimals": 6, "address": "0x" + "e" * 40}
    ledger_runtime.settings.assets.append(AssetConfig.model_validate(eurc))
    [first] = ingest.record(
        ledger_runtime, MARKETPLACE, [Earning("order-1", "alice", 12_345, "USDC")]
    )
    before = _counts(ledger_runtime)
    with pytest.raises(IdempotencyConflict) as raised:
        ingest.record(ledger_runtime, MARKETPLACE, [changed])
    assert raised.value.keys == ["order-1"]
    assert raised.value.code == "idempotency_key_reused"
    assert _counts(ledger_runtime) == before
    with ledger_runtime.uow() as session:
        amount = session.execute(
            text("SELECT amount FROM credits WHERE id = :id"), {"id": first.credit_id}
        ).scalar_one()
        assert amount == 12_345


def test_one_conflicting_item_leaves_no_row_of_the_rest_of_its_batch(
    ledger_runtime: Runtime,
) -> None:
    ingest.record(ledger_runtime, MARKETPLACE, [Earning("order-1", "alice", 100, "USDC")])
    before = _counts(ledger_runtime)
    batch = [
        Earning("fresh-1", "new-creator-1", 500, "USDC"),
        Earning("order-1", "alice", 999, "USDC"),  # the conflict
        Earning("fresh-2", "new-creator-2", 700, "USDC"),
    ]
    with pytest.raises(IdempotencyConflict) as raised:
        ingest.record(ledger_runtime, MARKETPLACE, batch)
    assert raised.value.keys == ["order-1"]
    assert _counts(ledger_runtime) == before
    with ledger_runtime.uow() as session:
        keys = session.execute(text("SELECT idempotency_key FROM credits")).scalars().all()
        assert keys == ["order-1"]


def test_a_key_repeated_with_the_same_body_inside_one_batch_is_recorded_once(
    ledger_runtime: Runtime,
) -> None:
    earning = Earning("order-1", "alice", 300, "USDC")
    results = ingest.record(
        ledger_runtime, MARKETPLACE, [earning, Earning("order-2", "alice", 5, "USDC"), earning]
    )
    assert results[0].credit_id == results[2].credit_id
    assert _counts(ledger_runtime)["credits"] == 2
    assert _payable(ledger_runtime, "alice") == 305


def test_a_key_repeated_with_another_body_inside_one_batch_is_a_conflict(
    ledger_runtime: Runtime,
) -> None:
    with pytest.raises(IdempotencyConflict):
        ingest.record(
            ledger_runtime,
            MARKETPLACE,
            [Earning("order-1", "alice", 300, "USDC"), Earning("order-1", "alice", 301, "USDC")],
        )
    assert _counts(ledger_runtime)["credits"] == 0


def test_idempotency_keys_are_scoped_to_their_marketplace(ledger_runtime: Runtime) -> None:
    [a] = ingest.record(ledger_runtime, "market-a", [Earning("order-1", "alice", 100, "USDC")])
    [b] = ingest.record(ledger_runtime, "market-b", [Earning("order-1", "alice", 999, "USDC")])
    assert a.credit_id != b.credit_id
    assert not a.replayed
    assert not b.replayed
    assert _counts(ledger_runtime)["credits"] == 2


# -- validation ------------------------------------------------------------------------------


def test_an_unknown_asset_is_invalid_input_and_writes_nothing(ledger_runtime: Runtime) -> None:
    with pytest.raises(InvalidInput) as raised:
        ingest.record(ledger_runtime, MARKETPLACE, [Earning("order-1", "alice", 100, "DOGE")])
    assert raised.value.code == "unknown_asset"
    assert raised.value.field == "asset"
    assert _counts(ledger_runtime)["credits"] == 0


def test_an_invalid_item_in_a_batch_is_named_by_its_position(ledger_runtime: Runtime) -> None:
    with pytest.raises(InvalidInput) as raised:
        ingest.record(
            ledger_runtime,
            MARKETPLACE,
            [Earning("order-1", "alice", 100, "USDC"), Earning("order-2", "alice", 100, "DOGE")],
        )
    assert raised.value.code == "unknown_asset"
    assert raised.value.field == "earnings[1].asset"


@pytest.mark.parametrize(
    ("earning", "code", "field"),
    [
        (Earning("", "alice", 100, "USDC"), "invalid_idempotency_key", "idempotency_key"),
        (Earning("k" * 256, "alice", 100, "USDC"), "invalid_idempotency_key", "idempotency_key"),
        (Earning("order-1", "", 100, "USDC"), "invalid_input", "creator_id"),
        (Earning("order-1", "alice", 0, "USDC"), "invalid_amount", "amount"),
        (Earning("order-1", "alice", -5, "USDC"), "invalid_amount", "amount"),
        (Earning("order-1", "alice", True, "USDC"), "invalid_amount", "amount"),
    ],
    ids=["empty-key", "long-key", "empty-creator", "zero", "negative", "bool"],
)
def test_invalid_earnings_are_refused_before_anything_is_written(
    ledger_runtime: Runtime, earning: Earning, code: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        ingest.record(ledger_runtime, MARKETPLACE, [earning])
    assert (raised.value.code, raised.value.field) == (code, field)
    assert _counts(ledger_runtime)["credits"] == 0


def test_an_empty_request_records_nothing(ledger_runtime: Runtime) -> None:
    assert ingest.record(ledger_runtime, MARKETPLACE, []) == []
    assert _counts(ledger_runtime)["credits"] == 0


# -- bulk ------------------------------------------------------------------------------------


def test_a_bulk_of_5000_earnings_takes_a_bounded_number_of_statements(
    ledger_runtime: Runtime,
) -> None:
    ingest.record(ledger_runtime, MARKETPLACE, [Earning("warm-up", "creator-0", 1, "USDC")])
    with _statements(ledger_runtime) as small:
        ingest.record(ledger_runtime, MARKETPLACE, _earnings(100, "small"))
    with _statements(ledger_runtime) as bulk:
        results = ingest.record(ledger_runtime, MARKETPLACE, _earnings(5_000, "bulk", 700))
    assert len(results) == 5_000
    assert not any(r.replayed for r in results)
    assert len(bulk) < 20
    assert len(bulk) == len(small)
    counts = _counts(ledger_runtime)
    assert counts["credits"] == 5_101
    assert counts["journals"] == 3
    assert counts["entries"] == 5_101 + 3  # one payable leg per credit, one funding leg a batch
    with ledger_runtime.uow() as session:
        assert reports.check(session).ok


def test_a_bulk_replay_takes_no_more_statements_than_the_first_recording(
    ledger_runtime: Runtime,
) -> None:
    earnings = _earnings(2_000)
    with _statements(ledger_runtime) as first:
        ingest.record(ledger_runtime, MARKETPLACE, earnings)
    before = _counts(ledger_runtime)
    with _statements(ledger_runtime) as replay:
        results = ingest.record(ledger_runtime, MARKETPLACE, earnings)
    assert all(r.replayed for r in results)
    assert len(replay) <= len(first)
    assert _counts(ledger_runtime) == before
