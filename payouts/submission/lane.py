"""The nonce lane: a sealed batch's transaction signed and stored before anything is sent.

Under the lane's row lock (one lane per chain and hot wallet), the batch's transaction is
built, signed and stored with its nonce, and the lane advances. That commits before anything
is sent, so a worker that dies at any line is followed by one that finds the stored attempt
and sends the very same bytes again: the chain accepts one transaction per nonce, and the
batcher refuses a batch id twice. A replacement (higher fees) reuses the batch's nonce.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.chain.fees import Fees, fees_for
from payouts.chain.signer import Signer
from payouts.db import models
from payouts.settlement.policy import BatchPolicy
from payouts.states import ATTEMPT_LIVE, BatchState, sql_in


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


def take_nonce(session: Session, chain: ChainClient, chain_id: int, address: str) -> int:
    """The lane's next nonce for a transaction of the hot wallet that is no batch's (an
    escrow top-up, a voucher it submits), the lane advanced past it. The caller stores the
    signed transaction and commits in the same transaction, as ``sign_and_store`` does."""
    nonce = _lock_lane(session, chain, chain_id, address)
    session.execute(
        text("UPDATE nonce_lanes SET next_nonce = :n WHERE chain_id = :c AND address = :a"),
        {"n": nonce + 1, "c": chain_id, "a": address},
    )
    return nonce


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
    if batch is None or batch.state not in (BatchState.SEALED, BatchState.BROADCAST):
        return None
    live = session.execute(
        text(
            "SELECT id FROM tx_attempts WHERE batch_id = :b"
            f" AND state IN {sql_in(*ATTEMPT_LIVE)} ORDER BY id DESC LIMIT 1"
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
                models.TxAttempt.state.in_(ATTEMPT_LIVE),
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
