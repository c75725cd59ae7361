"""Signing and broadcasting a sealed batch, safe against a worker that dies at any line.

1. Under the nonce lane's row lock, the batch's transaction is built, signed and stored with
   its nonce, and the lane advances. That commits before anything is sent.
2. The stored raw bytes are broadcast. A worker that died before, during or after this step
   is followed by one that finds the stored attempt and sends the very same bytes again: the
   chain accepts one transaction per nonce, and the batcher refuses a batch id twice.
3. The batch and its payouts move to broadcast / submitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from payouts import lifecycle, models
from payouts.batching import BatchPolicy
from payouts.chain import batcher as codec
from payouts.chain.client import ChainClient, RpcError
from payouts.chain.fees import Fees, fees_for
from payouts.chain.signer import Signer

# Answers of a node that already has our transaction (or has mined it).
_ALREADY_KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")
_NONCE_USED = ("nonce too low", "nonce has already been used", "noncetoolow")
# The node will not take it at these fees (the base fee rose past our max fee).
_FEE_TOO_LOW = ("less than block base fee", "underpriced", "fee too low", "feecaptoolow")


@dataclass(frozen=True)
class SubmitResult:
    batch_id: int
    tx_hash: str | None
    nonce: int | None
    outcome: str  # broadcast | rebroadcast | skipped:<state> | nonce-consumed


def _lock_lane(session: Session, chain: ChainClient, chain_id: int, address: str) -> int:
    session.execute(
        text(
            "INSERT INTO nonce_lanes (chain_id, address, next_nonce) VALUES (:c, :a, 0)"
            " ON CONFLICT DO NOTHING"
        ),
        {"c": chain_id, "a": address},
    )
    lane = session.execute(
        text("SELECT next_nonce FROM nonce_lanes WHERE chain_id = :c AND address = :a FOR UPDATE"),
        {"c": chain_id, "a": address},
    ).scalar_one()
    # The chain may know of nonces we never used (another tool spent them): never reuse one.
    return max(int(lane), chain.nonce(address, "pending"))


def sign_and_store(
    session: Session,
    chain: ChainClient,
    signer: Signer,
    *,
    batch_id: int,
    batcher_address: str,
    token_address: str,
    policy: BatchPolicy,
    max_fee_cap: int,
    priority_fee: int,
) -> models.TxAttempt | None:
    """Return the batch's live attempt, signing and storing one if it has none. Caller commits."""
    batch = session.get(models.Batch, batch_id, with_for_update=True)
    if batch is None or batch.state not in ("sealed", "broadcast"):
        return None
    live = session.execute(
        text(
            "SELECT id FROM tx_attempts WHERE batch_id = :b AND state IN ('signed', 'broadcast')"
            " ORDER BY id DESC LIMIT 1"
        ),
        {"b": batch_id},
    ).scalar()
    if live is not None:
        return session.get(models.TxAttempt, live)
    if batch.payer != signer.address:
        raise RuntimeError(f"batch {batch_id} is for wallet {batch.payer}, not {signer.address}")

    data = _calldata(session, batch, token_address)
    nonce = _lock_lane(session, chain, batch.chain_id, signer.address)
    head = chain.block("latest")
    assert head is not None
    fees = fees_for(head.base_fee_per_gas, priority_fee, max_fee_cap)
    gas_limit = min(policy.gas_limit(batch.gas_estimate or 0), policy.gas_cap)
    attempt = _store_attempt(session, signer, batch, nonce, batcher_address, data, gas_limit, fees)
    batch.nonce = nonce
    session.execute(
        text("UPDATE nonce_lanes SET next_nonce = :n WHERE chain_id = :c AND address = :a"),
        {"n": nonce + 1, "c": batch.chain_id, "a": signer.address},
    )
    session.flush()
    return attempt


def sign_replacement(
    session: Session,
    signer: Signer,
    *,
    batch_id: int,
    batcher_address: str,
    token_address: str,
    fees: Fees,
) -> models.TxAttempt:
    """A new attempt for the batch's nonce with higher fees. The earlier attempts stay live:
    whichever the chain mines is the one reconciled, and the others become replaced."""
    batch = session.get(models.Batch, batch_id, with_for_update=True)
    if batch is None or batch.nonce is None:
        raise RuntimeError(f"batch {batch_id} has no nonce to replace")
    previous = session.execute(
        text("SELECT gas_limit FROM tx_attempts WHERE batch_id = :b ORDER BY id DESC LIMIT 1"),
        {"b": batch_id},
    ).scalar_one()
    data = _calldata(session, batch, token_address)
    attempt = _store_attempt(
        session, signer, batch, batch.nonce, batcher_address, data, int(previous), fees
    )
    session.flush()
    return attempt


