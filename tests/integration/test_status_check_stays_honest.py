"""``payouts check`` reads canonical inclusions only, and that filter hides no double payment.

The rows below are written as a buggy code path would write them (plain SQL on a ledger that a
real chain run settled): a second transaction paying a finalized payout, and a record saying an
inclusion was orphaned when no reorg took it away. The record of orphaned inclusions is
append-only, like the transfers it qualifies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payouts.db import UnitOfWork
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.tracking import reports
from tests.chainkit import assert_books_balance, mine, roll_up_now, seed, settle_and_submit

TWO_TRANSACTIONS = "no payout was paid by two transactions"
EXACTLY_ONCE = "every finalized payout was paid on chain exactly once"
ORPHANED_PAYMENT = "no finalized payout's paying transfer is in an orphaned inclusion"
OTHER_TX = "0x" + "ab" * 32
OTHER_BLOCK = "0x" + "cd" * 32


def settled(rt: Runtime) -> Any:
    """Three payouts paid on anvil and final; returns one of them with its batch's inclusion."""
    seed(rt, creators=3)
    roll_up_now(rt)
    settle_and_submit(rt)
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert_books_balance(rt)
    with rt.uow() as session:
        return session.execute(
            text(
                "SELECT p.id, p.recipient, p.amount, b.id AS batch_id, b.tx_hash, b.block_hash,"
                " b.block_number, i.position FROM payouts p JOIN batches b ON b.id = p.batch_id"
                " JOIN batch_items i ON i.batch_id = b.id AND i.payout_id = p.id"
                " WHERE p.state = 'finalized' ORDER BY p.id LIMIT 1"
            )
        ).one()


def pay_again(rt: Runtime, paid: Any) -> None:
    """A second transaction, in a canonical block, paying the same payout."""
    with rt.uow() as session:
        session.execute(
            text(
                "INSERT INTO onchain_transfers (batch_id, position, payout_id, recipient, amount,"
                " log_index, succeeded, tx_hash, block_number, block_hash)"
                " VALUES (:b, :pos, :p, :r, :a, 0, true, :tx, :n, :bh)"
            ),
            {
                "b": paid.batch_id,
                "pos": paid.position,
                "p": paid.id,
                "r": paid.recipient,
                "a": paid.amount,
                "tx": OTHER_TX,
                "n": paid.block_number + 1,
                "bh": OTHER_BLOCK,
            },
        )
        session.commit()


def record_orphaned(
    rt: Runtime, batch_id: int, block_number: int, block_hash: str, tx: str
) -> None:
    """An orphan record no reorg wrote: after the batch's last move, nothing landed since."""
    with rt.uow() as session:
        session.execute(
            text(
                "INSERT INTO orphaned_inclusions (block_hash, tx_hash, batch_id, block_number,"
                " unwound_by) VALUES (:bh, :tx, :b, :n, (SELECT max(id) FROM transitions))"
            ),
            {"bh": block_hash, "tx": tx, "b": batch_id, "n": block_number},
        )
        session.commit()


def failing(rt: Runtime) -> dict[str, str]:
    with rt.uow() as session:
        report = reports.check(session)
    return {r.name: r.detail for r in report.results if not r.ok}


def onchain_vs_ledger(rt: Runtime) -> tuple[int, int]:
    with rt.uow() as session:
        usdc = reports.status(session)["assets"]["USDC"]
    return int(usdc["onchain_paid"]), int(usdc["ledger_paid"])


def test_the_new_check_is_listed_and_passes_on_a_clean_run(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    settled(rt)
    with rt.uow() as session:
        names = [r.name for r in reports.check(session).results]
    assert {TWO_TRANSACTIONS, EXACTLY_ONCE, ORPHANED_PAYMENT} <= set(names)
    onchain, ledger = onchain_vs_ledger(rt)
    assert onchain == ledger


def test_a_genuine_double_payment_still_fails_the_check(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    paid = settled(rt)
    onchain, ledger = onchain_vs_ledger(rt)

    pay_again(rt, paid)

    failed = failing(rt)
    assert set(failed) == {TWO_TRANSACTIONS, EXACTLY_ONCE}
    assert failed[TWO_TRANSACTIONS] == f"({paid.id}, 2)"
    # The status shows the chain paid more than the ledger says.
    assert onchain_vs_ledger(rt) == (onchain + int(paid.amount), ledger)


def test_an_orphan_record_cannot_hide_a_double_payment(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """The buggy path also records the second payment's inclusion as orphaned: the filter
    drops it from the two checks above, and the check of orphaned payments fails instead."""
    rt = make_chain_runtime()
    paid = settled(rt)
    pay_again(rt, paid)

    record_orphaned(rt, paid.batch_id, paid.block_number + 1, OTHER_BLOCK, OTHER_TX)

    failed = failing(rt)
    assert set(failed) == {ORPHANED_PAYMENT}
    assert str(paid.id) in failed[ORPHANED_PAYMENT]
    assert OTHER_TX in failed[ORPHANED_PAYMENT]


def test_an_orphan_record_on_the_paying_inclusion_fails_the_check(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """The other way round: the inclusion that paid (the batch's own) is recorded orphaned
    while a second transaction pays too. Nothing may hide either of them."""
    rt = make_chain_runtime()
    paid = settled(rt)
    pay_again(rt, paid)

    record_orphaned(rt, paid.batch_id, paid.block_number, paid.block_hash, paid.tx_hash)

    failed = failing(rt)
    assert ORPHANED_PAYMENT in failed
    assert TWO_TRANSACTIONS in failed
    assert paid.block_hash in failed[ORPHANED_PAYMENT]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE orphaned_inclusions SET block_number = block_number + 1",
        "UPDATE orphaned_inclusions SET seen_at = now() - interval '1 day'",
        "DELETE FROM orphaned_inclusions",
        "TRUNCATE orphaned_inclusions",
    ],
)
def test_the_record_of_orphaned_inclusions_is_append_only(
    make_chain_runtime: Callable[..., Runtime], uow: UnitOfWork, sql: str
) -> None:
    rt = make_chain_runtime()
    paid = settled(rt)
    record_orphaned(rt, paid.batch_id, paid.block_number, paid.block_hash, paid.tx_hash)
    with uow() as session, pytest.raises(DBAPIError, match="orphaned_inclusions is append-only"):
        session.execute(text(sql))
    with uow() as session:
        assert session.execute(text("SELECT count(*) FROM orphaned_inclusions")).scalar() == 1
