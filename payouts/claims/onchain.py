"""Claims seen on chain: the escrow's Claimed logs matched to the payouts they pay, in sets.

One pass (``reconcile_claims``, the caller commits) does, in this order:

1. **Unwind** every claim not yet final whose block left the chain: its payouts go back from
   ``claimed`` to ``claimable``, the reverse legs are posted (the escrow holds the tokens again,
   the creators are owed them again), the claim keeps its row with ``unwound_at``, and the log
   checkpoint goes back before its block, so wherever the claim lands next is read again.
2. **Scan** the escrow's Claimed logs from the checkpoint to the head, one row per log (unique
   per tx hash, log index and block hash: a second scan adds nothing).
3. **Apply** the new claims. A claim of (recipient, token) covers that address's claimable
   payouts in that asset in the order they became claimable, while the running total stays
   within the claim's cumulative: the escrow records ``claimed[recipient][token]`` whoever the
   creator, and a voucher's cumulative is every cent ever made claimable to that address, so
   what the claim paid (cumulative - previous) is exactly the payouts it covers. The covered
   payouts move to ``claimed``; their amounts leave the creators' claimable accounts and the
   escrow's, one journal per claim. A claim that does not add up (a voucher the ledger never
   issued) moves nothing and is an exception with its figures.
4. **Book** the hot wallet's own transactions now mined (``wallet_transactions``): a top-up
   moves its amount from the hot wallet to the escrow account, and every one books its gas.
   Those of the last ``watch_blocks`` are re-checked like claims, and unbooked on a reorg.
5. **Finalize** claims deep enough (the asset's finality rule on what the claim paid): their
   payouts move to ``finalized``. Nothing is posted: the ledger moved at step 3.

So the ledger's escrow account is the escrow's balance on chain at the checkpoint, and each
address's claimed total is the escrow's ``claimed`` record (``payouts.claims.audit`` proves
both). A reorg past finality is left to an operator, as for batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.chain.client import MAX_BATCH_CALLS, ChainClient
from payouts.exception_queue import record_exception
from payouts.ledger.accounts import AccountKey, AccountKind, ensure_accounts
from payouts.ledger.journals import Leg, Posting, post_many
from payouts.states import PayoutState

CLAIMED = "0x" + keccak(text="Claimed(address,address,uint256,uint256)").hex()
CLAIMED_OF = keccak(text="claimed(address,address)")[:4]
CLAIMABLE, ESCROW = AccountKind.CLAIMABLE, AccountKind.CLAIMS_ESCROW
WALLET, GAS = AccountKind.HOT_WALLET, AccountKind.GAS_EXPENSE
CLAIM_UNMATCHED = "claim_unmatched"
# A final claim whose block left the chain: the ledger says paid, the chain may not.
CLAIM_REORGED_AFTER_FINALITY = "claim_reorged_after_finality"
CLAIM_FOREIGN_ASSET = "claim_foreign_asset"
WALLET_TX_REVERTED = "wallet_tx_reverted"

# A claim's depth to be final: by its asset and what it paid (the asset's FinalityRule).
DepthFor = Callable[[int, int], int]


@dataclass
class ClaimsReport:
    from_block: int = 0
    to_block: int = 0
    seen: int = 0  # Claimed logs new to the ledger
    applied: int = 0  # claims that moved their payouts to claimed
    claimed_payouts: int = 0
    finalized_payouts: int = 0
    finalized_payout_ids: list[int] = field(default_factory=list)  # for the time-to-final metric
    unwound: int = 0  # claims a reorg took away
    booked: int = 0  # wallet transactions booked (mined)
    exceptions: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Escrow:
    """The escrow the pass reads, and the tokens it knows (lowercase address -> asset id)."""

    chain_id: int
    address: str
    assets: Mapping[str, int]
    native_asset_id: int | None = None


def reconcile_claims(
    session: Session,
    chain: ChainClient,
    escrow: Escrow,
    *,
    head: int,
    chunk: int,
    depth_for: DepthFor,
    watch_blocks: int,
    actor: str = "reconciler",
) -> ClaimsReport:
    """Unwind, scan, apply, book and finalize, as the module says; a final claim of the last
    ``watch_blocks`` whose block left the chain is an exception. The caller commits."""
    report = ClaimsReport(to_block=head)
    _unwind_orphaned(session, chain, escrow, report, actor)
    _unbook_orphaned(session, chain, escrow, head - watch_blocks)
    new = _scan(session, chain, escrow, head, chunk, report, actor)
    if new:
        _apply(session, new, report, actor)
    _book_mined(session, chain, escrow, head, report, actor)
    _finalize(session, escrow, head, depth_for, report, actor)
    _watch_final(session, chain, escrow, head - watch_blocks, report)
    return report


def calls_at(chain: ChainClient, block: str, calls: Sequence[tuple[str, str]]) -> list[int]:
    """``eth_call`` of each (to, data) at ``block`` (a tag or a hex number), as integers, in
    JSON-RPC batches of the size nodes accept."""
    params = [[{"to": to, "data": data}, block] for to, data in calls]
    answers: list[str] = []
    for start in range(0, len(params), MAX_BATCH_CALLS):
        answers += chain.rpc_batch("eth_call", params[start : start + MAX_BATCH_CALLS])
    return [int(answer, 16) for answer in answers]


def claimed_calldata(recipient: str, token: str) -> str:
    """``claimed(recipient, token)``: the escrow's record of what ``recipient`` claimed."""
    return "0x" + (CLAIMED_OF + encode(["address", "address"], [recipient, token])).hex()


