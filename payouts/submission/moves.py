"""The state moves of a submission: a batch out (broadcast), or failed for good."""

from __future__ import annotations

from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.states import BatchState, PayoutState, TxAttemptState


def mark_broadcast(
    session: Session,
    batch_id: int,
    attempt_id: int | None,
    *,
    actor: str,
    cause: str = "sent to node",
) -> None:
    """Record that the batch is out (the node took it, or the chain shows it); repeats no-op."""
    if attempt_id is not None:
        lifecycle.move(
            session,
            lifecycle.TX_ATTEMPT,
            [attempt_id],
            TxAttemptState.BROADCAST,
            cause=cause,
            actor=actor,
            from_states=[TxAttemptState.SIGNED],
        )
    if lifecycle.move(
        session,
        lifecycle.BATCH,
        [batch_id],
        BatchState.BROADCAST,
        cause=cause,
        actor=actor,
        from_states=[BatchState.SEALED],
    ):
        lifecycle.move_batch_payouts(
            session,
            batch_id,
            PayoutState.SUBMITTED,
            cause=f"batch {batch_id}: {cause}",
            actor=actor,
            from_states=[PayoutState.BATCHED],
        )


def fail_batch(session: Session, batch_id: int, *, cause: str, actor: str) -> list[int]:
    """The batch can never be mined (its nonce went to another transaction): fail it and put
    its payouts back to pending, out of the batch, free for the next one. Returns the payouts
    released.

    Only for a batch none of whose attempts is on chain; the batch is failed before its
    payouts are released, so a payout is never in two live batches.
    """
    lifecycle.move(
        session, lifecycle.BATCH, [batch_id], BatchState.FAILED, cause=cause, actor=actor,
        strict=True,
    )  # fmt: skip
    lifecycle.move_where(
        session,
        lifecycle.TX_ATTEMPT,
        TxAttemptState.FAILED,
        where="t.batch_id = :b",
        params={"b": batch_id},
        cause=cause,
        actor=actor,
        from_states=[TxAttemptState.SIGNED, TxAttemptState.BROADCAST],
    )
    return lifecycle.move_batch_payouts(
        session,
        batch_id,
        PayoutState.PENDING,
        cause=f"batch {batch_id} failed: {cause}",
        actor=actor,
        from_states=[PayoutState.BATCHED, PayoutState.SUBMITTED],
        also={"batch_id": "NULL"},
    )
