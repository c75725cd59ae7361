"""Scanning the chain's logs by block range and matching them back to the ledger's batches.

The reconciler reads the PayoutBatcher's logs by block range from a stored checkpoint (one
``eth_getLogs`` per range), then the receipts of the transactions that executed our batches
in batched JSON-RPC: their token Transfer logs from the hot wallet, and their gas, which the
batch keeps for finality (the node sends those logs once, not once per ``eth_getLogs`` and
again in the receipts). Each ``BatchExecuted`` names its batch by id, and the batches of a
range are matched together, in sets: the token transfers are staged in a temporary table
(COPY) and one INSERT keeps, for every batch whose transfers in log order are exactly its
positions (each to its recipient, for its amount), one row per position with its unique (tx
hash, log index). A batch with a refused transfer, or whose logs do not fit, takes the exact
path, one batch at a time through ``matching.match_batch``; what does not match there is
recorded as an exception with its evidence. The matched batches move to included together.

Addresses are compared as lowercase hex; the rows keep the recipient as the batch was sealed.
Running it twice changes nothing: logs are stored under unique (block, tx, log index), states
only move forward, and exceptions are deduplicated by their key.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
from eth_utils.address import to_checksum_address
from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.exception_queue import record_exception
from payouts.reconcile.matching import Mismatch, Paid, Position, Refused, Reported, match_batch
from payouts.states import ATTEMPT_LIVE, BatchState, TxAttemptState, sql_in
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
    receipts = _receipts_of(chain, executed)
    if len(receipts) == len({e.ref.tx_hash for e in executed}):
        logs: Iterable[dict[str, Any]] = _paid_from(receipts.values(), tokens, payer_topic)
    else:
        # A node that answers the log but not (yet) its receipt, or one from another block
        # (a node behind a balancer, a reorg it has half seen): the range's logs instead.
        transfer = [codec.TRANSFER, payer_topic]
        logs = chain.logs(list(tokens), transfer, from_block, to_block) if tokens else []
    transfers = codec.transfer_rows(logs)
    found = _batches_of(session, executed, report)
    # A refused transfer breaks the position-for-transfer order: the exact path handles it.
    whole = _match_in_set(
        session,
        [(e, b) for e, b in found if not e.failed_count and not failed_by_tx[e.ref.tx_hash]],
        transfers,
    )
    transfers_by_tx: dict[str, list[codec.TransferRow]] | None = None
    included: list[tuple[Any, codec.LogRef]] = []
    for event, batch in found:
        if batch.id not in whole:
            if transfers_by_tx is None:
                transfers_by_tx = defaultdict(list)
                for t in transfers:
                    transfers_by_tx[t[0]].append(t)
            paid = transfers_by_tx.get(event.ref.tx_hash, [])
            failures = failed_by_tx[event.ref.tx_hash]
            if not _match_exactly(session, event, batch.id, paid, failures, report):
                continue
        included.append((batch, event.ref))
    _note_returned(session, included, report)
    _mark_included(session, included, receipts, actor, report)


def _receipts_of(
    chain: ChainClient, executed: list[codec.BatchExecuted]
) -> dict[str, dict[str, Any]]:
    """The receipt of each transaction that executed a batch, when the node has it in the
    block the batch's log came from."""
    blocks = {e.ref.tx_hash: e.ref.block_hash for e in executed}
    return {
        tx_hash: receipt
        for tx_hash, receipt in chain.receipts(blocks).items()
        if receipt is not None and receipt.get("blockHash") == blocks[tx_hash]
    }


def _paid_from(
    receipts: Iterable[dict[str, Any]], tokens: Sequence[str], payer_topic: str
) -> Iterator[dict[str, Any]]:
    """The tokens' Transfer logs from the hot wallet in our batches' receipts: what one
    ``eth_getLogs`` of the range would return of them, read with the receipts finality needs
    anyway for the gas, so the node sends those logs once instead of twice."""
    wanted = {t.lower() for t in tokens}
    for receipt in receipts:
        for log in receipt["logs"]:
            topics = log["topics"]
            if (
                len(topics) == 3
                and topics[0] == codec.TRANSFER
                and topics[1] == payer_topic
                and log["address"].lower() in wanted
            ):
                yield log