# 1. Unwind --------------------------------------------------------------------------------
def _canonical(chain: ChainClient, numbers: set[int]) -> dict[int, str | None]:
    return {n: (b.hash if b else None) for n, b in chain.blocks(numbers).items()}


def _unwind_orphaned(
    session: Session, chain: ChainClient, escrow: Escrow, report: ClaimsReport, actor: str
) -> None:
    open_claims = session.execute(
        text(
            "SELECT id, asset_id, paid, tx_hash, log_index, block_number, block_hash FROM claims"
            " WHERE unwound_at IS NULL AND final_at IS NULL AND chain_id = :c AND escrow = :e"
            " ORDER BY id FOR UPDATE"
        ),
        {"c": escrow.chain_id, "e": escrow.address},
    ).all()
    if not open_claims:
        return
    canonical = _canonical(chain, {int(c.block_number) for c in open_claims})
    gone = [c for c in open_claims if canonical[int(c.block_number)] != c.block_hash]
    if not gone:
        return
    ids = [int(c.id) for c in gone]
    covered = _covered(session, ids)
    for tx_hash, claims in _by_tx(gone).items():
        _move_covered(
            session,
            claims,
            PayoutState.CLAIMABLE,
            cause=f"claim {tx_hash} reorganised away (block {claims[0].block_number})",
            event={"tx_hash": tx_hash, "orphaned_block": claims[0].block_hash},
            actor=actor,
        )
    _post_claims(session, gone, covered, reverse=True)
    session.execute(
        text("UPDATE claims SET unwound_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))"),
        {"ids": ids},
    )
    _checkpoint_back(session, escrow, min(int(c.block_number) for c in gone))
    report.unwound += len(gone)
    report.notes.extend(f"claim {c.tx_hash}:{c.log_index} reorganised away" for c in gone)


def _move_covered(
    session: Session,
    claims: Sequence[Any],
    to_state: PayoutState,
    *,
    cause: str,
    event: Mapping[str, Any],
    actor: str,
) -> list[int]:
    """The claimed payouts the claims covered, moved on in one statement: final at depth, or
    claimable again when a reorg took the claims away."""
    return lifecycle.move_where(
        session,
        lifecycle.PAYOUT,
        to_state,
        where="t.id IN (SELECT payout_id FROM claim_payouts"
        " WHERE claim_id = ANY(CAST(:_claims AS bigint[])))",
        params={"_claims": [int(c.id) for c in claims]},
        from_states=[PayoutState.CLAIMED],
        cause=cause,
        actor=actor,
        event=event,
    )


def _checkpoint_back(session: Session, escrow: Escrow, block: int) -> None:
    session.execute(
        text(
            "UPDATE chain_checkpoints SET block_number = LEAST(block_number, :n - 1)"
            " WHERE chain_id = :c AND contract = :e"
        ),
        {"n": block, "c": escrow.chain_id, "e": escrow.address},
    )


