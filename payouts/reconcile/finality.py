"""Finality and unwinding: what the chain has included is confirmed, then final, or undone.

Every inclusion not yet final is re-checked against the canonical chain (its block hash must
still be there), moved to confirmed at ``confirmation_depth`` and finalized at the batch's own
depth (chosen at sealing for its largest payout): ledger in flight -> hot wallet, payouts
finalized, credits paid, gas booked, and the exceptions its transaction's troubles opened
(stuck under the fee cap) resolved. An inclusion whose block left the chain is unwound and
recorded orphaned (``inclusions``): the batch is out again and the same signed bytes are
resent. A reorg past finality changes nothing final and alerts an operator.

It works in sets: the headers of the batches' blocks are read once per distinct block in
batched JSON-RPC (their gas was kept from the receipts the scan read), the batches that
confirm (or finalize) move together, the payouts of all of them in one statement whatever
their depths (each event says its own), straight from submitted to finalized, both moves
recorded, when a batch is final as it confirms; the ledger takes two journals, two legs per
batch: in flight -> hot wallet for what the batch paid, and its gas. Each payout's
proof is its row of ``onchain_transfers`` (unique tx hash and log index). A refused transfer
takes the exact per-payout path, one batch at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import holds, lifecycle
from payouts.chain.client import ChainClient
from payouts.errors import IllegalTransition
from payouts.exception_queue import CLOSED_WHEN_BATCH_LANDS, record_exception, resolve_for_batch
from payouts.holds import TRANSFER_FAILED, NewHold
from payouts.ledger.accounts import AccountKey, AccountKind, ensure_accounts
from payouts.ledger.journals import Leg, Posting, post_many
from payouts.reconcile.inclusions import CANONICAL_TRANSFERS, record_orphaned
from payouts.reconcile.scan import ReconcileReport
from payouts.states import (
    BATCH_ON_CHAIN,
    BatchState,
    ExceptionState,
    PayoutState,
    TxAttemptState,
    sql_in,
)

IN_FLIGHT, WALLET, GAS = (
    AccountKind.PAYOUTS_IN_FLIGHT,
    AccountKind.HOT_WALLET,
    AccountKind.GAS_EXPENSE,
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
            "SELECT id, state, block_number, block_hash, tx_hash, asset_id, payer, chain_id,"
            " gas_used, effective_gas_price,"
            " greatest(coalesce(finality_depth, 0), :final) AS final_at FROM batches"
            f" WHERE state IN {sql_in(*BATCH_ON_CHAIN)} ORDER BY block_number, id FOR UPDATE"
        ),
        {"final": finality_depth},
    ).all()
    canonical = _hashes(chain, {int(b.block_number) for b in batches})
    live = []
    for b in batches:
        if canonical[b.block_number] != b.block_hash:
            _unwind(session, b, actor)
            report.reorged += 1
            report.notes.append(f"batch {b.id}: block {b.block_number} no longer canonical")
        else:
            live.append(b)
    depth = {b.id: head - int(b.block_number) + 1 for b in live}
    confirming = [
        b for b in live if b.state == BatchState.INCLUDED and depth[b.id] >= confirmation_depth
    ]
    confirmed = {b.id for b in confirming}
    final = [
        b
        for b in live
        if (b.state == BatchState.CONFIRMED or b.id in confirmed) and depth[b.id] >= b.final_at
    ]
    refused = _refused(session, final)
    # A batch final as it confirms moves its payouts both ways in one UPDATE; one with a
    # refused transfer confirms first, so that its refused payouts go back from confirmed.
    through = {b.id for b in final if b.id in confirmed and b.id not in refused}
    _confirm(session, confirming, depth, through, actor)
    report.confirmed += len(confirming)
    if final:
        _finalize(session, final, depth, _gas_of(session, chain, final), through, refused, actor)
        report.finalized += len(final)
        report.finalized_batches.extend(b.id for b in final)
    if reorg_watch_blocks:
        _watch_finalized(session, chain, head - reorg_watch_blocks, canonical, actor, report)
    return report


def _hashes(chain: ChainClient, numbers: set[int]) -> dict[int, str | None]:
    """The canonical hash of each block (None: the node has no such block)."""
    return {n: (block.hash if block else None) for n, block in chain.blocks(numbers).items()}


# The cause of each move of a batch's payouts, as SQL over ``src`` (``_move_payouts``).
_CAUSES = {
    (PayoutState.SUBMITTED, PayoutState.CONFIRMED): "'batch ' || src.batch_id || ' '"
    " || src.depth || ' blocks deep'",
    (PayoutState.CONFIRMED, PayoutState.FINALIZED): "'batch ' || src.batch_id || ' final at '"
    " || src.depth || ' blocks'",
}


_CONFIRM = [PayoutState.SUBMITTED, PayoutState.CONFIRMED]
_FINAL = [PayoutState.CONFIRMED, PayoutState.FINALIZED]
_THROUGH = [PayoutState.SUBMITTED, PayoutState.CONFIRMED, PayoutState.FINALIZED]


def _move_payouts(
    session: Session,
    batches: Sequence[Any],
    depth: Mapping[int, int],
    path: Sequence[PayoutState],
    actor: str,
) -> int:
    """The payouts of the batches along ``path`` in one statement, whatever their depths:
    each row's cause names its batch and depth, its event the depth."""
    if not batches:
        return 0
    return lifecycle.move_path(
        session,
        lifecycle.PAYOUT,
        path,
        rows="SELECT * FROM unnest(CAST(:_b AS bigint[]), CAST(:_d AS int[]))"
        " AS v(batch_id, depth)",
        key="batch_id",
        params={"_b": [b.id for b in batches], "_d": [depth[b.id] for b in batches]},
        causes=[_CAUSES[step] for step in pairwise(path)],
        actor=actor,
        event_sql="jsonb_build_object('confirmations', src.depth)",
        # ``advance`` holds their batches (FOR UPDATE), which every mover of a batch's
        # payouts locks first: a pass locking 100,000 payouts in order would add nothing.
        locked=True,
    )


