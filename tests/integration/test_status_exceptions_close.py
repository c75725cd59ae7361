"""An exception whose cause is gone closes itself, with the reason, and stays in the history.

``fee_cap_reached`` says a stuck transaction could not be replaced under the fee cap. Once the
batch is final (its transaction landed for good), nothing is stuck any more: the reconciler
resolves it through the exception lifecycle, audited like any state change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from payouts import exception_queue
from payouts.db import models
from payouts.errors import TransientChainError
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from tests.chainkit import (
    assert_books_balance,
    assert_chain_pays_what_the_ledger_says,
    automine_off,
    mine,
    mine_at_base_fee,
    node_gone,
    roll_up_now,
    scalar,
    seed,
    settle_and_submit,
)

GWEI = 10**9


@contextlib.contextmanager
def full_blocks(rt: Runtime) -> Iterator[None]:
    """Blocks too small for a batch transaction: it waits in the pool, unmined."""
    head = rt.chain.block("latest")
    assert head is not None
    limit = head.gas_limit
    rt.chain.rpc("anvil_setBlockGasLimit", [hex(100_000)])
    try:
        yield
    finally:
        rt.chain.rpc("anvil_setBlockGasLimit", [hex(limit)])


def exceptions(rt: Runtime, state: str) -> list[dict[str, object]]:
    with rt.uow() as session:
        page, _ = exception_queue.list_exceptions(session, state=state)
    return page


def test_a_fee_cap_exception_closes_itself_when_its_batch_is_finalized(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime(
        stuck_after_blocks=1,
        max_fee_per_gas=2 * GWEI,
        priority_fee_per_gas=GWEI,
        confirmation_depth=1,
        finality_depth=3,
    )
    recipients = seed(rt, creators=2)
    roll_up_now(rt)
    mine_at_base_fee(rt, GWEI // 2)  # whatever the tests before left: fees sit at the cap
    with automine_off(rt):
        (sent,) = settle_and_submit(rt)
        first_max_fee = scalar(rt, "SELECT max_fee_per_gas FROM tx_attempts")
        assert first_max_fee * 11_250 > 2 * GWEI * 10_000  # a bump would pass the cap
        with full_blocks(rt):
            mine(rt, 2)
            assert submission.watch(rt, sent.batch_id).outcome == "fee-cap"
        (opened,) = exceptions(rt, "open")
        assert (opened["kind"], opened["batch_id"]) == ("fee_cap_reached", sent.batch_id)
        mine(rt, 1)  # the blocks have room again: the first attempt lands

    reconciler.reconcile(rt)
    # In a block but not final: a reorg could still drop it and leave it stuck again.
    assert scalar(rt, "SELECT count(*) FROM batches WHERE state = 'confirmed'") == 1
    assert [e["id"] for e in exceptions(rt, "open")] == [opened["id"]]

    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)

    assert scalar(rt, "SELECT count(*) FROM batches WHERE state = 'finalized'") == 1
    assert exceptions(rt, "open") == []
    (closed,) = exceptions(rt, "resolved")
    assert (closed["id"], closed["kind"], closed["status"]) == (
        opened["id"],
        "fee_cap_reached",
        "resolved",
    )
    resolution = str(closed["resolution"])
    assert f"batch {sent.batch_id} finalized" in resolution
    assert str(sent.tx_hash) in resolution
    assert closed["resolved_at"] is not None
    assert closed["detail"] == opened["detail"]  # the evidence stays
    with rt.uow() as session:
        audit = session.execute(
            text(
                "SELECT from_state, to_state, cause, actor FROM transitions"
                " WHERE entity = 'exception' AND entity_id = :id ORDER BY id"
            ),
            {"id": opened["id"]},
        ).all()
    assert [tuple(a) for a in audit] == [("open", "resolved", resolution, "reconciler")]
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)


def test_a_parked_submission_whose_transaction_landed_after_all_closes_itself(
    make_runtime: Callable[..., Runtime],
) -> None:
    """The worker handed the transaction to the node and died before it heard back; the node
    then stopped answering, every retry tier failed and the batch was parked with
    ``submission_exhausted``. The transaction was in the pool all along and is mined once
    blocks come: at finality the exception's cause is gone."""
    # On a database of its own: the runtime whose node is gone reads what the other committed.
    rt = make_runtime(submit_retry_delays_seconds=[15], confirmation_depth=1, finality_depth=3)
    down = node_gone(rt)
    recipients = seed(rt, creators=2)
    roll_up_now(rt)
    (sealed,) = settlement.settle(rt, actor="test")["USDC"].sealed
    with automine_off(rt):
        attempt = submission.sign(rt, sealed.batch_id)
        assert isinstance(attempt, models.TxAttempt)
        rt.chain.send_raw(attempt.raw)  # ... and the worker died before it recorded the send
        for tier in (0, 1):
            with pytest.raises(TransientChainError) as failure:
                submission.submit(down, sealed.batch_id, actor="test")
            submission.submission_failed(down, sealed.batch_id, tier=tier, error=failure.value)
        (opened,) = exceptions(rt, "open")
        assert (opened["kind"], opened["batch_id"]) == ("submission_exhausted", sealed.batch_id)
        mine(rt, 1)

    reconciler.reconcile(rt)
    assert [e["id"] for e in exceptions(rt, "open")] == [opened["id"]]  # not final yet
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)

    assert scalar(rt, "SELECT count(*) FROM batches WHERE state = 'finalized'") == 1
    assert exceptions(rt, "open") == []
    (closed,) = exceptions(rt, "resolved")
    assert (closed["id"], closed["kind"]) == (opened["id"], "submission_exhausted")
    resolution = str(closed["resolution"])
    assert f"batch {sealed.batch_id} finalized" in resolution
    assert attempt.tx_hash in resolution
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    assert_books_balance(rt)