def _by_tx(claims: Sequence[Any]) -> dict[str, list[Any]]:
    """Claims grouped by transaction: a sweep pays many in one, and the payouts of one
    transaction move in one statement whose events name it."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for c in claims:
        groups[c.tx_hash].append(c)
    return groups


# 2. Scan ----------------------------------------------------------------------------------
def _scan(
    session: Session,
    chain: ChainClient,
    escrow: Escrow,
    head: int,
    chunk: int,
    report: ClaimsReport,
    actor: str,
) -> list[int]:
    session.execute(
        text(
            "INSERT INTO chain_checkpoints (chain_id, contract, block_number)"
            " VALUES (:c, :e, -1) ON CONFLICT DO NOTHING"
        ),
        {"c": escrow.chain_id, "e": escrow.address},
    )
    checkpoint = session.execute(
        text(
            "SELECT block_number FROM chain_checkpoints WHERE chain_id = :c AND contract = :e"
            " FOR UPDATE"
        ),
        {"c": escrow.chain_id, "e": escrow.address},
    ).scalar_one()
    report.from_block = int(checkpoint) + 1
    logs: list[dict[str, Any]] = []
    for start in range(report.from_block, head + 1, chunk):
        logs += chain.logs(escrow.address, [[CLAIMED]], start, min(head, start + chunk - 1))
    new = _insert(session, escrow, logs, report, actor)
    if head >= report.from_block:
        session.execute(
            text(
                "UPDATE chain_checkpoints SET block_number = :b"
                " WHERE chain_id = :c AND contract = :e"
            ),
            {"b": head, "c": escrow.chain_id, "e": escrow.address},
        )
    return new


def _decode(log: dict[str, Any]) -> tuple[str, str, int, int]:
    """(recipient, token, cumulative, paid) of a Claimed log; the addresses checksummed, as
    payouts keep their recipients."""
    data = log["data"].removeprefix("0x")
    return (
        to_checksum_address("0x" + log["topics"][1][-40:]),
        "0x" + log["topics"][2][-40:].lower(),
        int(data[:64], 16),
        int(data[64:128], 16),
    )


def _insert(
    session: Session,
    escrow: Escrow,
    logs: Sequence[dict[str, Any]],
    report: ClaimsReport,
    actor: str,
) -> list[int]:
    rows: dict[str, list[Any]] = defaultdict(list)
    for log in logs:
        if log.get("removed"):
            continue
        recipient, token, cumulative, paid = _decode(log)
        asset_id = escrow.assets.get(token)
        if asset_id is None:
            # Tokens nobody configured: no ledger account to move, but never silent.
            key = f"{log['transactionHash']}:{int(log['logIndex'], 16)}"
            detail = {"token": token, "recipient": recipient, "paid": str(paid)}
            report.exceptions += record_exception(
                session, CLAIM_FOREIGN_ASSET, key, detail, tx_hash=log["transactionHash"]
            )
            continue
        for name, value in (
            ("asset", asset_id),
            ("recipient", recipient),
            ("cumulative", cumulative),
            ("paid", paid),
            ("tx", log["transactionHash"]),
            ("idx", int(log["logIndex"], 16)),
            ("block", int(log["blockNumber"], 16)),
            ("hash", log["blockHash"]),
        ):
            rows[name].append(value)
    if not rows:
        return []
    ids = session.execute(
        text(
            """
            INSERT INTO claims (chain_id, escrow, asset_id, recipient, cumulative, paid,
                                tx_hash, log_index, block_number, block_hash)
            SELECT :c, :e, * FROM unnest(CAST(:asset AS bigint[]), CAST(:recipient AS text[]),
                CAST(:cumulative AS numeric[]), CAST(:paid AS numeric[]), CAST(:tx AS text[]),
                CAST(:idx AS bigint[]), CAST(:block AS bigint[]), CAST(:hash AS text[]))
            ON CONFLICT DO NOTHING RETURNING id
            """
        ),
        {"c": escrow.chain_id, "e": escrow.address, **rows},
    ).scalars()
    new = sorted(int(i) for i in ids)
    report.seen += len(new)
    return new


# 3. Apply ---------------------------------------------------------------------------------
# Each claimable payout of the new claims' addresses with the running total it reaches (what
# that address already claimed, plus its claimable payouts in the order they became
# claimable), and the first new claim whose cumulative covers it. The order is the payout's
# first move to claimable (a payout held a while becomes claimable after later ones).
COVERAGE = f"""
    WITH new AS (
        SELECT id, recipient, asset_id, cumulative FROM claims
         WHERE id = ANY(CAST(:ids AS bigint[]))
    ), pairs AS (
        SELECT DISTINCT recipient, asset_id FROM new
    ), done AS (
        SELECT pairs.recipient, pairs.asset_id, coalesce(sum(q.amount), 0) AS total
          FROM pairs LEFT JOIN payouts q ON q.recipient = pairs.recipient
           AND q.asset_id = pairs.asset_id AND q.settled_by = 'claim'
           AND q.state IN ({PayoutState.CLAIMED.sql}, {PayoutState.FINALIZED.sql})
         GROUP BY 1, 2
    ), open AS (
        SELECT p.id, p.recipient, p.asset_id, p.amount, p.creator_id,
               done.total + sum(p.amount) OVER (
                   PARTITION BY p.recipient, p.asset_id ORDER BY became.at, p.id) AS reaches
          FROM done JOIN payouts p ON p.recipient = done.recipient
           AND p.asset_id = done.asset_id AND p.settled_by = 'claim'
           AND p.state = {PayoutState.CLAIMABLE.sql}
          CROSS JOIN LATERAL (
              SELECT min(t.id) AS at FROM transitions t WHERE t.entity = 'payout'
                 AND t.entity_id = p.id AND t.to_state = {PayoutState.CLAIMABLE.sql}) became
    )
    SELECT c.claim_id, o.id AS payout_id, o.amount, o.creator_id
      FROM open o CROSS JOIN LATERAL (
          SELECT n.id AS claim_id FROM new n WHERE n.recipient = o.recipient
             AND n.asset_id = o.asset_id AND n.cumulative >= o.reaches
           ORDER BY n.cumulative LIMIT 1) c
