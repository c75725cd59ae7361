"""Reorgs on a real anvil chain: the block that carried a batch is replaced.

Whether the new chain carries the same transaction again (it was in the mempool of the
winning fork) or lost it, every payout ends up paid exactly once, from the one signed
transaction, and the ledger agrees with the chain.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account import Account
from sqlalchemy import text

import devstack
from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from payouts.tracking import reports
from tests.chainkit import (
    assert_chain_pays_what_the_ledger_says,
    mine,
    own_anvil,
    roll_up_now,
    scalar,
    seed,
)

anvil = own_anvil  # this module's chain, not the session's (see own_anvil)


def state_of(rt: Runtime, sql: str) -> set[str]:
    with rt.uow() as session:
        return set(session.execute(text(sql)).scalars())


@pytest.mark.parametrize(
    ("depth", "carried_again"),
    [(1, True), (3, False), (20, False)],
    ids=["depth-1-same-tx-in-new-block", "depth-3-tx-lost", "depth-20-tx-lost"],
)
def test_a_reorged_batch_is_paid_exactly_once(
    make_chain_runtime: Callable[..., Runtime], depth: int, carried_again: bool
) -> None:
    rt = make_chain_runtime(confirmation_depth=2, finality_depth=depth + 10)
    recipients = seed(rt, creators=6)
    roll_up_now(rt)
    mine(rt, depth + 5)  # the reorg must not reach back to the contracts' deployment
    plan = settlement.settle(rt, actor="test")["USDC"]
    (batch,) = plan.sealed
    sent = submission.submit(rt, batch.batch_id, actor="test")
    mine(rt, depth - 1)  # the carrying block is now exactly `depth` deep
    reconciler.reconcile(rt)
    assert state_of(rt, f"SELECT state FROM batches WHERE id = {batch.batch_id}") <= {
        "included",
        "confirmed",
    }
    old_block = scalar(rt, f"SELECT block_number FROM batches WHERE id = {batch.batch_id}")
    raw = "0x" + signed_bytes(rt, batch.batch_id).hex()

    # The new block carries another transaction too, so it differs from the old one even
    # when the chain's clock runs ahead (an identical block would be no reorg at all).
    carried = [[raw, 0], [filler_transaction(rt), 0]] if carried_again else []
    rt.chain.rpc("anvil_reorg", [depth, carried])
    outcome = reconciler.reconcile(rt)

    assert outcome.advance.reorged == 1
    assert state_of(rt, f"SELECT state FROM batches WHERE id = {batch.batch_id}") == {"broadcast"}
    assert state_of(rt, "SELECT state FROM payouts") == {"submitted"}
    # What the submit queue does for a batch that is out but unmined: resend the same bytes.
    again = submission.submit(rt, batch.batch_id, actor="test")
    assert again.tx_hash == sent.tx_hash
    mine(rt, depth + 12)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)

    assert state_of(rt, "SELECT state FROM payouts") == {"finalized"}
    assert scalar(rt, "SELECT count(*) FROM tx_attempts") == 1
    new_block = scalar(rt, f"SELECT block_number FROM batches WHERE id = {batch.batch_id}")
    assert carried_again or new_block != old_block
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    with rt.uow() as session:
        check = reports.check(session)
        assert check.ok, [r for r in check.results if not r.ok]
        assert reports.status(session)["open_exceptions"] == 0


def signed_bytes(rt: Runtime, batch_id: int) -> bytes:
    with rt.uow() as session:
        return bytes(
            session.execute(
                text("SELECT raw FROM tx_attempts WHERE batch_id = :b"), {"b": batch_id}
            ).scalar_one()
        )


def filler_transaction(rt: Runtime) -> str:
    """A signed transfer from an account the payouts never use."""
    sender = Account.from_key(devstack.DEV_KEYS[2])
    signed = sender.sign_transaction(
        {
            "type": 2,
            "chainId": rt.settings.chain_id,
            "nonce": rt.chain.nonce(sender.address, "latest"),
            "to": sender.address,
            "value": 1,
            "gas": 21_000,
            "maxFeePerGas": 100 * 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    return "0x" + bytes(signed.raw_transaction).hex()


def test_a_rolled_back_block_unwinds_the_batch_and_the_same_bytes_pay_once(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    """anvil_rollback removes the head blocks without replacing them: the block that carried
    the batch does not exist any more, which is a reorg too."""
    rt = make_chain_runtime(confirmation_depth=1, finality_depth=10)
    recipients = seed(rt, creators=4)
    roll_up_now(rt)
    mine(rt, 5)
    (batch,) = settlement.settle(rt, actor="test")["USDC"].sealed
    sent = submission.submit(rt, batch.batch_id, actor="test")
    mine(rt, 1)
    reconciler.reconcile(rt)
    assert state_of(rt, "SELECT state FROM payouts") == {"confirmed"}

    rt.chain.rpc("anvil_rollback", [2])
    outcome = reconciler.reconcile(rt)

    assert outcome.advance.reorged == 1
    assert state_of(rt, "SELECT state FROM payouts") == {"submitted"}
    watched = submission.watch(rt, batch.batch_id)
    assert watched.tx_hash == sent.tx_hash  # resent (or still known to the node): same bytes
    mine(rt, 12)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)
    assert state_of(rt, "SELECT state FROM payouts") == {"finalized"}
    assert scalar(rt, "SELECT count(*) FROM tx_attempts") == 1
    assert_chain_pays_what_the_ledger_says(rt, recipients)
