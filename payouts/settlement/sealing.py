"""Sealing pending payouts into batches the hot wallet can pay in one transaction each.

Pending payouts are claimed with ``FOR UPDATE SKIP LOCKED``, so two settlement runs (beat and
an operator) never seal the same payout; a payout belongs to at most one live batch because
``payouts.batch_id`` has room for one. Before sealing, the hot wallet's token balance and
allowance and its gas money are checked, ``BatchPolicy.plan`` decides how many payouts to try
(or why to wait), ``selection`` picks the payouts (marketplaces in turn; one the funds cannot
cover is passed over, never blocking the ones behind), and the chain estimates the candidate's
gas. Payouts of creators on hold and payouts too small to be worth today's gas (unless
overdue) wait; a payout waiting for funds raises the low-balance alert with the amount
missing, and one no batch can ever carry (over the gas cap alone) is an exception at once.
Where an escrow is configured, the payouts that go by claim (``claiming``) are made claimable
first, at the same fee, and never enter a batch.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import holds, lifecycle
from payouts.chain import codec
from payouts.chain.client import ChainClient
from payouts.errors import EscrowChanged
from payouts.exception_queue import record_exception, resolve_exception
from payouts.holds import NewHold
from payouts.money import Asset
from payouts.settlement import screening
from payouts.settlement.claiming import Claiming, Screen, make_claimable
from payouts.settlement.finality import FinalityRule
from payouts.settlement.policy import BatchPolicy, Conditions, SettleBy
from payouts.settlement.risk import Limit, Tripped, Usage
from payouts.settlement.selection import Candidate, fair_order, select, shortfall
from payouts.states import (
    BATCH_SEEN,
    BATCH_UNMINED,
    BatchState,
    CreatorState,
    ExceptionState,
    PayoutState,
    TxAttemptState,
    sql_in,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BalanceAlerts:
    """An operator hears, once an hour at most, that the hot wallet is running low: below the
    configured floor, or short of what the payouts waiting for funds need (with the amount
    missing). When neither holds any more, the open alert closes itself with the reason."""

    token_below: int
    gas_below: int

    def check(
        self,
        session: Session,
        asset: Asset,
        token_available: int,
        gas: int,
        *,
        missing: int = 0,
        waiting: int = 0,
    ) -> None:
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
        for what, have, floor, short in (
            (asset.symbol, token_available, self.token_below, missing),
            ("gas", gas, self.gas_below, 0),
        ):
            if have < floor or short > 0:
                log.warning(
                    "hot wallet low on %s: %d (floor %d, missing %d)", what, have, floor, short
                )
                detail = {"what": what, "available": str(have), "alert_below": str(floor)}
                if short:
                    detail.update(missing=str(short), payouts_waiting=str(waiting))
                record_exception(session, "low_balance", f"{what}:{hour}", detail)
            else:
                _close_low_balance(
                    session,
                    what,
                    f"{what} available {have}, at least the floor {floor}, nothing waiting",
                )


def _close_low_balance(session: Session, what: str, resolution: str) -> None:
    """The cause is gone: the wallet's open alerts about ``what`` close with the reason."""
    open_ids = session.execute(
        text(
            f"SELECT id FROM exceptions WHERE kind = 'low_balance'"
            f" AND state = {ExceptionState.OPEN.sql} AND detail->>'what' = :what ORDER BY id"
        ),
        {"what": what},
    ).scalars()
    for exception_id in open_ids:
        resolve_exception(session, exception_id, resolution, actor="settlement")


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
    claimable: int = 0  # payouts made claimable instead (settled by claim)


def committed_out(session: Session, asset_id: int, wallet: str) -> int:
    """What the wallet's transactions not yet on chain will take of the asset: its batches
    not yet mined and its escrow top-ups stored but not yet booked. Both come out of the one
    balance, in nonce order: neither settlement nor a top-up may count these tokens again."""
    return int(
        session.execute(
            text(
                "SELECT (SELECT coalesce(sum(total), 0) FROM batches WHERE asset_id = :a"
                f" AND payer = :w AND state IN {sql_in(*BATCH_UNMINED)})"
                " + (SELECT coalesce(sum(amount), 0) FROM wallet_transactions"
                " WHERE asset_id = :a AND sender = :w AND purpose = 'topup'"
                " AND block_number IS NULL)"
            ),
            {"a": asset_id, "w": wallet},
        ).scalar_one()
    )