"""


@dataclass(frozen=True)
class _Cover:
    payout_id: int
    amount: int
    creator_id: int


def _apply(session: Session, ids: list[int], report: ClaimsReport, actor: str) -> None:
    claims = session.execute(
        text(
            "SELECT id, asset_id, recipient, cumulative, paid, tx_hash, log_index,"
            " block_number, block_hash FROM claims WHERE id = ANY(CAST(:ids AS bigint[]))"
            " ORDER BY block_number, log_index"
        ),
        {"ids": ids},
    ).all()
    covers: dict[int, list[_Cover]] = defaultdict(list)
    for row in session.execute(text(COVERAGE), {"ids": ids}):
        covers[int(row.claim_id)].append(
            _Cover(int(row.payout_id), int(row.amount), int(row.creator_id))
        )
    matched = [c for c in claims if sum(x.amount for x in covers[int(c.id)]) == int(c.paid)]
    for c in claims:
        if sum(x.amount for x in covers[int(c.id)]) != int(c.paid):
            _unmatched(session, c, covers[int(c.id)], report)
    if not matched:
        return
    pairs = [(int(c.id), x.payout_id) for c in matched for x in covers[int(c.id)]]
    session.execute(
        text(
            "INSERT INTO claim_payouts (claim_id, payout_id)"
            " SELECT * FROM unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[]))"
        ),
        {"c": [c for c, _ in pairs], "p": [p for _, p in pairs]},
    )
    for tx_hash, group in _by_tx(matched).items():
        moved = lifecycle.move(
            session,
            lifecycle.PAYOUT,
            [x.payout_id for c in group for x in covers[int(c.id)]],
            PayoutState.CLAIMED,
            cause=f"claimed in {tx_hash} (block {group[0].block_number})",
            actor=actor,
            from_states=[PayoutState.CLAIMABLE],
            strict=True,
            event={"tx_hash": tx_hash, "block_number": int(group[0].block_number)},
        )
        report.claimed_payouts += len(moved)
    _post_claims(session, matched, covers, reverse=False)
    report.applied += len(matched)


def _unmatched(session: Session, claim: Any, covers: list[_Cover], report: ClaimsReport) -> None:
    detail = {
        "recipient": claim.recipient,
        "cumulative": str(claim.cumulative),
        "paid": str(claim.paid),
        "covered": str(sum(x.amount for x in covers)),
        "block_number": int(claim.block_number),
    }
    key = f"{claim.tx_hash}:{claim.log_index}"
    report.exceptions += record_exception(
        session, CLAIM_UNMATCHED, key, detail, tx_hash=claim.tx_hash
    )
    report.notes.append(f"claim {key} paid {claim.paid}, its payouts add up to another amount")


def _covered(session: Session, claim_ids: list[int]) -> dict[int, list[_Cover]]:
    covers: dict[int, list[_Cover]] = defaultdict(list)
    for row in session.execute(
        text(
            "SELECT cp.claim_id, p.id, p.amount, p.creator_id FROM claim_payouts cp"
            " JOIN payouts p ON p.id = cp.payout_id"
            " WHERE cp.claim_id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": claim_ids},
    ):
        covers[int(row.claim_id)].append(_Cover(int(row.id), int(row.amount), int(row.creator_id)))
    return covers


def _post_claims(
    session: Session, claims: Sequence[Any], covers: Mapping[int, list[_Cover]], *, reverse: bool
) -> None:
    """One journal per claim: out of the escrow what it paid, out of each covered payout's
    creator's claimable account its amount (the reverse legs when a reorg took it away)."""
    keys: list[AccountKey] = []
    for c in claims:
        keys.append((ESCROW, None, int(c.asset_id)))
        keys += [(CLAIMABLE, x.creator_id, int(c.asset_id)) for x in covers[int(c.id)]]
    accounts = ensure_accounts(session, keys)
    sign = -1 if reverse else 1
    postings = []
    for c in claims:
        legs = [Leg(accounts[(ESCROW, None, int(c.asset_id))], -sign * int(c.paid))]
        legs += [
            Leg(accounts[(CLAIMABLE, x.creator_id, int(c.asset_id))], sign * x.amount, x.payout_id)
            for x in covers[int(c.id)]
        ]
        what = "claim unwound" if reverse else "claim"
        postings.append(Posting(what.replace(" ", "_"), f"{what} {c.tx_hash}:{c.log_index}", legs))
    post_many(session, postings)


