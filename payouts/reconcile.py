"""Matching what the chain says back to the ledger, and finalizing what is deep enough.

The reconciler reads the PayoutBatcher's logs (and the token's Transfer logs from the hot
wallet) by block range from a stored checkpoint: two ``eth_getLogs`` calls per range, not a
receipt per transaction. Each ``BatchExecuted`` is matched to its batch by id, and each token
transfer in that transaction to the batch position it pays. Whatever does not match is
recorded as an exception with its evidence.

Then every inclusion not yet final is re-checked against the canonical chain (its block hash
must still be there), moved to confirmed at ``confirmation_depth`` and finalized at
``finality_depth``: ledger in flight -> hot wallet, payouts finalized, credits paid.

Running it twice changes nothing: logs are stored under unique (tx, log index), states only
move forward, and exceptions are deduplicated by their key.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.catalog import hold_creators
from payouts.chain import batcher as codec
from payouts.chain import submitter
from payouts.chain.client import ChainClient
from payouts.exception_queue import record_exception
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.ledger.journals import Leg, post


@dataclass
class ReconcileReport:
    from_block: int = 0
    to_block: int = 0
    included: int = 0
    confirmed: int = 0
    finalized: int = 0
    reorged: int = 0
    exceptions: int = 0
    notes: list[str] = field(default_factory=list)


def scan(
    session: Session,
    chain: ChainClient,
    *,
    chain_id: int,
    batcher_address: str,
    payer: str,
    tokens: Sequence[str],
    head: int,
    chunk: int,
    start_block: int = 0,
    actor: str = "reconciler",
) -> ReconcileReport:
    """Read logs from the checkpoint to ``head`` and match them. The caller commits."""
    report = ReconcileReport()
    session.execute(
        text(
            "INSERT INTO chain_checkpoints (chain_id, contract, block_number)"
            " VALUES (:c, :k, :b) ON CONFLICT DO NOTHING"
        ),
        {"c": chain_id, "k": batcher_address, "b": start_block - 1},
    )
    checkpoint = session.execute(
        text(
            "SELECT block_number FROM chain_checkpoints WHERE chain_id = :c AND contract = :k"
            " FOR UPDATE"
        ),
        {"c": chain_id, "k": batcher_address},
    ).scalar_one()
    report.from_block = int(checkpoint) + 1
    report.to_block = head
    cursor = report.from_block
    while cursor <= head:
        upto = min(head, cursor + chunk - 1)
        _scan_range(session, chain, batcher_address, payer, tokens, cursor, upto, actor, report)
        cursor = upto + 1
    if head >= report.from_block:
        session.execute(
            text(
                "UPDATE chain_checkpoints SET block_number = :b"
                " WHERE chain_id = :c AND contract = :k"
            ),
            {"b": head, "c": chain_id, "k": batcher_address},
        )
    return report


def _scan_range(
    session: Session,
    chain: ChainClient,
    batcher_address: str,
    payer: str,
    tokens: Sequence[str],
    from_block: int,
    to_block: int,
    actor: str,
    report: ReconcileReport,
) -> None:
    payer_topic = codec.address_topic(payer)
    batch_logs = chain.logs(
        batcher_address, [[codec.BATCH_EXECUTED, codec.TRANSFER_FAILED]], from_block, to_block
    )
    executed = [
        codec.decode_batch_executed(x)
        for x in batch_logs
        if x["topics"][0] == codec.BATCH_EXECUTED and x["topics"][1] == payer_topic
    ]
    if not executed:
        return
    failed_by_tx: dict[str, list[codec.TransferFailed]] = defaultdict(list)
    for x in batch_logs:
        if x["topics"][0] == codec.TRANSFER_FAILED:
            failure = codec.decode_transfer_failed(x)
            failed_by_tx[failure.ref.tx_hash].append(failure)
    transfers_by_tx: dict[str, list[codec.TokenTransfer]] = defaultdict(list)
    if tokens:
        for x in chain.logs(list(tokens), [codec.TRANSFER, payer_topic], from_block, to_block):
            transfer = codec.decode_transfer(x)
            transfers_by_tx[transfer.ref.tx_hash].append(transfer)
    for event in executed:
        _match_batch(
            session,
            event,
            transfers_by_tx[event.ref.tx_hash],
            failed_by_tx[event.ref.tx_hash],
            actor,
            report,
        )


def _match_batch(
    session: Session,
    event: codec.BatchExecuted,
    transfers: list[codec.TokenTransfer],
    failures: list[codec.TransferFailed],
    actor: str,
    report: ReconcileReport,
) -> None:
    ref = event.ref
    public_id = uuid.UUID(int=event.batch_id) if event.batch_id < 2**128 else None
    batch = (
        session.execute(
            text(
                "SELECT id, state, total, item_count FROM batches WHERE public_id = :p FOR UPDATE"
            ),
            {"p": public_id},
        ).one_or_none()
        if public_id
        else None
    )
    if batch is None:
        if record_exception(
            session,
            "unknown_batch",
            f"{ref.tx_hash}:{ref.log_index}",
            {
                "batch_id": hex(event.batch_id),
                "block": ref.block_number,
                "paid_total": event.paid_total,
            },
            tx_hash=ref.tx_hash,
        ):
            report.exceptions += 1
        return
    items = session.execute(
        text(
            "SELECT position, payout_id, recipient, amount FROM batch_items WHERE batch_id = :b"
            " ORDER BY position"
        ),
        {"b": batch.id},
    ).all()
    failed_positions = {f.index for f in failures}
    expected = [i for i in items if i.position not in failed_positions]
    transfers = sorted((t for t in transfers if t.token), key=lambda t: t.ref.log_index)
    mismatch = len(expected) != len(transfers) or any(
        e.recipient != t.recipient or int(e.amount) != t.amount
        for e, t in zip(expected, transfers, strict=False)
    )
    if mismatch:
        if record_exception(
            session,
            "batch_mismatch",
            ref.tx_hash,
            {
                "expected": [(e.recipient, str(e.amount)) for e in expected][:50],
                "seen": [(t.recipient, str(t.amount)) for t in transfers][:50],
                "expected_count": len(expected),
                "seen_count": len(transfers),
            },
            batch_id=batch.id,
            tx_hash=ref.tx_hash,
        ):
            report.exceptions += 1
        return
    rows = [
        (batch.id, e.position, e.payout_id, e.recipient, int(e.amount), t.ref.log_index, True)
        for e, t in zip(expected, transfers, strict=True)
    ] + [
        (batch.id, f.index, items[f.index].payout_id, f.recipient, f.amount, f.ref.log_index, False)
        for f in failures
        if f.index < len(items)
    ]
    session.execute(
        text(
            """
            INSERT INTO onchain_transfers (batch_id, position, payout_id, recipient, amount,
                                           log_index, succeeded, tx_hash, block_number, block_hash)
            SELECT v.*, :tx, :bn, :bh FROM unnest(CAST(:b AS bigint[]), CAST(:pos AS int[]),
                CAST(:pid AS bigint[]), CAST(:r AS text[]), CAST(:amt AS numeric[]),
                CAST(:li AS bigint[]), CAST(:ok AS boolean[])) AS v
            ON CONFLICT (block_hash, tx_hash, log_index) DO NOTHING
            """
        ),
        {
            "b": [r[0] for r in rows],
            "pos": [r[1] for r in rows],
            "pid": [r[2] for r in rows],
            "r": [r[3] for r in rows],
            "amt": [r[4] for r in rows],
            "li": [r[5] for r in rows],
            "ok": [r[6] for r in rows],
            "tx": ref.tx_hash,
            "bn": ref.block_number,
            "bh": ref.block_hash,
        },
    )
    for f in failures:
        if record_exception(
            session,
            "transfer_failed",
            f"{ref.tx_hash}:{f.index}",
            {"recipient": f.recipient, "amount": str(f.amount)},
            batch_id=batch.id,
            payout_id=items[f.index].payout_id,
            tx_hash=ref.tx_hash,
        ):
            report.exceptions += 1
    _mark_included(session, batch.id, ref, actor, report)


def _mark_included(
    session: Session,
    batch_id: int,
    ref: codec.LogRef,
    actor: str,
    report: ReconcileReport,
) -> None:
    attempt_id = session.execute(
        text("SELECT id FROM tx_attempts WHERE batch_id = :b AND tx_hash = :h"),
        {"b": batch_id, "h": ref.tx_hash},
    ).scalar()
    if attempt_id is None:
        record_exception(
            session,
            "foreign_transaction",
            ref.tx_hash,
            {"block": ref.block_number},
            batch_id=batch_id,
            tx_hash=ref.tx_hash,
        )
        report.exceptions += 1
    # A worker that died between broadcast and recording it left the batch sealed.
    submitter.mark_broadcast(session, batch_id, attempt_id, actor=actor, cause="seen on chain")
    if attempt_id is not None:
        lifecycle.move(
            session,
            lifecycle.TX_ATTEMPT,
            [attempt_id],
            "mined",
            cause=f"block {ref.block_number}",
            actor=actor,
        )
        lifecycle.move_where(
            session,
            lifecycle.TX_ATTEMPT,
            "replaced",
            where="t.batch_id = :b AND t.id <> :a",
            params={"b": batch_id, "a": attempt_id},
            cause=f"{ref.tx_hash} mined instead",
            actor=actor,
        )
    session.execute(
        text("UPDATE batches SET tx_hash = :h, block_number = :n, block_hash = :bh WHERE id = :b"),
        {"h": ref.tx_hash, "n": ref.block_number, "bh": ref.block_hash, "b": batch_id},
    )
    if lifecycle.move(
        session,
        lifecycle.BATCH,
        [batch_id],
        "included",
        cause=f"{ref.tx_hash} in block {ref.block_number}",
        actor=actor,
    ):
        report.included += 1


def advance(
    session: Session,
    chain: ChainClient,
    *,
    head: int,
    confirmation_depth: int,
    finality_depth: int,
    reorg_watch_blocks: int = 0,
    actor: str = "reconciler",
) -> ReconcileReport:
    """Confirm and finalize inclusions that are deep enough and still canonical.

    A batch is final at its own depth (chosen at sealing for its largest payout), never
    shallower than ``finality_depth``. Finalized batches of the last ``reorg_watch_blocks``
    are checked too: a reorg past finality changes nothing final, it alerts an operator.
    """
    report = ReconcileReport(to_block=head)
    batches = session.execute(
        text(
            "SELECT id, state, block_number, block_hash, tx_hash, asset_id, payer,"
            " greatest(coalesce(finality_depth, 0), :final) AS final_at FROM batches"
            " WHERE state IN ('included', 'confirmed') ORDER BY block_number, id FOR UPDATE"
        ),
        {"final": finality_depth},
    ).all()
    canonical: dict[int, str | None] = {}
    receipts: dict[int, list[dict[str, Any]]] = {}  # per block, shared by its batches
    for b in batches:
        if b.block_number not in canonical:
            block = chain.block(int(b.block_number))
            canonical[b.block_number] = block.hash if block else None
        if canonical[b.block_number] != b.block_hash:
            _unwind(session, b, actor)
            report.reorged += 1
            report.notes.append(f"batch {b.id}: block {b.block_number} no longer canonical")
            continue
        depth = head - int(b.block_number) + 1
        state = b.state
        if state == "included" and depth >= confirmation_depth:
            lifecycle.move(
                session,
                lifecycle.BATCH,
                [b.id],
                "confirmed",
                cause=f"{depth} blocks deep",
                actor=actor,
                strict=True,
            )
            lifecycle.move_batch_payouts(
                session,
                b.id,
                "confirmed",
                cause=f"batch {b.id} {depth} blocks deep",
                actor=actor,
                from_states=["submitted"],
            )
            report.confirmed += 1
            state = "confirmed"
        if state == "confirmed" and depth >= b.final_at:
            if b.block_number not in receipts:
                receipts[b.block_number] = chain.block_receipts(int(b.block_number))
            _finalize(session, b, depth, receipts[b.block_number], actor)
            report.finalized += 1
    if reorg_watch_blocks:
        _watch_finalized(session, chain, head - reorg_watch_blocks, canonical, actor, report)
    return report


def _watch_finalized(
    session: Session,
    chain: ChainClient,
    since_block: int,
    canonical: dict[int, str | None],
    actor: str,
    report: ReconcileReport,
) -> None:
    """A finalized batch whose block left the chain: the ledger says paid, the chain may not.

    Final states stay final; the operator gets the evidence (and the stored raw transaction
    can be resent with ``payouts exceptions replay``: same nonce, same batch id, so it can
    only pay what the ledger already says it paid).
    """
    finalized = session.execute(
        text(
            "SELECT id, block_number, block_hash, tx_hash FROM batches"
            " WHERE state = 'finalized' AND block_number >= :since ORDER BY block_number"
        ),
        {"since": since_block},
    ).all()
    for b in finalized:
        if b.block_number not in canonical:
            block = chain.block(int(b.block_number))
            canonical[b.block_number] = block.hash if block else None
        if canonical[b.block_number] == b.block_hash:
            continue
        if record_exception(
            session,
            "reorg_after_finality",
            f"{b.id}:{b.block_hash}",
            {
                "block": b.block_number,
                "final_block_hash": b.block_hash,
                "canonical_block_hash": canonical[b.block_number],
                "tx_still_on_chain": chain.receipt(b.tx_hash) is not None,
            },
            batch_id=b.id,
            tx_hash=b.tx_hash,
        ):
            report.exceptions += 1
            report.notes.append(f"batch {b.id}: finalized block {b.block_number} reorganised")


def _unwind(session: Session, b: Any, actor: str) -> None:
    """The block that carried a batch was reorganised away: the batch is out again.

    Batch back to broadcast, its confirmed payouts back to submitted, its mined attempt back
    to broadcast (so the submit queue resends the very same bytes if the chain lost them), and
    the log checkpoint back before that block, so wherever the transaction lands next is read
    again. Nothing was final yet, so the ledger has nothing to undo.
    """
    cause = f"block {b.block_number} ({b.block_hash}) reorganised away"
    lifecycle.move(session, lifecycle.BATCH, [b.id], "broadcast", cause=cause, actor=actor)
    lifecycle.move_batch_payouts(
        session,
        b.id,
        "submitted",
        cause=f"batch {b.id}: {cause}",
        actor=actor,
        from_states=["confirmed"],
    )
    lifecycle.move_where(
        session,
        lifecycle.TX_ATTEMPT,
        "broadcast",
        where="t.batch_id = :b AND t.tx_hash = :tx",
        params={"b": b.id, "tx": b.tx_hash},
        cause=cause,
        actor=actor,
        from_states=["mined"],
    )
    session.execute(
        text("UPDATE batches SET block_number = NULL, block_hash = NULL WHERE id = :b"),
        {"b": b.id},
    )
    session.execute(
        text(
            "UPDATE chain_checkpoints SET block_number = LEAST(block_number, :n - 1)"
            " WHERE chain_id = (SELECT chain_id FROM batches WHERE id = :b)"
        ),
        {"n": b.block_number, "b": b.id},
    )


def _finalize(
    session: Session, b: Any, depth: int, block_receipts: list[dict[str, Any]], actor: str
) -> None:
    paid = session.execute(
        text(
            """
            SELECT o.payout_id, o.amount FROM onchain_transfers o
             WHERE o.batch_id = :b AND o.tx_hash = :tx AND o.block_hash = :bh AND o.succeeded
             ORDER BY o.position
            """
        ),
        {"b": b.id, "tx": b.tx_hash, "bh": b.block_hash},
    ).all()
    accounts = ensure_accounts(
        session,
        [
            (AccountKind.PAYOUTS_IN_FLIGHT, None, b.asset_id),
            (AccountKind.HOT_WALLET, None, b.asset_id),
        ],
    )
    in_flight = accounts[(AccountKind.PAYOUTS_IN_FLIGHT, None, b.asset_id)]
    wallet = accounts[(AccountKind.HOT_WALLET, None, b.asset_id)]
    total = sum(int(p.amount) for p in paid)
    if total:
        post(
            session,
            "payout_settled",
            f"batch {b.id} tx {b.tx_hash}",
            [Leg(in_flight, int(p.amount), payout_id=p.payout_id) for p in paid]
            + [Leg(wallet, -total)],
        )
    _record_gas(session, b, block_receipts)
    _release_refused(session, b, actor)
    paid_ids = [p.payout_id for p in paid]
    lifecycle.move(
        session,
        lifecycle.PAYOUT,
        paid_ids,
        "finalized",
        cause=f"batch {b.id} final at {depth} blocks",
        actor=actor,
        strict=True,
    )
    session.execute(
        text(
            """
            WITH moved AS (
                UPDATE credits c SET state = 'paid' WHERE c.payout_id = ANY(:ids)
                   AND c.state = 'rolled_up' RETURNING c.id, c.payout_id
            )
            INSERT INTO transitions (entity, entity_id, from_state, to_state, cause, actor)
            SELECT 'credit', id, 'rolled_up', 'paid', 'payout ' || payout_id || ' finalized',
                   :actor FROM moved
            """
        ),
        {"ids": paid_ids, "actor": actor},
    )
    lifecycle.move(
        session,
        lifecycle.BATCH,
        [b.id],
        "finalized",
        cause=f"{depth} blocks deep",
        actor=actor,
        strict=True,
    )


def _release_refused(session: Session, b: Any, actor: str) -> None:
    """Payouts the token refused to deliver go back to pending, out of this batch, and their
    creators on hold until an operator resolves the exception. Only now, at finality: before,
    a reorg could still carry the transfer in another block."""
    refused = session.execute(
        text(
            """
            SELECT o.payout_id, p.creator_id, o.recipient FROM onchain_transfers o
              JOIN payouts p ON p.id = o.payout_id
             WHERE o.batch_id = :b AND o.tx_hash = :tx AND o.block_hash = :bh
               AND NOT o.succeeded
            """
        ),
        {"b": b.id, "tx": b.tx_hash, "bh": b.block_hash},
    ).all()
    if not refused:
        return
    ids = [r.payout_id for r in refused]
    lifecycle.move(
        session,
        lifecycle.PAYOUT,
        ids,
        "pending",
        cause=f"batch {b.id}: the token refused the transfer",
        actor=actor,
        strict=True,
    )
    session.execute(text("UPDATE payouts SET batch_id = NULL WHERE id = ANY(:ids)"), {"ids": ids})
    hold_creators(
        session,
        {r.creator_id: f"token refused a transfer to {r.recipient}" for r in refused},
        actor=actor,
    )


def _record_gas(session: Session, b: Any, block_receipts: list[dict[str, Any]]) -> None:
    """Gas is read from the block's receipts (one call per block, not per payout)."""
    receipt = next((r for r in block_receipts if r["transactionHash"] == b.tx_hash), None)
    if receipt is None:
        return
    gas_used = int(receipt["gasUsed"], 16)
    price = int(receipt["effectiveGasPrice"], 16)
    session.execute(
        text("UPDATE batches SET gas_used = :g, effective_gas_price = :p WHERE id = :b"),
        {"g": gas_used, "p": price, "b": b.id},
    )
    native = session.execute(
        text(
            "SELECT id FROM assets WHERE address IS NULL AND chain_id ="
            " (SELECT chain_id FROM batches WHERE id = :b)"
        ),
        {"b": b.id},
    ).scalar()
    if native is None or gas_used * price == 0:
        return
    accounts = ensure_accounts(
        session, [(AccountKind.GAS_EXPENSE, None, native), (AccountKind.HOT_WALLET, None, native)]
    )
    post(
        session,
        "gas",
        f"gas of batch {b.id} tx {b.tx_hash}",
        [
            Leg(accounts[(AccountKind.GAS_EXPENSE, None, native)], gas_used * price),
            Leg(accounts[(AccountKind.HOT_WALLET, None, native)], -gas_used * price),
        ],
    )