def _spendable(
    session: Session, chain: ChainClient, asset: Asset, asset_id: int, wallet: str, spender: str
) -> int:
    """What the wallet can still pay: min(balance, allowance) less what its transactions not
    yet on chain will take (``committed_out``)."""
    assert asset.address is not None
    balance = int(chain.call(asset.address, codec.balance_of_calldata(wallet)), 16)
    allowance = int(chain.call(asset.address, codec.allowance_calldata(wallet, spender)), 16)
    return max(0, min(balance, allowance) - committed_out(session, asset_id, wallet))


def _gas_money(
    session: Session, chain: ChainClient, wallet: str, policy: BatchPolicy, fee: int
) -> tuple[int, int]:
    """The wallet's native balance, and what is left of it once the batches not yet mined
    have burnt their whole gas limit at ``fee``."""
    balance = chain.balance(wallet)
    unmined_gas = session.execute(
        text(
            "SELECT coalesce(sum(gas_estimate), 0) FROM batches"
            f" WHERE payer = :w AND state IN {sql_in(BatchState.SEALED, BatchState.BROADCAST)}"
        ),
        {"w": wallet},
    ).scalar_one()
    return balance, max(0, balance - policy.gas_limit(int(unmined_gas)) * fee)


def _recent_outcomes(session: Session, asset_id: int, last: int = 10) -> list[bool]:
    """How the latest finished batches fared, oldest first: False if failed or retried."""
    rows = session.execute(
        text(
            f"""
            SELECT state <> {BatchState.FAILED.sql} AND submit_tier = 0 AND NOT EXISTS (
                       SELECT 1 FROM tx_attempts t WHERE t.batch_id = b.id
                          AND t.state = {TxAttemptState.REPLACED.sql}) AS ok
              FROM batches b
             WHERE asset_id = :a AND state IN {sql_in(*BATCH_SEEN, BatchState.FAILED)}
             ORDER BY id DESC LIMIT :n
            """
        ),
        {"a": asset_id, "n": last},
    ).scalars()
    return list(reversed(list(rows)))


def _eligible(
    session: Session,
    asset_id: int,
    min_amount: int,
    overdue_before: datetime,
    *,
    up_to: int | None = None,
) -> tuple[list[Candidate], bool]:
    """The payouts that may go now, in fair order, and whether any of them is overdue.

    Read without locks: each batch locks its own choice (``_claim``), so a payout another run
    took meanwhile is simply not sealed twice."""
    rows = session.execute(
        text(
            f"""
            SELECT p.id, c.marketplace_id, p.creator_id, p.recipient, p.amount,
                   p.window_start < :overdue_before AS overdue
              FROM payouts p JOIN creators c ON c.id = p.creator_id
             WHERE p.state = {PayoutState.PENDING.sql} AND p.asset_id = :a
               AND c.state = {CreatorState.ACTIVE.sql}
               AND (p.amount >= :min OR p.window_start < :overdue_before)
               AND p.id <= :up_to
            """
        ),
        {
            "a": asset_id,
            "min": min_amount,
            "overdue_before": overdue_before,
            "up_to": 2**63 - 1 if up_to is None else up_to,
        },
    ).all()
    queue = fair_order(
        Candidate(r.id, r.marketplace_id, r.creator_id, r.recipient, int(r.amount)) for r in rows
    )
    return queue, any(r.overdue for r in rows)