def _move_batches(
    session: Session,
    batches: Sequence[Any],
    depth: Mapping[int, int],
    from_state: BatchState,
    to_state: BatchState,
    actor: str,
) -> None:
    """The batches from one state to the next in one statement, each with its depth as cause."""
    lifecycle.move_rows(
        session,
        lifecycle.BATCH,
        from_state,
        to_state,
        rows="SELECT * FROM unnest(CAST(:b AS bigint[]), CAST(:d AS int[])) AS v(id, depth)",
        params={"b": [b.id for b in batches], "d": [depth[b.id] for b in batches]},
        cause="src.depth || ' blocks deep'",
        actor=actor,
    )


def _confirm(
    session: Session,
    batches: Sequence[Any],
    depth: Mapping[int, int],
    through: set[int],
    actor: str,
) -> None:
    """The batches to confirmed; their payouts too, but those of the batches going
    ``through`` to finalized in this call, which ``_finalize`` moves both ways at once."""
    if not batches:
        return
    _move_batches(session, batches, depth, BatchState.INCLUDED, BatchState.CONFIRMED, actor)
    _move_payouts(
        session,
        [b for b in batches if b.id not in through],
        depth,
        _CONFIRM,
        actor,
    )


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
    canonical.update(_hashes(chain, {int(b.block_number) for b in finalized} - set(canonical)))
    for b in finalized:
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
        also={
            column: "NULL"
            for column in (
                "block_number",
                "block_hash",
                "tx_hash",
                "gas_used",
                "effective_gas_price",
            )
        },
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


# What a batch paid in the inclusion it stands in now: the rows of its transaction in its
# block. They are canonical (``CANONICAL_TRANSFERS`` keeps the inclusion a batch stands in,
# recorded orphaned or not), so no look-up of orphaned inclusions per row.
PAID_IN_BATCH = """
    SELECT o.* FROM onchain_transfers o JOIN batches b ON b.id = o.batch_id
       AND o.tx_hash = b.tx_hash AND o.block_hash = b.block_hash
     WHERE b.id = ANY(CAST(:b AS bigint[]))
"""


def _refused(session: Session, batches: Sequence[Any]) -> set[int]:
    """The batches whose inclusion reported a transfer the token refused."""
    if not batches:
        return set()
    return set(
        session.execute(
            text(f"SELECT DISTINCT batch_id FROM ({PAID_IN_BATCH}) p WHERE NOT p.succeeded"),
            {"b": [b.id for b in batches]},
        ).scalars()
    )


def _finalize(
    session: Session,
    batches: Sequence[Any],
    depth: Mapping[int, int],
    gas: Mapping[int, tuple[int, int]],
    through: set[int],
    refused: set[int],
    actor: str,
) -> None:
    ids = [b.id for b in batches]
    paid = {
        r.batch_id: (int(r.total), int(r.n))
        for r in session.execute(
            text(
                f"SELECT batch_id, sum(amount) AS total, count(*) AS n FROM ({PAID_IN_BATCH}) p"
                " WHERE p.succeeded GROUP BY batch_id"
            ),
            {"b": ids},
        )
    }
    _post(session, batches, paid, gas)
    by_id = {b.id: b for b in batches}
    for batch_id in sorted(refused):
        _release_refused(session, by_id[batch_id], actor)
    # The refused ones are out of their batches by now: the batches' payouts still confirmed
    # (or submitted, going through) are exactly the paid ones, which the count holds to.
    moved = _move_payouts(
        session, [b for b in batches if b.id in through], depth, _THROUGH, actor
    ) + _move_payouts(session, [b for b in batches if b.id not in through], depth, _FINAL, actor)
    expected = sum(n for _, n in paid.values())
    if moved != expected:
        raise IllegalTransition(
            f"payout -> finalized: {moved} of the {expected} paid by batches {ids} moved"
        )
    _move_batches(session, batches, depth, BatchState.CONFIRMED, BatchState.FINALIZED, actor)
    _resolve_landed(session, batches, depth, actor)