# 4. Book the hot wallet's own transactions -----------------------------------------------
def _book_mined(
    session: Session,
    chain: ChainClient,
    escrow: Escrow,
    head: int,
    report: ClaimsReport,
    actor: str,
) -> None:
    sent = session.execute(
        text(
            "SELECT id, purpose, asset_id, amount, tx_hash FROM wallet_transactions"
            " WHERE block_number IS NULL AND sent_at IS NOT NULL AND chain_id = :c"
            " ORDER BY id FOR UPDATE"
        ),
        {"c": escrow.chain_id},
    ).all()
    receipts = {s.id: chain.receipt(s.tx_hash) for s in sent}
    mined: list[tuple[Any, dict[str, Any]]] = [
        (s, r)
        for s in sent
        if (r := receipts[s.id]) is not None and int(r["blockNumber"], 16) <= head
    ]
    if not mined:
        return
    keys: list[AccountKey] = []
    for s, _ in mined:
        keys += [(ESCROW, None, int(s.asset_id)), (WALLET, None, int(s.asset_id))]
    if escrow.native_asset_id is not None:
        keys += [(GAS, None, escrow.native_asset_id), (WALLET, None, escrow.native_asset_id)]
    accounts = ensure_accounts(session, keys)
    for s, receipt in mined:
        ok = int(receipt["status"], 16) == 1
        legs = []
        if ok and s.purpose == "topup":
            legs += [
                Leg(accounts[(ESCROW, None, int(s.asset_id))], int(s.amount)),
                Leg(accounts[(WALLET, None, int(s.asset_id))], -int(s.amount)),
            ]
        if escrow.native_asset_id is not None:
            fee = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
            legs += [
                Leg(accounts[(GAS, None, escrow.native_asset_id)], fee),
                Leg(accounts[(WALLET, None, escrow.native_asset_id)], -fee),
            ]
        journal = None
        if any(leg.amount for leg in legs):
            [journal] = post_many(session, [Posting(s.purpose, f"{s.purpose} {s.tx_hash}", legs)])
        session.execute(
            text(
                "UPDATE wallet_transactions SET block_number = :n, block_hash = :h,"
                " reverted = :r, journal_id = :j WHERE id = :id"
            ),
            {
                "n": int(receipt["blockNumber"], 16),
                "h": receipt["blockHash"],
                "r": not ok,
                "j": journal,
                "id": s.id,
            },
        )
        if not ok:
            detail = {"purpose": s.purpose, "amount": str(s.amount)}
            report.exceptions += record_exception(
                session, WALLET_TX_REVERTED, s.tx_hash, detail, tx_hash=s.tx_hash
            )
        report.booked += 1