def _claim(session: Session, chosen: Sequence[Candidate]) -> list[Candidate]:
    """Lock the chosen payouts still pending, in the order chosen; ones another settlement
    run holds or sealed meanwhile are left to it."""
    locked = set(
        session.execute(
            text(
                f"""
                SELECT p.id FROM payouts p
                 WHERE p.id = ANY(:ids) AND p.state = {PayoutState.PENDING.sql}
                 ORDER BY p.id FOR UPDATE OF p SKIP LOCKED
                """
            ),
            {"ids": [c.payout_id for c in chosen]},
        ).scalars()
    )
    return [c for c in chosen if c.payout_id in locked]


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
    overdue_after: timedelta = timedelta(days=1),
    alerts: BalanceAlerts | None = None,
    finality: FinalityRule | None = None,
    max_batches: int = 100,
    limits: Sequence[Limit] = (),
    deny_check: str | None = None,
    claiming: Claiming | None = None,
) -> SettlementPlan:
    """Make claimable what goes by claim, then seal as many batches as the wallet, the policy
    and the limits allow. The caller commits."""
    if asset.address is None:
        raise NotImplementedError("native-currency payouts are not batched yet")
    holds.expire(session, actor=actor)
    available = _spendable(session, chain, asset, asset_id, wallet, batcher_address)
    head = chain.block("latest")
    assert head is not None
    claimable = 0
    up_to: int | None = None
    if claiming is not None:
        # Only payouts the claiming step below could see may be batched: one the roll-up
        # commits while this run is between its two steps is of a creator who may want it
        # claimed, and waits for the next run to decide (ids grow: roll-ups run one at a time).
        up_to = int(
            session.execute(
                text("SELECT coalesce(max(id), 0) FROM payouts WHERE asset_id = :a"),
                {"a": asset_id},
            ).scalar_one()
        )
        fee = head.base_fee_per_gas + policy.priority_fee
        try:
            made = make_claimable(
                session,
                chain,
                token=asset.address,
                asset_id=asset_id,
                claiming=claiming,
                fee_per_gas=fee,
                actor=actor,
                screen=_claim_screen(
                    session, chain, asset_id, asset.address, deny_check, limits, actor
                ),
            )
            claimable = made.payouts
        except EscrowChanged as exc:
            # Claims stop, payouts do not: everything goes by push, as without an escrow,
            # and the operator is told why until the escrow is set back.
            issuer = claiming.issuer
            record_exception(
                session,
                exc.code,
                f"{issuer.chain_id}:{issuer.escrow}",
                {"configured": issuer.escrow, "chain_id": issuer.chain_id, "reason": str(exc)},
            )
    worst_fee = min(policy.max_fee_per_gas, 2 * head.base_fee_per_gas + policy.priority_fee)
    gas_balance, gas_money = _gas_money(session, chain, wallet, policy, worst_fee)
    outcomes = _recent_outcomes(session, asset_id)
    min_amount = policy.min_amount(head.base_fee_per_gas + policy.priority_fee)
    queue, overdue = _eligible(
        session, asset_id, min_amount, datetime.now(UTC) - overdue_after, up_to=up_to
    )
    # What an operator approved in review is not held again by a rule or a screen.
    approved = holds.approved_payouts(session, [c.payout_id for c in queue])
    queue = _screen_deny_list(session, queue, approved, actor)
    usage = _usage(session, asset_id) if limits else Usage()
    waiting_for_funds = False
    sealed: list[SealedBatch] = []
    reason = "no pending payouts"
    while len(sealed) < max_batches:
        decision = policy.plan(
            Conditions(
                available=len(queue),
                base_fee=head.base_fee_per_gas,
                block_gas_limit=head.gas_limit,
                gas_balance=gas_money,
                recent_outcomes=outcomes,
                overdue=overdue,
            )
        )
        if decision.size <= 0:
            reason = decision.reason
            if not sealed and not queue and min_amount:
                reason = f"payouts below {min_amount} wait for cheaper gas"
            break
        pick = select(
            queue,
            funds=available,
            size=decision.size,
            limits=limits,
            usage=usage,
            approved=approved,
        )
        if pick.held:
            _hold(session, pick.held, actor)
            tripped = {t.candidate.payout_id for t in pick.held}
            queue = [c for c in queue if c.payout_id not in tripped]
        if not pick.chosen:
            waiting_for_funds = True
            reason = (
                f"hot wallet cannot pay the {len(queue)} payouts left"
                f" ({shortfall(queue, available)} missing)"
            )
            break
        taken = {c.payout_id for c in pick.chosen}
        queue = [c for c in queue if c.payout_id not in taken]
        chosen = pick.chosen
        if deny_check:
            chosen = _screen_token(
                session, chain, asset.address, deny_check, chosen, approved, actor
            )
        candidate = _claim(session, chosen)
        public_id = uuid.uuid4()
        estimate = 0
        while candidate:
            data = codec.pay_erc20_calldata(
                public_id.int, asset.address, [(c.recipient, c.amount) for c in candidate]
            )
            estimate = chain.estimate_gas(wallet, batcher_address, data)
            if policy.fits(estimate):
                break
            if len(candidate) == 1:  # alone over the gas cap: no batch will ever carry it
                _record_oversized(session, candidate[0], estimate, policy)
                candidate = []
                break
            kept = candidate[: max(1, policy.shrink(len(candidate), estimate))]
            queue = candidate[len(kept) :] + queue  # the rest go first in the next batch
            candidate = kept
        if not candidate:
            continue
        policy = policy.learn(len(candidate), estimate)
        depth = finality.depth_for(max(c.amount for c in candidate)) if finality else None
        batch = _seal(
            session, candidate, public_id, asset_id, asset.chain_id, wallet, estimate, depth, actor
        )
        sealed.append(batch)
        for c in candidate:
            usage.add(c)
        available -= batch.total
        gas_money = max(0, gas_money - policy.gas_limit(estimate) * worst_fee)
        reason = "sealed"
    if alerts is not None:
        missing = shortfall(queue, available) if waiting_for_funds else 0
        alerts.check(session, asset, available, gas_balance, missing=missing, waiting=len(queue))
    pending_left = session.execute(
        text(
            f"SELECT count(*) FROM payouts WHERE state = {PayoutState.PENDING.sql}"
            " AND asset_id = :a"
        ),
        {"a": asset_id},
    ).scalar_one()
    return SettlementPlan(sealed, int(pending_left), available, reason, claimable)