def _batches_of(
    session: Session, executed: list[codec.BatchExecuted], report: ReconcileReport
) -> list[tuple[codec.BatchExecuted, Any]]:
    """Each execution with its batch, locked; an execution of no batch of ours is recorded."""
    public_ids = {e.batch_id: uuid.UUID(int=e.batch_id) for e in executed if e.batch_id < 2**128}
    batches = {
        b.public_id: b
        for b in session.execute(
            text(
                "SELECT id, public_id, state, item_count FROM batches"
                " WHERE public_id = ANY(CAST(:p AS uuid[])) ORDER BY id FOR UPDATE"
            ),
            {"p": list(public_ids.values())},
        )
    }
    found = []
    for event in executed:
        batch = batches.get(public_ids.get(event.batch_id))
        if batch is not None:
            found.append((event, batch))
            continue
        ref = event.ref
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
    return found


def _match_in_set(
    session: Session,
    candidates: list[tuple[codec.BatchExecuted, Any]],
    transfers: list[codec.TransferRow],
) -> set[int]:
    """Keep the rows of every candidate batch whose transfers are exactly its positions, in one
    statement; returns those batches. The others are left for the exact path."""
    seen = _stage(session, {e.ref.tx_hash: b for e, b in candidates}, transfers)
    if not seen:
        return set()
    refs = [(b, e.ref) for e, b in candidates if b.id in seen]
    # Whether a batch fits is decided over its staged rows (window functions), so that no
    # join against the list of batches has to guess how many rows it meets.
    whole = session.execute(
        text(
            """
            WITH v AS (
                SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:txs AS text[]),
                    CAST(:ns AS bigint[]), CAST(:bhs AS text[]))
                    AS v(batch_id, tx_hash, block_number, block_hash)
            ), ordered AS (
                SELECT s.*, row_number() OVER w - 1 AS ordinal,
                       count(*) OVER (PARTITION BY s.batch_id) AS seen
                  FROM reconcile_transfers s
                WINDOW w AS (PARTITION BY s.batch_id ORDER BY s.log_index)
            ), paired AS (
                SELECT s.batch_id, s.log_index, i.position, i.payout_id, i.recipient, i.amount,
                       bool_and(s.seen = s.item_count AND i.amount = s.amount
                                AND lower(i.recipient) = s.recipient)
                           OVER (PARTITION BY s.batch_id) AS whole
                  FROM ordered s
                  JOIN batch_items i ON i.batch_id = s.batch_id AND i.position = s.ordinal
            ), stored AS (
                INSERT INTO onchain_transfers (batch_id, position, payout_id, recipient, amount,
                                               log_index, succeeded, tx_hash, block_number,
                                               block_hash)
                SELECT p.batch_id, p.position, p.payout_id, p.recipient, p.amount, p.log_index,
                       true, v.tx_hash, v.block_number, v.block_hash
                  FROM paired p JOIN v ON v.batch_id = p.batch_id
                 WHERE p.whole
                ON CONFLICT (block_hash, tx_hash, log_index) DO NOTHING
            )
            SELECT DISTINCT batch_id FROM paired WHERE whole
            """
        ),
        {
            "ids": [b.id for b, _ in refs],
            "txs": [r.tx_hash for _, r in refs],
            "ns": [r.block_number for _, r in refs],
            "bhs": [r.block_hash for _, r in refs],
        },
    ).scalars()
    return set(whole)


def _stage(
    session: Session, batches: dict[str, Any], transfers: list[codec.TransferRow]
) -> set[int]:
    """The candidates' token transfers in a temporary table, by COPY (the cheapest way in),
    each under its batch with the batch's size; returns the batches that have any."""
    seen: set[int] = set()
    if not batches:
        return seen
    session.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS reconcile_transfers (batch_id bigint NOT NULL,"
            " item_count int NOT NULL, log_index bigint NOT NULL, recipient text NOT NULL,"
            " amount numeric(78, 0) NOT NULL) ON COMMIT DROP"
        )
    )
    # Left by an earlier scan in the same transaction (a test's savepoints): not this range's.
    session.execute(text("TRUNCATE reconcile_transfers"))
    raw = cast(psycopg.Connection[Any], session.connection().connection.driver_connection)
    with raw.cursor() as cursor:
        with cursor.copy("COPY reconcile_transfers FROM STDIN") as copy:
            for tx_hash, log_index, recipient, amount in transfers:
                batch = batches.get(tx_hash)
                if batch is not None:
                    seen.add(batch.id)
                    copy.write_row((batch.id, batch.item_count, log_index, recipient, amount))
        # The planner knows nothing of a fresh temporary table; a guess joins it badly.
        cursor.execute("ANALYZE reconcile_transfers")
    return seen


