"""Finality and unwinding: what the chain has included is confirmed, then final, or undone.

Every inclusion not yet final is re-checked against the canonical chain (its block hash must
still be there), moved to confirmed at ``confirmation_depth`` and finalized at the batch's own
depth (chosen at sealing for its largest payout): ledger in flight -> hot wallet, payouts
finalized, credits paid, gas booked, and the exceptions its transaction's troubles opened
(stuck under the fee cap) resolved. An inclusion whose block left the chain is unwound and
recorded orphaned (``inclusions``): the batch is out again and the same signed bytes are
resent. A reorg past finality changes nothing final and alerts an operator.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import holds, lifecycle
from payouts.chain.client import ChainClient
from payouts.exception_queue import CLOSED_WHEN_BATCH_LANDS, record_exception, resolve_for_batch
from payouts.holds import TRANSFER_FAILED, NewHold
from payouts.ledger.accounts import AccountKind, ensure_accounts
from payouts.ledger.journals import Leg, post
from payouts.reconcile.inclusions import CANONICAL_TRANSFERS, record_orphaned
from payouts.reconcile.scan import ReconcileReport
from payouts.states import (
    BATCH_ON_CHAIN,
    BatchState,
    CreditState,
    PayoutState,
    TxAttemptState,
    sql_in,
)


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
            f" WHERE state IN {sql_in(*BATCH_ON_CHAIN)} ORDER BY block_number, id FOR UPDATE"
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
        if state == BatchState.INCLUDED and depth >= confirmation_depth:
            lifecycle.move(
                session,
                lifecycle.BATCH,
                [b.id],
                BatchState.CONFIRMED,
                cause=f"{depth} blocks deep",
                actor=actor,
                strict=True,
            )
            lifecycle.move_batch_payouts(
                session,
                b.id,
                PayoutState.CONFIRMED,
                cause=f"batch {b.id} {depth} blocks deep",
                actor=actor,
                from_states=[PayoutState.SUBMITTED],
                event={"confirmations": depth},
            )
            report.confirmed += 1
            state = BatchState.CONFIRMED
        if state == BatchState.CONFIRMED and depth >= b.final_at:
            if b.block_number not in receipts:
                receipts[b.block_number] = chain.block_receipts(int(b.block_number))
            _finalize(session, b, depth, receipts[b.block_number], actor)
            report.finalized += 1
            report.finalized_batches.append(b.id)
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
            f" WHERE state = {BatchState.FINALIZED.sql} AND block_number >= :since"
            " ORDER BY block_number"
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

    Batch back to broadcast, no longer naming a block or a transaction; the inclusion recorded
    orphaned (its transfers stay in ``onchain_transfers``, and readers leave them out); its
    confirmed payouts back to submitted, its mined attempt back to broadcast (so the submit
    queue resends the very same bytes if the chain lost them), and the log checkpoint back
    before that block, so wherever the transaction lands next is read again. Nothing was final
    yet, so the ledger has nothing to undo.
    """
    cause = f"block {b.block_number} ({b.block_hash}) reorganised away"
    lifecycle.move(
        session,
        lifecycle.BATCH,
        [b.id],
        BatchState.BROADCAST,
        cause=cause,
        actor=actor,
        also={"block_number": "NULL", "block_hash": "NULL", "tx_hash": "NULL"},
    )
    record_orphaned(
        session,
        b.id,
        block_number=int(b.block_number),
        block_hash=b.block_hash,
        tx_hash=b.tx_hash,
    )
    lifecycle.move_batch_payouts(
        session,
        b.id,
        PayoutState.SUBMITTED,
        cause=f"batch {b.id}: {cause}",
        actor=actor,
        from_states=[PayoutState.CONFIRMED],
        event={
            "tx_hash": b.tx_hash,
            "orphaned_block_number": int(b.block_number),
            "orphaned_block_hash": b.block_hash,
        },
    )
    lifecycle.move_where(
        session,
        lifecycle.TX_ATTEMPT,
        TxAttemptState.BROADCAST,
        where="t.batch_id = :b AND t.tx_hash = :tx",
        params={"b": b.id, "tx": b.tx_hash},
        cause=cause,
        actor=actor,
        from_states=[TxAttemptState.MINED],
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
            f"""
            SELECT o.payout_id, o.amount FROM ({CANONICAL_TRANSFERS}) o
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
        PayoutState.FINALIZED,
        cause=f"batch {b.id} final at {depth} blocks",
        actor=actor,
        strict=True,
        event={"confirmations": depth},
    )
    lifecycle.move_rows(
        session,
        lifecycle.CREDIT,
        CreditState.ROLLED_UP,
        CreditState.PAID,
        rows="SELECT c.id, c.payout_id FROM credits c WHERE c.payout_id = ANY(:ids)",
        params={"ids": paid_ids},
        cause="'payout ' || src.payout_id || ' finalized'",
        actor=actor,
    )
    lifecycle.move(
        session,
        lifecycle.BATCH,
        [b.id],
        BatchState.FINALIZED,
        cause=f"{depth} blocks deep",
        actor=actor,
        strict=True,
    )
    # Its transaction is mined for good: what its troubles opened (stuck under the fee cap,
    # parked after the retry tiers) has no cause left. Only now: before finality a reorg
    # could leave it unmined again.
    resolve_for_batch(
        session,
        b.id,
        CLOSED_WHEN_BATCH_LANDS,
        f"batch {b.id} finalized: {b.tx_hash} in block {b.block_number}, {depth} blocks deep",
        actor=actor,
    )


def _release_refused(session: Session, b: Any, actor: str) -> None:
    """Payouts the token refused to deliver go back to pending, out of this batch, and their
    creators on hold until an operator resolves the exception. Only now, at finality: before,
    a reorg could still carry the transfer in another block."""
    refused = session.execute(
        text(
            f"""
            SELECT o.payout_id, p.creator_id, o.recipient FROM ({CANONICAL_TRANSFERS}) o
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
        PayoutState.PENDING,
        cause=f"batch {b.id}: the token refused the transfer",
        actor=actor,
        strict=True,
        also={"batch_id": "NULL"},
    )
    refused_by_creator = {r.creator_id: r.recipient for r in refused}
    holds.place(
        session,
        [
            NewHold(creator_id, TRANSFER_FAILED, f"token refused a transfer to {recipient}")
            for creator_id, recipient in sorted(refused_by_creator.items())
        ],
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