def _unbook_orphaned(session: Session, chain: ChainClient, escrow: Escrow, since: int) -> None:
    """Booked transactions of the watched blocks whose block left the chain: their journal
    reversed and their block forgotten, so the sender resends the same bytes and the next
    pass books wherever they land."""
    booked = session.execute(
        text(
            "SELECT w.id, w.block_number, w.block_hash, w.journal_id, w.tx_hash"
            " FROM wallet_transactions w WHERE w.block_number >= :since AND w.chain_id = :c"
            " ORDER BY w.id FOR UPDATE"
        ),
        {"since": since, "c": escrow.chain_id},
    ).all()
    if not booked:
        return
    canonical = _canonical(chain, {int(b.block_number) for b in booked})
    gone = [b for b in booked if canonical[int(b.block_number)] != b.block_hash]
    if not gone:
        return
    journals = [int(b.journal_id) for b in gone if b.journal_id is not None]
    legs: dict[int, list[Leg]] = defaultdict(list)
    for row in session.execute(
        text(
            "SELECT journal_id, account_id, amount FROM entries"
            " WHERE journal_id = ANY(CAST(:j AS bigint[])) ORDER BY id"
        ),
        {"j": journals},
    ):
        legs[int(row.journal_id)].append(Leg(int(row.account_id), -int(row.amount)))
    named = {int(b.journal_id): b.tx_hash for b in gone if b.journal_id is not None}
    post_many(session, [Posting("unbooked", f"{named[j]} reorganised away", legs[j]) for j in legs])
    session.execute(
        text(
            "UPDATE wallet_transactions SET block_number = NULL, block_hash = NULL,"
            " reverted = NULL, journal_id = NULL WHERE id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": [int(b.id) for b in gone]},
    )


# 5. Finalize ------------------------------------------------------------------------------
def _finalize(
    session: Session,
    escrow: Escrow,
    head: int,
    depth_for: DepthFor,
    report: ClaimsReport,
    actor: str,
) -> None:
    open_claims = session.execute(
        text(
            "SELECT id, asset_id, paid, tx_hash, block_number FROM claims"
            " WHERE unwound_at IS NULL AND final_at IS NULL AND chain_id = :c AND escrow = :e"
            " ORDER BY id"
        ),
        {"c": escrow.chain_id, "e": escrow.address},
    ).all()
    final = [
        c
        for c in open_claims
        if head - int(c.block_number) + 1 >= depth_for(int(c.asset_id), int(c.paid))
    ]
    for tx_hash, group in _by_tx(final).items():
        depth = head - int(group[0].block_number) + 1
        moved = _move_covered(
            session,
            group,
            PayoutState.FINALIZED,
            cause=f"claim {tx_hash} {depth} blocks deep",
            event={"tx_hash": tx_hash, "block_number": int(group[0].block_number)},
            actor=actor,
        )
        report.finalized_payouts += len(moved)
        report.finalized_payout_ids.extend(moved)
    if final:
        session.execute(
            text("UPDATE claims SET final_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))"),
            {"ids": [int(c.id) for c in final]},
        )


def _watch_final(
    session: Session, chain: ChainClient, escrow: Escrow, since: int, report: ClaimsReport
) -> None:
    """Final claims of the watched blocks whose block left the chain: final states stay final,
    an operator gets the evidence (a voucher re-sent can pay only what is still unclaimed on
    the chain, so re-claiming never pays twice)."""
    final = session.execute(
        text(
            "SELECT id, paid, recipient, tx_hash, log_index, block_number, block_hash FROM claims"
            " WHERE final_at IS NOT NULL AND unwound_at IS NULL AND block_number >= :since"
            " AND chain_id = :c AND escrow = :e ORDER BY id"
        ),
        {"since": since, "c": escrow.chain_id, "e": escrow.address},
    ).all()
    if not final:
        return
    canonical = _canonical(chain, {int(c.block_number) for c in final})
    for c in final:
        if canonical[int(c.block_number)] == c.block_hash:
            continue
        detail = {
            "recipient": c.recipient,
            "paid": str(c.paid),
            "block": int(c.block_number),
            "final_block_hash": c.block_hash,
            "canonical_block_hash": canonical[int(c.block_number)],
            "tx_still_on_chain": chain.receipt(c.tx_hash) is not None,
        }
        key = f"{c.tx_hash}:{c.log_index}:{c.block_hash}"
        if record_exception(session, CLAIM_REORGED_AFTER_FINALITY, key, detail, tx_hash=c.tx_hash):
            report.exceptions += 1
            report.notes.append(f"claim {c.tx_hash}: final block {c.block_number} reorganised")