def _match_exactly(
    session: Session,
    event: codec.BatchExecuted,
    batch_id: int,
    transfers: list[codec.TransferRow],
    failures: list[codec.TransferFailed],
    report: ReconcileReport,
) -> bool:
    """One batch through ``match_batch``: its refusals kept, or the mismatch recorded."""
    ref = event.ref
    positions = [
        Position(r.position, r.payout_id, r.recipient, int(r.amount))
        for r in session.execute(
            text(
                "SELECT position, payout_id, lower(recipient) AS recipient, amount"
                " FROM batch_items WHERE batch_id = :b ORDER BY position"
            ),
            {"b": batch_id},
        )
    ]
    match = match_batch(
        positions,
        [Paid(recipient, amount, log_index) for _, log_index, recipient, amount in transfers],
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
            batch_id=batch_id,
            tx_hash=ref.tx_hash,
        ):
            report.exceptions += 1
        return False
    _store_reported(session, batch_id, ref, match.rows)
    for refused, payout_id in match.refused:
        if record_exception(
            session,
            "transfer_failed",
            f"{ref.tx_hash}:{refused.index}",
            {"recipient": to_checksum_address(refused.recipient), "amount": str(refused.amount)},
            batch_id=batch_id,
            payout_id=payout_id,
            tx_hash=ref.tx_hash,
        ):
            report.exceptions += 1
    return True


def _store_reported(
    session: Session, batch_id: int, ref: codec.LogRef, rows: list[Reported]
) -> None:
    """Keep what this inclusion reported (the recipient as sealed); a second scan of the same
    block adds nothing."""
    session.execute(
        text(
            """
            INSERT INTO onchain_transfers (batch_id, position, payout_id, recipient, amount,
                                           log_index, succeeded, tx_hash, block_number, block_hash)
            SELECT :b, v.pos, v.pid, i.recipient, v.amt, v.li, v.ok, :tx, :bn, :bh
              FROM unnest(CAST(:pos AS int[]), CAST(:pid AS bigint[]), CAST(:amt AS numeric[]),
                          CAST(:li AS bigint[]), CAST(:ok AS boolean[])) AS v(pos, pid, amt, li, ok)
              JOIN batch_items i ON i.batch_id = :b AND i.position = v.pos
            ON CONFLICT (block_hash, tx_hash, log_index) DO NOTHING
            """
        ),
        {
            "b": batch_id,
            "pos": [r.position for r in rows],
            "pid": [r.payout_id for r in rows],
            "amt": [r.amount for r in rows],
            "li": [r.log_index for r in rows],
            "ok": [r.succeeded for r in rows],
            "tx": ref.tx_hash,
            "bn": ref.block_number,
            "bh": ref.block_hash,
        },
    )


def _note_returned(
    session: Session, included: list[tuple[Any, codec.LogRef]], report: ReconcileReport
) -> None:
    """A block seen gone is back (a node behind answered null for it, or the fork choice
    flipped back): the batch stands in it again, which makes it canonical to readers."""
    if not included:
        return
    back = {
        (r.block_hash, r.tx_hash)
        for r in session.execute(
            text(
                "SELECT x.block_hash, x.tx_hash FROM orphaned_inclusions x"
                " JOIN unnest(CAST(:bh AS text[]), CAST(:tx AS text[])) AS v(block_hash, tx_hash)"
                " ON x.block_hash = v.block_hash AND x.tx_hash = v.tx_hash"
            ),
            {"bh": [r.block_hash for _, r in included], "tx": [r.tx_hash for _, r in included]},
        )
    }
    for batch, ref in included:
        if (ref.block_hash, ref.tx_hash) in back:
            report.notes.append(f"batch {batch.id}: block {ref.block_number} is back on the chain")


