"""Sealing pending payouts into batches the hot wallet can pay in one transaction each.

Pending payouts are claimed with ``FOR UPDATE SKIP LOCKED``, so two settlement runs (beat and
an operator) never seal the same payout; a payout belongs to at most one live batch because
``payouts.batch_id`` has room for one. Before sealing, the hot wallet's token balance and
allowance are checked and the chain estimates the candidate's gas.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.batching import BatchPolicy
from payouts.chain import batcher as codec
from payouts.chain.client import ChainClient
from payouts.money import Asset


@dataclass(frozen=True)
class SealedBatch:
    batch_id: int
    public_id: uuid.UUID
    size: int
    total: int
    gas_estimate: int


@dataclass(frozen=True)
class SettlementPlan:
    sealed: list[SealedBatch]
    pending_left: int
    wallet_available: int
    reason: str  # why sealing stopped


def _spendable(
    session: Session, chain: ChainClient, asset: Asset, asset_id: int, wallet: str, spender: str
) -> int:
    """What the wallet can still pay: min(balance, allowance) less batches not yet on chain."""
    assert asset.address is not None
    balance = int(chain.call(asset.address, codec.balance_of_calldata(wallet)), 16)
    allowance = int(chain.call(asset.address, codec.allowance_calldata(wallet, spender)), 16)
    committed = session.execute(
        text(
            "SELECT coalesce(sum(total), 0) FROM batches"
            " WHERE asset_id = :a AND payer = :w AND state IN ('open', 'sealed', 'broadcast')"
        ),
        {"a": asset_id, "w": wallet},
    ).scalar_one()
    return max(0, min(balance, allowance) - int(committed))


def seal_batches(
    session: Session,
    chain: ChainClient,
    *,
    asset: Asset,
    asset_id: int,
    wallet: str,
    batcher_address: str,
    policy: BatchPolicy,
    actor: str,
    max_batches: int = 100,
) -> SettlementPlan:
    """Seal as many batches as the wallet and the policy allow. The caller commits."""
    if asset.address is None:
        raise NotImplementedError("native-currency payouts are not batched yet")
    available = _spendable(session, chain, asset, asset_id, wallet, batcher_address)
    sealed: list[SealedBatch] = []
    reason = "no pending payouts"
    while len(sealed) < max_batches:
        size = policy.first_guess(policy.max_size)
        rows = session.execute(
            text(
                """
                SELECT id, recipient, amount FROM payouts
                 WHERE state = 'pending' AND asset_id = :a ORDER BY id LIMIT :n
                   FOR UPDATE SKIP LOCKED
                """
            ),
            {"a": asset_id, "n": size},
        ).all()
        if not rows:
            reason = "no pending payouts"
            break
        # Never seal what the wallet cannot pay: take payouts in order while they fit.
        affordable, running = [], 0
        for row in rows:
            if running + int(row.amount) > available:
                break
            affordable.append(row)
            running += int(row.amount)
        if not affordable:
            reason = "hot wallet cannot pay the next payout"
            break
        candidate = affordable
        public_id = uuid.uuid4()
        estimate = 0
        while candidate:
            data = codec.pay_erc20_calldata(
                public_id.int, asset.address, [(r.recipient, int(r.amount)) for r in candidate]
            )
            estimate = chain.estimate_gas(wallet, batcher_address, data)
            if policy.fits(estimate):
                break
            candidate = candidate[: policy.shrink(len(candidate), estimate)]
        if not candidate:
            reason = "a single payout does not fit the gas cap"
            break
        policy = policy.learn(len(candidate), estimate)
        batch = _seal(
            session, candidate, public_id, asset_id, asset.chain_id, wallet, estimate, actor
        )
        sealed.append(batch)
        available -= batch.total
        reason = "sealed"
    pending_left = session.execute(
        text("SELECT count(*) FROM payouts WHERE state = 'pending' AND asset_id = :a"),
        {"a": asset_id},
    ).scalar_one()
    return SettlementPlan(sealed, int(pending_left), available, reason)


def _seal(
    session: Session,
    rows: list,
    public_id: uuid.UUID,
    asset_id: int,
    chain_id: int,  # type: ignore[type-arg]
    wallet: str,
    estimate: int,
    actor: str,
) -> SealedBatch:
    total = sum(int(r.amount) for r in rows)
    batch_id = session.execute(
        text(
            """
            INSERT INTO batches (public_id, asset_id, chain_id, payer, item_count, total,
                                 gas_estimate)
            VALUES (:pid, :a, :chain, :payer, :n, :total, :gas) RETURNING id
            """
        ),
        {
            "pid": public_id,
            "a": asset_id,
            "chain": chain_id,
            "payer": wallet,
            "n": len(rows),
            "total": total,
            "gas": estimate,
        },
    ).scalar_one()
    ids = [r.id for r in rows]
    session.execute(
        text(
            """
            INSERT INTO batch_items (batch_id, position, payout_id, recipient, amount)
            SELECT :b, ord - 1, p.id, p.recipient, p.amount
              FROM unnest(CAST(:ids AS bigint[])) WITH ORDINALITY AS v(id, ord)
              JOIN payouts p ON p.id = v.id
            """
        ),
        {"b": batch_id, "ids": ids},
    )
    session.execute(
        text("UPDATE payouts SET batch_id = :b WHERE id = ANY(:ids)"), {"b": batch_id, "ids": ids}
    )
    lifecycle.move(
        session,
        lifecycle.PAYOUT,
        ids,
        "batched",
        cause=f"sealed in batch {batch_id}",
        actor=actor,
        strict=True,
    )
    lifecycle.move(
        session,
        lifecycle.BATCH,
        [batch_id],
        "sealed",
        cause=f"{len(ids)} payouts, gas estimate {estimate}",
        actor=actor,
        strict=True,
    )
    return SealedBatch(batch_id, public_id, len(ids), total, estimate)
