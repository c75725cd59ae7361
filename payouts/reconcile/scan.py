"""Scanning the chain's logs by block range and matching them back to the ledger's batches.

The reconciler reads the PayoutBatcher's logs (and the token's Transfer logs from the hot
wallet) by block range from a stored checkpoint: two ``eth_getLogs`` calls per range, not a
receipt per transaction. Each ``BatchExecuted`` is matched to its batch by id, and each token
transfer in that transaction to the batch position it pays (``matching``). Whatever does not
match is recorded as an exception with its evidence; a match moves the batch to included.

Running it twice changes nothing: logs are stored under unique (block, tx, log index), states
only move forward, and exceptions are deduplicated by their key.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.exception_queue import record_exception
from payouts.reconcile.inclusions import was_orphaned
from payouts.reconcile.matching import Mismatch, Paid, Position, Refused, Reported, match_batch
from payouts.states import BatchState, TxAttemptState
from payouts.submission.moves import mark_broadcast


@dataclass
class ReconcileReport:
    from_block: int = 0
    to_block: int = 0
    included: int = 0
    confirmed: int = 0
    finalized: int = 0
    finalized_batches: list[int] = field(default_factory=list)  # for the time-to-final metric
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
    on_blocks: Callable[[int, int], None] | None = None,
) -> ReconcileReport:
    """Read logs from the checkpoint to ``head`` and match them. The caller commits.

    ``on_blocks(scanned, total)`` hears of each range as it is read (an operator's progress
    bar: a node that was down for a day leaves tens of thousands of blocks to read)."""
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
        if on_blocks is not None:
            on_blocks(upto - cursor + 1, head - report.from_block + 1)
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
    positions = [
        Position(r.position, r.payout_id, r.recipient, int(r.amount))
        for r in session.execute(
            text(
                "SELECT position, payout_id, recipient, amount FROM batch_items"
                " WHERE batch_id = :b ORDER BY position"
            ),
            {"b": batch.id},
        )
    ]
    match = match_batch(
        positions,
        [Paid(t.recipient, t.amount, t.ref.log_index) for t in transfers],
        [Refused(f.index, f.recipient, f.amount, f.ref.log_index) for f in failures],
    )
    if isinstance(match, Mismatch):
        if record_exception(
            session,
            "batch_mismatch",
            ref.tx_hash,
            {
                "expected": [(r, str(a)) for r, a in match.expected][:50],
                "seen": [(r, str(a)) for r, a in match.seen][:50],
                "expected_count": len(match.expected),
                "seen_count": len(match.seen),
                "refusals": [(i, r, str(a)) for i, r, a in match.refusals][:50],
            },
            batch_id=batch.id,
            tx_hash=ref.tx_hash,
        ):
            report.exceptions += 1
        return
    _store_reported(session, batch.id, ref, match.rows)
    if was_orphaned(session, block_hash=ref.block_hash, tx_hash=ref.tx_hash):
        # A block seen gone is back (a node behind answered null for it, or the fork choice
        # flipped back): the batch stands in it again, which makes it canonical to readers.
        report.notes.append(f"batch {batch.id}: block {ref.block_number} is back on the chain")
    for refused, payout_id in match.refused:
        if record_exception(
            session,
            "transfer_failed",
            f"{ref.tx_hash}:{refused.index}",
            {"recipient": refused.recipient, "amount": str(refused.amount)},
            batch_id=batch.id,
            payout_id=payout_id,
            tx_hash=ref.tx_hash,
        ):
            report.exceptions += 1
    _mark_included(session, batch.id, ref, actor, report)


def _store_reported(
    session: Session, batch_id: int, ref: codec.LogRef, rows: list[Reported]
) -> None:
    """Keep what this inclusion reported; a second scan of the same block adds nothing."""
    session.execute(
        text(
            """
            INSERT INTO onchain_transfers (batch_id, position, payout_id, recipient, amount,
                                           log_index, succeeded, tx_hash, block_number, block_hash)
            SELECT :b, v.*, :tx, :bn, :bh FROM unnest(CAST(:pos AS int[]),
                CAST(:pid AS bigint[]), CAST(:r AS text[]), CAST(:amt AS numeric[]),
                CAST(:li AS bigint[]), CAST(:ok AS boolean[])) AS v
            ON CONFLICT (block_hash, tx_hash, log_index) DO NOTHING
            """
        ),
        {
            "b": batch_id,
            "pos": [r.position for r in rows],
            "pid": [r.payout_id for r in rows],
            "r": [r.recipient for r in rows],
            "amt": [r.amount for r in rows],
            "li": [r.log_index for r in rows],
            "ok": [r.succeeded for r in rows],
            "tx": ref.tx_hash,
            "bn": ref.block_number,
            "bh": ref.block_hash,
        },
    )


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
    mark_broadcast(session, batch_id, attempt_id, actor=actor, cause="seen on chain")
    if attempt_id is not None:
        lifecycle.move(
            session,
            lifecycle.TX_ATTEMPT,
            [attempt_id],
            TxAttemptState.MINED,
            cause=f"block {ref.block_number}",
            actor=actor,
        )
        lifecycle.move_where(
            session,
            lifecycle.TX_ATTEMPT,
            TxAttemptState.REPLACED,
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
        BatchState.INCLUDED,
        cause=f"{ref.tx_hash} in block {ref.block_number}",
        actor=actor,
    ):
        report.included += 1