def _calldata(session: Session, batch: models.Batch, token_address: str) -> str:
    items = session.execute(
        text("SELECT recipient, amount FROM batch_items WHERE batch_id = :b ORDER BY position"),
        {"b": batch.id},
    ).all()
    return codec.pay_erc20_calldata(
        batch.public_id.int, token_address, [(r.recipient, int(r.amount)) for r in items]
    )


def _store_attempt(
    session: Session,
    signer: Signer,
    batch: models.Batch,
    nonce: int,
    to: str,
    data: str,
    gas_limit: int,
    fees: Fees,
) -> models.TxAttempt:
    signed = signer.sign(
        {
            "type": 2,
            "chainId": batch.chain_id,
            "nonce": nonce,
            "to": to,
            "value": 0,
            "data": data,
            "gas": gas_limit,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        }
    )
    attempt = models.TxAttempt(
        batch_id=batch.id,
        chain_id=batch.chain_id,
        sender=signer.address,
        nonce=nonce,
        tx_hash=signed.tx_hash,
        raw=signed.raw,
        gas_limit=gas_limit,
        max_fee_per_gas=fees.max_fee_per_gas,
        max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
    )
    session.add(attempt)
    return attempt


def live_attempts(session: Session, batch_id: int) -> list[models.TxAttempt]:
    """The batch's attempts that may still be mined, newest (highest fee) first."""
    return list(
        session.scalars(
            select(models.TxAttempt)
            .where(
                models.TxAttempt.batch_id == batch_id,
                models.TxAttempt.state.in_(("signed", "broadcast")),
            )
            .order_by(models.TxAttempt.id.desc())
        )
    )


def record_sent(session: Session, attempt_id: int, block: int) -> None:
    """When (at which head) an attempt was last handed to the node: stuck is counted from it."""
    session.execute(
        text(
            "UPDATE tx_attempts SET sent_block = :n, sent_at = now(), broadcasts = broadcasts + 1"
            " WHERE id = :id"
        ),
        {"n": block, "id": attempt_id},
    )


def broadcast(chain: ChainClient, attempt: models.TxAttempt, siblings: Sequence[str] = ()) -> str:
    """Send the stored bytes; returns 'sent', 'known', 'nonce-used' or 'underpriced' (only a
    replacement with higher fees can go now). Transient errors raise.

    ``siblings`` are the hashes of the batch's other attempts (same nonce): if the nonce is
    spent by one of them, it is ours and 'known', never a reason to fail the batch.
    """
    try:
        chain.send_raw(attempt.raw)
    except RpcError as exc:
        message = exc.rpc_message.lower()
        if any(m in message for m in _ALREADY_KNOWN):
            return "known"
        if any(m in message for m in _NONCE_USED):
            # Ours, mined already? Then the reconciler will find it in the logs.
            ours = any(chain.transaction(h) is not None for h in (attempt.tx_hash, *siblings))
            return "known" if ours else "nonce-used"
        if siblings and "replacement" in message:
            # A sibling with higher fees sits in the pool: this one is redundant, not lost.
            return "known"
        if any(m in message for m in _FEE_TOO_LOW):
            return "underpriced"
        raise
    return "sent"


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
            "broadcast",
            cause=cause,
            actor=actor,
            from_states=["signed"],
        )
    if lifecycle.move(
        session,
        lifecycle.BATCH,
        [batch_id],
        "broadcast",
        cause=cause,
        actor=actor,
        from_states=["sealed"],
    ):
        lifecycle.move_batch_payouts(
            session,
            batch_id,
            "submitted",
            cause=f"batch {batch_id}: {cause}",
            actor=actor,
            from_states=["batched"],
        )


def fail_batch(session: Session, batch_id: int, *, cause: str, actor: str) -> list[int]:
    """The batch can never be mined (its nonce went to another transaction): fail it and put
    its payouts back to pending, free for the next batch. Returns the payouts released.

    Only for a batch none of whose attempts is on chain; the batch is failed before its
    payouts are released, so a payout is never in two live batches.
    """
    moved = lifecycle.move(
        session, lifecycle.BATCH, [batch_id], "failed", cause=cause, actor=actor, strict=True
    )
    if not moved:  # pragma: no cover - strict raises first
        return []
    lifecycle.move_where(
        session,
        lifecycle.TX_ATTEMPT,
        "failed",
        where="t.batch_id = :b",
        params={"b": batch_id},
        cause=cause,
        actor=actor,
        from_states=["signed", "broadcast"],
    )
    released = lifecycle.move_batch_payouts(
        session,
        batch_id,
        "pending",
        cause=f"batch {batch_id} failed: {cause}",
        actor=actor,
        from_states=["batched", "submitted"],
    )
    session.execute(
        text("UPDATE payouts SET batch_id = NULL WHERE batch_id = :b AND state = 'pending'"),
        {"b": batch_id},
    )
    return released
