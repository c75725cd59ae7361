"""A transaction that is not ours takes the nonce a signed batch was waiting to use.

The batch can never be mined: it fails cleanly, its payouts go back to pending and are paid
by the next batch under a fresh nonce; nothing is paid twice and an operator is told.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from payouts.reconcile import handlers as reconciler
from payouts.runtime import Runtime
from payouts.settlement import handlers as settlement
from payouts.submission import handlers as submission
from payouts.submission.handlers import SubmitResult
from payouts.tracking import reports
from tests.chainkit import assert_chain_pays_what_the_ledger_says, mine, roll_up_now, scalar, seed


def sign_without_sending(rt: Runtime, batch_id: int) -> int:
    """What a worker that died right after signing leaves behind; returns the nonce."""
    attempt = submission.sign(rt, batch_id)
    assert not isinstance(attempt, SubmitResult)
    return attempt.nonce


def test_a_batch_whose_nonce_went_elsewhere_fails_and_its_payouts_are_paid_by_the_next(
    make_chain_runtime: Callable[..., Runtime],
) -> None:
    rt = make_chain_runtime()
    recipients = seed(rt, creators=5)
    roll_up_now(rt)
    (first,) = settlement.settle(rt, actor="test")["USDC"].sealed
    nonce = sign_without_sending(rt, first.batch_id)
    # Someone else with the hot wallet's key spends that nonce (anvil has the account unlocked).
    rt.chain.rpc(
        "eth_sendTransaction",
        [{"from": rt.signer.address, "to": rt.signer.address, "value": "0x1", "nonce": hex(nonce)}],
    )

    result = submission.submit(rt, first.batch_id, actor="test")

    assert result.outcome == "nonce-consumed"
    assert (
        scalar(rt, f"SELECT count(*) FROM batches WHERE id = {first.batch_id} AND state = 'failed'")
        == 1
    )
    assert (
        scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'pending' AND batch_id IS NULL") == 5
    )
    assert scalar(rt, "SELECT count(*) FROM exceptions WHERE kind = 'nonce_consumed'") == 1
    # A second delivery of the same submit task changes nothing.
    assert submission.submit(rt, first.batch_id).describe() == "skipped:failed"

    (second,) = settlement.settle(rt, actor="test")["USDC"].sealed
    sent = submission.submit(rt, second.batch_id, actor="test")
    assert sent.outcome == "broadcast"
    assert sent.nonce == nonce + 1
    mine(rt, 3)
    reconciler.reconcile(rt)
    reconciler.reconcile(rt)

    assert scalar(rt, "SELECT count(*) FROM payouts WHERE state = 'finalized'") == 5
    assert_chain_pays_what_the_ledger_says(rt, recipients)
    with rt.uow() as session:
        assert reports.check(session).ok
        history = session.execute(
            text(
                "SELECT to_state FROM transitions WHERE entity = 'payout'"
                " AND entity_id = (SELECT min(id) FROM payouts) AND from_state IS NOT NULL"
                " ORDER BY id"
            )
        ).scalars()
        assert list(history) == [
            "batched",
            "pending",
            "batched",
            "submitted",
            "confirmed",
            "finalized",
        ]