def _post(
    session: Session,
    batches: Sequence[Any],
    paid: Mapping[int, tuple[int, int]],
    gas: Mapping[int, tuple[int, int]],
) -> None:
    """What the batches paid (in flight -> hot wallet) and their gas, as two journals with
    two legs per batch, whatever the number of batches: each journal costs its own check at
    commit (the zero-sum trigger's look-up of its entries), and a payout's own proof is its
    row of ``onchain_transfers``."""
    natives = {
        r.chain_id: r.id
        for r in session.execute(
            text(
                "SELECT chain_id, id FROM assets WHERE address IS NULL"
                " AND chain_id = ANY(CAST(:c AS bigint[]))"
            ),
            {"c": sorted({b.chain_id for b in batches})},
        )
    }
    keys: list[AccountKey] = []
    for b in batches:
        keys += [(IN_FLIGHT, None, b.asset_id), (WALLET, None, b.asset_id)]
        if b.chain_id in natives:
            keys += [(GAS, None, natives[b.chain_id]), (WALLET, None, natives[b.chain_id])]
    accounts = ensure_accounts(session, keys)
    settled: list[Leg] = []
    spent: list[Leg] = []
    for b in batches:
        total = paid.get(b.id, (0, 0))[0]
        settled += [
            Leg(accounts[(IN_FLIGHT, None, b.asset_id)], total),
            Leg(accounts[(WALLET, None, b.asset_id)], -total),
        ]
        used, price = gas.get(b.id, (0, 0))
        native = natives.get(b.chain_id)
        if native is not None:
            spent += [
                Leg(accounts[(GAS, None, native)], used * price),
                Leg(accounts[(WALLET, None, native)], -used * price),
            ]
    named = ", ".join(f"{b.id} (tx {b.tx_hash})" for b in batches)
    post_many(
        session,
        [
            Posting(kind, f"{what} {named}", legs)
            for kind, what, legs in (
                ("payout_settled", "batches", settled),
                ("gas", "gas of batches", spent),
            )
            if any(leg.amount for leg in legs)
        ],
    )


def _resolve_landed(
    session: Session, batches: Sequence[Any], depth: Mapping[int, int], actor: str
) -> None:
    """Its transaction is mined for good: what its troubles opened (stuck under the fee cap,
    parked after the retry tiers) has no cause left. Only now: before finality a reorg could
    leave it unmined again."""
    troubled = session.execute(
        text(
            "SELECT DISTINCT batch_id FROM exceptions WHERE batch_id = ANY(CAST(:b AS bigint[]))"
            f" AND kind = ANY(:kinds) AND state = {ExceptionState.OPEN.sql}"
        ),
        {"b": [b.id for b in batches], "kinds": list(CLOSED_WHEN_BATCH_LANDS)},
    ).scalars()
    by_id = {b.id: b for b in batches}
    for batch_id in sorted(troubled):
        b = by_id[batch_id]
        resolve_for_batch(
            session,
            b.id,
            CLOSED_WHEN_BATCH_LANDS,
            f"batch {b.id} finalized: {b.tx_hash} in block {b.block_number},"
            f" {depth[b.id]} blocks deep",
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


def _gas_of(
    session: Session, chain: ChainClient, batches: Sequence[Any]
) -> dict[int, tuple[int, int]]:
    """Gas used and its price per batch: as the scan kept it from the receipt of the
    inclusion (still canonical, or the batch would have been unwound), else read from its
    block's receipts (fetched once per block) and kept on the batch in one statement."""
    gas = {
        b.id: (int(b.gas_used), int(b.effective_gas_price))
        for b in batches
        if b.gas_used is not None and b.effective_gas_price is not None
    }
    unknown = [b for b in batches if b.id not in gas]
    if not unknown:
        return gas
    receipts = chain.receipts_of_blocks({int(b.block_number) for b in unknown})
    read: dict[int, tuple[int, int]] = {}
    for b in unknown:
        by_tx = {r["transactionHash"]: r for r in receipts.get(int(b.block_number), [])}
        receipt = by_tx.get(b.tx_hash)
        if receipt is not None:
            read[b.id] = (int(receipt["gasUsed"], 16), int(receipt["effectiveGasPrice"], 16))
    if read:
        session.execute(
            text(
                "UPDATE batches b SET gas_used = v.g, effective_gas_price = v.p"
                " FROM unnest(CAST(:b AS bigint[]), CAST(:g AS bigint[]), CAST(:p AS numeric[]))"
                " AS v(id, g, p) WHERE b.id = v.id"
            ),
            {
                "b": list(read),
                "g": [g for g, _ in read.values()],
                "p": [p for _, p in read.values()],
            },
        )
    return gas | read
