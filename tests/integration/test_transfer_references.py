"""Matched transfers check the batch and payout they name once per statement (migration 0019),
and the database still refuses an orphan as the foreign keys did; what they name never goes."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payouts.db import UnitOfWork
from payouts.runtime import Runtime
from tests.integration.test_ledger_guards import _one_payout

FOREIGN_KEY_VIOLATION = "23503"


def _batch_of(uow: UnitOfWork, payout_id: int) -> int:
    """A batch row holding the payout (written directly: no chain is needed to name one)."""
    with uow() as session:
        batch_id = int(
            session.execute(
                text(
                    "INSERT INTO batches (public_id, asset_id, chain_id, payer, item_count, total)"
                    " SELECT gen_random_uuid(), asset_id, 31337, recipient, 1, amount"
                    " FROM payouts WHERE id = :p RETURNING id"
                ),
                {"p": payout_id},
            ).scalar_one()
        )
        session.commit()
    return batch_id


def _transfers(batch: str, payout: str) -> str:
    """Two transfers in one statement: a good one, and one naming ``batch`` and ``payout``."""
    return (
        "INSERT INTO onchain_transfers (batch_id, position, payout_id, recipient, amount,"
        " tx_hash, log_index, block_number, block_hash, succeeded)"
        " SELECT :b, 0, :p, recipient, amount, '0xaa', 0, 1, '0xbb', true"
        " FROM payouts WHERE id = :p"
        f" UNION ALL SELECT {batch}, 1, {payout}, recipient, amount, '0xaa', 1, 1, '0xbb', true"
        " FROM payouts WHERE id = :p"
    )


def _refused(uow: UnitOfWork, sql: str, params: dict[str, int], match: str) -> str | None:
    with uow() as session:
        with pytest.raises(DBAPIError, match=match) as raised:
            session.execute(text(sql), params)
        session.rollback()
    return getattr(raised.value.orig, "sqlstate", None)


@pytest.mark.parametrize(
    ("batch", "payout", "match"),
    [
        (":b + 1000", ":p", r"onchain_transfers: batch_id \d+ names no row of batches"),
        (":b", ":p + 1000", r"onchain_transfers: payout_id \d+ names no row of payouts"),
    ],
)
def test_a_transfer_naming_a_missing_batch_or_payout_is_refused(
    ledger_runtime: Runtime, uow: UnitOfWork, batch: str, payout: str, match: str
) -> None:
    payout_id = _one_payout(ledger_runtime)
    batch_id = _batch_of(uow, payout_id)
    params = {"b": batch_id, "p": payout_id}
    assert _refused(uow, _transfers(batch, payout), params, match) == FOREIGN_KEY_VIOLATION
    with uow() as session:
        assert session.execute(text("SELECT count(*) FROM onchain_transfers")).scalar_one() == 0
        # Without a payout (a transfer the exact path tied to none) it is not looked up.
        session.execute(text(_transfers(":b", "NULL")), params)
        assert session.execute(text("SELECT count(*) FROM onchain_transfers")).scalar_one() == 2


def _many_transfers(rows: int, last_payout: str) -> str:
    """``rows`` transfers in one statement (a reconciliation's size, planned for itself above a
    thousand): every other one tied to no payout, the rest to ``:p``, the last to
    ``last_payout``."""
    return (
        "INSERT INTO onchain_transfers (batch_id, position, payout_id, recipient, amount,"
        " tx_hash, log_index, block_number, block_hash, succeeded)"
        f" SELECT :b, g, CASE WHEN g = {rows} THEN {last_payout}"
        " WHEN g % 2 = 0 THEN NULL ELSE :p END, recipient, amount, '0xaa', g, 1, '0xbb', true"
        f" FROM payouts, generate_series(1, {rows}) g WHERE id = :p"
    )


def test_a_large_statement_is_checked_by_one_join_and_still_refuses_an_orphan(
    ledger_runtime: Runtime, uow: UnitOfWork
) -> None:
    """Above a thousand rows the check is planned for the statement's size (migration 0026):
    the orphan at the end is found past the transfers tied to no payout, and the same
    statement without it is taken whole."""
    payout_id = _one_payout(ledger_runtime)
    batch_id = _batch_of(uow, payout_id)
    params = {"b": batch_id, "p": payout_id}
    match = r"onchain_transfers: payout_id \d+ names no row of payouts"
    assert _refused(uow, _many_transfers(1500, ":p + 1000"), params, match) == "23503"
    with uow() as session:
        session.execute(text(_many_transfers(1500, ":p")), params)
        assert session.execute(text("SELECT count(*) FROM onchain_transfers")).scalar_one() == 1500


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("TRUNCATE batches CASCADE", "append-only"),
        ("TRUNCATE payouts CASCADE", "append-only"),
        ("UPDATE batches SET id = id + 1000 WHERE id = :b", "never change"),
        ("UPDATE payouts SET id = id + 1000 WHERE id = :p", "never change"),
        ("DELETE FROM batches WHERE id = :b", "append-only"),
    ],
)
def test_what_a_transfer_names_never_goes(
    ledger_runtime: Runtime, uow: UnitOfWork, sql: str, match: str
) -> None:
    payout_id = _one_payout(ledger_runtime)
    batch_id = _batch_of(uow, payout_id)
    params = {"b": batch_id, "p": payout_id}
    with uow() as session:
        session.execute(text(_transfers(":b", ":p")), params)
        session.commit()
    _refused(uow, sql, params, match)
    with uow() as session:
        named = session.execute(
            text(
                "SELECT count(*) FROM onchain_transfers o JOIN batches b ON b.id = o.batch_id"
                " JOIN payouts p ON p.id = o.payout_id"
            )
        ).scalar_one()
    assert named == 2