def _usage(session: Session, asset_id: int) -> Usage:
    """What live batches of the asset carried and what became claimable in the last day and
    hour, per creator, marketplace and in all (a batch counts from when it was sealed)."""
    rows = session.execute(
        text(
            f"""
            WITH out AS (
                SELECT i.payout_id, i.amount, b.created_at AS at
                  FROM batch_items i JOIN batches b ON b.id = i.batch_id
                 WHERE b.asset_id = :a AND b.state <> {BatchState.FAILED.sql}
                   AND b.created_at > now() - interval '1 day'
                UNION ALL
                SELECT p.id, p.amount, p.claimable_at FROM payouts p
                 WHERE p.asset_id = :a AND p.claimable_at > now() - interval '1 day'
            )
            SELECT p.creator_id, c.marketplace_id,
                   count(*) AS day_count, sum(o.amount) AS day_amount,
                   count(*) FILTER (WHERE o.at > now() - interval '1 hour') AS hour_count,
                   coalesce(sum(o.amount) FILTER (
                       WHERE o.at > now() - interval '1 hour'), 0) AS hour_amount
              FROM out o JOIN payouts p ON p.id = o.payout_id
              JOIN creators c ON c.id = p.creator_id
             GROUP BY p.creator_id, c.marketplace_id
            """
        ),
        {"a": asset_id},
    ).all()
    usage = Usage()
    for r in rows:
        usage.count("creator", r.creator_id, r)
        usage.count("marketplace", r.marketplace_id, r)
        usage.count("asset", 0, r)
    return usage


def _screen_deny_list(
    session: Session, queue: list[Candidate], approved: frozenset[int], actor: str
) -> list[Candidate]:
    """Hold every payout whose recipient the deny list names; the rest go on."""
    listed = screening.denied(session, sorted({c.recipient for c in queue}))
    caught = [c for c in queue if c.recipient in listed and c.payout_id not in approved]
    if not caught:
        return queue
    holds.place(
        session,
        [
            NewHold(
                c.creator_id,
                screening.DENY_LIST,
                f"recipient {c.recipient} is on the deny list: {listed[c.recipient]['reason']}",
                payout_id=c.payout_id,
                figures={"address": c.recipient, **listed[c.recipient]},
            )
            for c in caught
        ],
        actor=actor,
    )
    held = {c.payout_id for c in caught}
    return [c for c in queue if c.payout_id not in held]


