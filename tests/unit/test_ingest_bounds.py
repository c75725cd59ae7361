"""The bounds hold in ``ingest`` itself, so the CLI, the demo and the benchmarks hold them too.

These record through the handler the demo and the benchmarks call, on the shared database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from payouts.errors import InvalidInput
from payouts.ingest import handlers as ingest
from payouts.ingest.earnings import Earning, Recorded, record_earnings
from payouts.runtime import Runtime
from tests.apikit import count

USDC_CEILING = 10**12


def _refused(rt: Runtime, earnings: list[Earning], code: str, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        ingest.record(rt, "market", earnings)
    assert (raised.value.code, raised.value.field) == (code, field)
    assert count(rt, "SELECT count(*) FROM credits") == 0


def test_an_amount_above_the_assets_default_ceiling_is_refused(ledger_runtime: Runtime) -> None:
    _refused(
        ledger_runtime,
        [Earning("k-1", "alice", 5, "USDC"), Earning("k-2", "alice", USDC_CEILING + 1, "USDC")],
        "amount_too_large",
        "earnings[1].amount",
    )


def test_an_amount_at_the_ceiling_is_recorded(ledger_runtime: Runtime) -> None:
    (recorded,) = ingest.record(ledger_runtime, "market", [Earning("k", "a", USDC_CEILING, "USDC")])
    assert not recorded.replayed


def test_a_configured_ceiling_is_held_when_the_caller_passes_it(ledger_runtime: Runtime) -> None:
    ledger_runtime.asset_ids()
    with ledger_runtime.uow() as session, pytest.raises(InvalidInput) as raised:
        record_earnings(session, 1, [Earning("k", "a", 101, "USDC")], limits={"USDC": 100})
    assert raised.value.code == "amount_too_large"


def test_an_asset_left_out_of_the_callers_limits_is_unknown(ledger_runtime: Runtime) -> None:
    ledger_runtime.asset_ids()
    with ledger_runtime.uow() as session, pytest.raises(InvalidInput) as raised:
        record_earnings(session, 1, [Earning("k", "a", 1, "ETH")], limits={"USDC": 100})
    assert raised.value.code == "unknown_asset"


@pytest.mark.parametrize("key", ["ключ-é", "a b", "tab\t", "\x7f", "k" * 256, ""])
def test_a_key_that_is_not_1_to_255_visible_ascii_characters_is_refused(
    ledger_runtime: Runtime, key: str
) -> None:
    _refused(
        ledger_runtime,
        [Earning(key, "alice", 5, "USDC")],
        "invalid_idempotency_key",
        "idempotency_key",
    )


@pytest.mark.parametrize(
    "occurred_at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=5))),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-12, minutes=-1))),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, seconds=1))),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 1, 1),  # naive
    ],
    ids=["year-1", "year-9999", "plus-23h05", "minus-12h01", "offset-seconds", "1999", "naive"],
)
def test_an_occurred_at_out_of_range_or_offset_is_refused(
    ledger_runtime: Runtime, occurred_at: datetime
) -> None:
    _refused(
        ledger_runtime,
        [Earning("k", "alice", 5, "USDC", occurred_at=occurred_at)],
        "invalid_occurred_at",
        "occurred_at",
    )


def test_an_occurred_at_more_than_a_day_ahead_is_refused(ledger_runtime: Runtime) -> None:
    ahead = datetime.now(UTC) + timedelta(days=1, minutes=1)
    _refused(
        ledger_runtime,
        [Earning("k", "alice", 5, "USDC", occurred_at=ahead)],
        "invalid_occurred_at",
        "occurred_at",
    )


def test_the_same_earning_twice_in_one_call_is_one_credit(ledger_runtime: Runtime) -> None:
    same = Earning("k-1", "alice", 5, "USDC")

    recorded = ingest.record(
        ledger_runtime, "market", [same, Earning("k-2", "bob", 7, "USDC"), same]
    )

    assert [r.replayed for r in recorded] == [False, False, True]
    assert recorded[0].credit_id == recorded[2].credit_id
    assert isinstance(recorded[2], Recorded)
    assert count(ledger_runtime, "SELECT count(*) FROM credits") == 2