def _mark_included(
    session: Session,
    included: list[tuple[Any, codec.LogRef]],
    receipts: Mapping[str, dict[str, Any]],
    actor: str,
    report: ReconcileReport,
) -> None:
    """Every matched batch to included, its mined attempt named and the others replaced, its
    gas kept from its receipt (finality books it): a handful of statements for the whole set
    (the rare cases one batch at a time)."""
    if not included:
        return
    ids = [b.id for b, _ in included]
    refs = {b.id: r for b, r in included}
    attempts = {
        row.batch_id: row
        for row in session.execute(
            text(
                "SELECT t.batch_id, t.id, t.state FROM tx_attempts t"
                " JOIN unnest(CAST(:b AS bigint[]), CAST(:tx AS text[])) AS v(b, tx)"
                " ON t.batch_id = v.b AND t.tx_hash = v.tx"
            ),
            {"b": ids, "tx": [refs[i].tx_hash for i in ids]},
        )
    }
    for batch, ref in included:
        attempt = attempts.get(batch.id)
        if attempt is None:
            record_exception(
                session,
                "foreign_transaction",
                ref.tx_hash,
                {"block": ref.block_number},
                batch_id=batch.id,
                tx_hash=ref.tx_hash,
            )
            report.exceptions += 1
        # A worker that died between broadcast and recording it left the batch sealed.
        if batch.state == BatchState.SEALED or (
            attempt is not None and attempt.state == TxAttemptState.SIGNED
        ):
            mark_broadcast(
                session,
                batch.id,
                attempt.id if attempt else None,
                actor=actor,
                cause="seen on chain",
            )
    mined = [(a.batch_id, a.id) for a in attempts.values()]
    lifecycle.move_rows(
        session,
        lifecycle.TX_ATTEMPT,
        TxAttemptState.BROADCAST,
        TxAttemptState.MINED,
        rows="SELECT * FROM unnest(CAST(:a AS bigint[]), CAST(:n AS bigint[])) AS v(id, n)",
        params={"a": [a for _, a in mined], "n": [refs[b].block_number for b, _ in mined]},
        cause="'block ' || src.n",
        actor=actor,
    )
    _replace_others(session, mined, refs, actor)
    gas = [_gas(receipts.get(refs[i].tx_hash)) for i in ids]
    params = {
        "b": ids,
        "tx": [refs[i].tx_hash for i in ids],
        "n": [refs[i].block_number for i in ids],
        "bh": [refs[i].block_hash for i in ids],
        "g": [g for g, _ in gas],
        "p": [p for _, p in gas],
    }
    session.execute(
        text(
            "UPDATE batches b SET tx_hash = v.tx, block_number = v.n, block_hash = v.bh,"
            " gas_used = v.g, effective_gas_price = v.p"
            " FROM unnest(CAST(:b AS bigint[]), CAST(:tx AS text[]), CAST(:n AS bigint[]),"
            " CAST(:bh AS text[]), CAST(:g AS bigint[]), CAST(:p AS numeric[]))"
            " AS v(id, tx, n, bh, g, p) WHERE b.id = v.id"
        ),
        params,
    )
    report.included += lifecycle.move_rows(
        session,
        lifecycle.BATCH,
        BatchState.BROADCAST,
        BatchState.INCLUDED,
        rows="SELECT * FROM unnest(CAST(:b AS bigint[]), CAST(:tx AS text[]),"
        " CAST(:n AS bigint[])) AS v(id, tx, n)",
        params=params,
        cause="src.tx || ' in block ' || src.n",
        actor=actor,
    )


def _gas(receipt: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """Gas used and its price, from a receipt (none: finality reads it again)."""
    if receipt is None:
        return None, None
    return int(receipt["gasUsed"], 16), int(receipt["effectiveGasPrice"], 16)


def _replace_others(
    session: Session, mined: list[tuple[int, int]], refs: dict[int, codec.LogRef], actor: str
) -> None:
    """The other live attempts of a batch whose attempt was mined (fee-bumped replacements
    that lost, or the original a replacement beat) can never be mined now."""
    if not mined:
        return
    batches = session.execute(
        text(
            "SELECT DISTINCT t.batch_id FROM tx_attempts t"
            " JOIN unnest(CAST(:b AS bigint[]), CAST(:a AS bigint[])) AS v(b, a)"
            f" ON t.batch_id = v.b AND t.id <> v.a WHERE t.state IN {sql_in(*ATTEMPT_LIVE)}"
        ),
        {"b": [b for b, _ in mined], "a": [a for _, a in mined]},
    ).scalars()
    attempt_of = dict(mined)
    for batch_id in batches:
        lifecycle.move_where(
            session,
            lifecycle.TX_ATTEMPT,
            TxAttemptState.REPLACED,
            where="t.batch_id = :b AND t.id <> :a",
            params={"b": batch_id, "a": attempt_of[batch_id]},
            cause=f"{refs[batch_id].tx_hash} mined instead",
            actor=actor,
        )