def _screen_token(
    session: Session,
    chain: ChainClient,
    token: str,
    check: str,
    chosen: list[Candidate],
    approved: frozenset[int],
    actor: str,
) -> list[Candidate]:
    """Hold every chosen payout the token itself would refuse (one batched read)."""
    screened = [c for c in chosen if c.payout_id not in approved]
    refused = screening.token_denied(chain, token, check, [c.recipient for c in screened])
    if not refused:
        return chosen
    holds.place(
        session,
        [
            NewHold(
                c.creator_id,
                screening.TOKEN_DENY,
                f"the token's {check} refuses {c.recipient}",
                payout_id=c.payout_id,
                figures={"address": c.recipient, "token": token, "check": check},
            )
            for c in screened
            if c.recipient in refused
        ],
        actor=actor,
    )
    held = {c.payout_id for c in screened if c.recipient in refused}
    return [c for c in chosen if c.payout_id not in held]


def _claim_screen(
    session: Session,
    chain: ChainClient,
    asset_id: int,
    token: str,
    check: str | None,
    limits: Sequence[Limit],
    actor: str,
) -> Screen | None:
    """What holds a payout before a batch holds it before it becomes claimable: the limits
    (claims count as payouts out) and the token's own deny check."""
    if check is None and not limits:
        return None

    def screen(chosen: list[Candidate]) -> list[Candidate]:
        approved = holds.approved_payouts(session, [c.payout_id for c in chosen])
        if limits:
            pick = select(
                chosen,
                funds=sum(c.amount for c in chosen),
                size=len(chosen),
                limits=limits,
                usage=_usage(session, asset_id),
                approved=approved,
            )
            if pick.held:
                _hold(session, pick.held, actor)
            chosen = pick.chosen
        if check is None:
            return chosen
        return _screen_token(session, chain, token, check, chosen, approved, actor)

    return screen


def _hold(session: Session, trips: Sequence[Tripped], actor: str) -> None:
    """What a limit would exceed is held, not dropped: with the rule and its figures, for
    an operator's review."""
    holds.place(
        session,
        [
            NewHold(
                t.candidate.creator_id,
                t.limit.rule,
                f"{t.limit.rule}: {t.would_be} would pass the ceiling {t.limit.ceiling}",
                payout_id=t.candidate.payout_id,
                figures=t.figures,
            )
            for t in trips
        ],
        actor=actor,
    )


def _record_oversized(
    session: Session, payout: Candidate, estimate: int, policy: BatchPolicy
) -> None:
    """A payout that cannot be paid for a reason that will not fix itself: the operator hears
    at once, with the evidence; the payout stays pending and is passed over meanwhile."""
    record_exception(
        session,
        "payout_over_gas_cap",
        str(payout.payout_id),
        {
            "recipient": payout.recipient,
            "amount": str(payout.amount),
            "gas_estimate": estimate,
            "gas_limit": policy.gas_limit(estimate),
            "gas_cap": policy.gas_cap,
        },
        payout_id=payout.payout_id,
    )


def _seal(
    session: Session,
    rows: Sequence[Candidate],
    public_id: uuid.UUID,
    asset_id: int,
    chain_id: int,
    wallet: str,
    estimate: int,
    finality_depth: int | None,
    actor: str,
) -> SealedBatch:
    total = sum(r.amount for r in rows)
    batch_id = session.execute(
        text(
            """
            INSERT INTO batches (public_id, asset_id, chain_id, payer, item_count, total,
                                 gas_estimate, finality_depth)
            VALUES (:pid, :a, :chain, :payer, :n, :total, :gas, :depth) RETURNING id
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
            "depth": finality_depth,
        },
    ).scalar_one()
    ids = [r.payout_id for r in rows]
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
    lifecycle.move(
        session,
        lifecycle.PAYOUT,
        ids,
        PayoutState.BATCHED,
        cause=f"sealed in batch {batch_id}",
        actor=actor,
        strict=True,
        also={"batch_id": ":batch", "settled_by": ":push"},
        params={"batch": batch_id, "push": str(SettleBy.PUSH)},
    )
    lifecycle.move(
        session,
        lifecycle.BATCH,
        [batch_id],
        BatchState.SEALED,
        cause=f"{len(ids)} payouts, gas estimate {estimate}",
        actor=actor,
        strict=True,
    )
    return SealedBatch(batch_id, public_id, len(ids), total, estimate)
