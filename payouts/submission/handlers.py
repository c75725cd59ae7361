"""Submission handlers: sign, send, watch, replace, retry in tiers, replay for an operator.

Each step is safe to repeat after a crash: the signed transaction is stored before it is sent,
every later try sends the same bytes (or a replacement with the same nonce), and the state
moves only forward. The decisions are pure (``decisions``); these functions gather the facts
and carry the decisions out, one short unit of work at a time, never holding a transaction
open across a call to the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import exception_queue
from payouts.chain.fees import Fees, bumped
from payouts.db import models
from payouts.errors import ChainError, InvalidInput
from payouts.runtime import Runtime
from payouts.settlement.policy import policy_for
from payouts.states import BatchState
from payouts.submission import lane, retries
from payouts.submission.decisions import (
    AfterSend,
    SendOutcome,
    SubmitOutcome,
    WatchAction,
    after_send,
    watch_action,
)
from payouts.submission.moves import fail_batch, mark_broadcast
from payouts.submission.send import broadcast
from payouts.submission.tiers import tiers_for


@dataclass(frozen=True)
class SubmitResult:
    batch_id: int
    tx_hash: str | None
    nonce: int | None
    outcome: SubmitOutcome
    state: str | None = None  # the batch's state, when it was skipped

    def describe(self) -> str:
        """``broadcast``, or ``skipped:<state>``: the outcome as operators read it."""
        return f"{self.outcome}:{self.state}" if self.state else str(self.outcome)


@dataclass(frozen=True)
class WatchResult:
    batch_id: int
    outcome: SubmitOutcome
    tx_hash: str | None = None
    result: SubmitResult | None = None


def sign(rt: Runtime, batch_id: int) -> SubmitResult | models.TxAttempt:
    """Step one of ``submit``: the batch's stored signed transaction (signed now if it has
    none), or why there is nothing to send."""
    with rt.uow() as session:
        token = _token_of(session, batch_id)
        if token is None:
            return SubmitResult(batch_id, None, None, SubmitOutcome.NATIVE)
        attempt = lane.sign_and_store(
            session,
            rt.chain,
            rt.signer,
            batch_id=batch_id,
            batcher_address=rt.batcher,
            token_address=token,
            policy=policy_for(rt.settings),
            max_fee_cap=rt.settings.max_fee_per_gas,
            priority_fee=rt.settings.priority_fee_per_gas,
        )
        if attempt is None:
            state = _state_of(session, batch_id)
            return SubmitResult(batch_id, None, None, SubmitOutcome.SKIPPED, state)
        session.commit()
    return attempt


def submit(rt: Runtime, batch_id: int, *, actor: str = "submitter") -> SubmitResult:
    """Sign-and-store, broadcast, record: each step safe to repeat after a crash."""
    attempt = sign(rt, batch_id)
    if isinstance(attempt, SubmitResult):
        return attempt
    result = _send(rt, batch_id, attempt, actor=actor)
    if result.outcome is SubmitOutcome.UNDERPRICED:
        # The base fee rose between signing and sending: the same nonce, fees raised.
        replaced = _replace(rt, batch_id, attempt, actor=actor)
        return replaced.result or SubmitResult(
            batch_id, attempt.tx_hash, attempt.nonce, replaced.outcome
        )
    return result


def _send(
    rt: Runtime,
    batch_id: int,
    attempt: models.TxAttempt,
    *,
    actor: str,
    outcome: SubmitOutcome = SubmitOutcome.BROADCAST,
) -> SubmitResult:
    """Hand a stored attempt to the node and record what happened."""
    with rt.uow() as session:
        siblings = [a.tx_hash for a in lane.live_attempts(session, batch_id) if a.id != attempt.id]
    head = rt.chain.block_number()
    sent = broadcast(rt.chain, attempt, siblings)
    match after_send(sent):
        case AfterSend.REPLACE:
            return SubmitResult(batch_id, attempt.tx_hash, attempt.nonce, SubmitOutcome.UNDERPRICED)
        case AfterSend.FAIL_BATCH:
            _fail_foreign_nonce(rt, batch_id, attempt, actor=actor)
            return SubmitResult(
                batch_id, attempt.tx_hash, attempt.nonce, SubmitOutcome.NONCE_CONSUMED
            )
    with rt.uow() as session:
        lane.record_sent(session, attempt.id, head)
        mark_broadcast(session, batch_id, attempt.id, actor=actor)
        retries.clear_retry(session, batch_id)
        session.commit()
    if sent is not SendOutcome.SENT:
        outcome = SubmitOutcome.REBROADCAST
    return SubmitResult(batch_id, attempt.tx_hash, attempt.nonce, outcome)


def _fail_foreign_nonce(
    rt: Runtime, batch_id: int, attempt: models.TxAttempt, *, actor: str
) -> None:
    """Another transaction from our wallet took this nonce: ours can never be mined. Fail the
    batch, release its payouts for the next one, and tell an operator (a foreign transaction
    from the hot wallet is worth a look)."""
    with rt.uow() as session:
        released = fail_batch(
            session,
            batch_id,
            cause=f"nonce {attempt.nonce} was used by a transaction that is not ours",
            actor=actor,
        )
        exception_queue.record_exception(
            session,
            "nonce_consumed",
            attempt.tx_hash,
            {"nonce": attempt.nonce, "sender": attempt.sender, "payouts_released": released},
            batch_id=batch_id,
            tx_hash=attempt.tx_hash,
        )
        session.commit()


def watch(rt: Runtime, batch_id: int, *, actor: str = "watcher") -> WatchResult:
    """Look after one batch that is out but not yet mined.

    Dropped from the node's pool: the stored bytes are sent again (same hash, same nonce); if
    the node refuses them because the base fee has risen past their max fee, a replacement
    goes instead. Unmined ``stuck_after_blocks`` after it was sent: a replacement with fees
    raised by ``fee_bump_bps``. The earlier attempts stay live, because whichever is mined
    first is the one the reconciler records.
    """
    with rt.uow() as session:
        state = _state_of(session, batch_id)
        attempts = lane.live_attempts(session, batch_id)
        session.expunge_all()
    out = state == BatchState.BROADCAST and bool(attempts)
    mined = out and any(rt.chain.receipt(a.tx_hash) is not None for a in attempts)
    newest = attempts[0] if attempts else None
    in_pool = bool(out and not mined and newest and rt.chain.transaction(newest.tx_hash))
    waiting = None
    if in_pool and newest is not None and newest.sent_block is not None:
        waiting = rt.chain.block_number() - newest.sent_block
    action = watch_action(
        out=out,
        mined=mined,
        in_pool=in_pool,
        blocks_waiting=waiting,
        stuck_after=rt.settings.stuck_after_blocks,
    )
    if action is WatchAction.SKIP or newest is None:
        return WatchResult(batch_id, SubmitOutcome.SKIPPED)
    if action is WatchAction.MINED:
        return WatchResult(batch_id, SubmitOutcome.MINED)
    if action is WatchAction.WAIT:
        return WatchResult(batch_id, SubmitOutcome.WAITING, newest.tx_hash)
    if action is WatchAction.RESEND:
        result = _send(rt, batch_id, newest, actor=actor, outcome=SubmitOutcome.REBROADCAST)
        if result.outcome is not SubmitOutcome.UNDERPRICED:
            return WatchResult(batch_id, result.outcome, newest.tx_hash, result)
    return _replace(rt, batch_id, newest, actor=actor)


def _replace(rt: Runtime, batch_id: int, newest: models.TxAttempt, *, actor: str) -> WatchResult:
    """Sign, store and send a replacement of ``newest`` with bumped fees, or tell an operator
    (once per attempt) that the fee cap leaves no room for one."""
    settings = rt.settings
    head = rt.chain.block("latest")
    assert head is not None
    fees = bumped(
        Fees(int(newest.max_fee_per_gas), int(newest.max_priority_fee_per_gas)),
        base_fee=head.base_fee_per_gas,
        priority_fee=settings.priority_fee_per_gas,
        bump_bps=settings.fee_bump_bps,
        max_fee_cap=settings.max_fee_per_gas,
    )
    with rt.uow() as session:
        if fees is None:
            exception_queue.record_exception(
                session,
                exception_queue.FEE_CAP_REACHED,
                f"{batch_id}:{newest.tx_hash}",
                {
                    "max_fee_per_gas": str(newest.max_fee_per_gas),
                    "cap": str(settings.max_fee_per_gas),
                    "base_fee": str(head.base_fee_per_gas),
                    "sent_block": newest.sent_block,
                    "head": head.number,
                },
                batch_id=batch_id,
                tx_hash=newest.tx_hash,
            )
            session.commit()
            return WatchResult(batch_id, SubmitOutcome.FEE_CAP, newest.tx_hash)
        token = _token_of(session, batch_id)
        assert token is not None  # a batch with an attempt pays a token
        replacement = lane.sign_replacement(
            session,
            rt.signer,
            batch_id=batch_id,
            batcher_address=rt.batcher,
            token_address=token,
            fees=fees,
        )
        session.commit()
        session.refresh(replacement)
        session.expunge(replacement)
    result = _send(rt, batch_id, replacement, actor=actor, outcome=SubmitOutcome.REPLACED)
    return WatchResult(batch_id, result.outcome, replacement.tx_hash, result)


def _token_of(session: Session, batch_id: int) -> str | None:
    address = session.execute(
        text("SELECT a.address FROM batches b JOIN assets a ON a.id = b.asset_id WHERE b.id = :b"),
        {"b": batch_id},
    ).scalar_one()
    return None if address is None else str(address)


def _state_of(session: Session, batch_id: int) -> str | None:
    state = session.execute(
        text("SELECT state FROM batches WHERE id = :b"), {"b": batch_id}
    ).scalar()
    return None if state is None else str(state)


@dataclass(frozen=True)
class Watchlist:
    due: list[tuple[int, int]]  # sealed batches whose submission is due again: (id, tier)
    unmined: list[int]  # broadcast batches to look after


def watchlist(rt: Runtime, *, grace_seconds: float | None = None) -> Watchlist:
    """Sealed batches whose submit task got lost (a dead worker, a lost retry) and broadcast
    ones still unmined. Parked batches wait for an operator; a batch in a retry tier waits
    for its tier (plus ``grace_seconds``, so a timely retry is not doubled)."""
    grace = rt.settings.resubmit_grace_seconds if grace_seconds is None else grace_seconds
    with rt.uow() as session:
        due = session.execute(
            text(
                f"""
                SELECT id, submit_tier FROM batches
                 WHERE state = {BatchState.SEALED.sql} AND parked_at IS NULL
                   AND coalesce(retry_at, created_at) < now() - make_interval(secs => :grace)
                 ORDER BY id
                """
            ),
            {"grace": grace},
        ).all()
        unmined = session.execute(
            text(f"SELECT id FROM batches WHERE state = {BatchState.BROADCAST.sql} ORDER BY id")
        ).scalars()
        return Watchlist([(r.id, r.submit_tier) for r in due], list(unmined))


@dataclass(frozen=True)
class Retry:
    tier: int
    queue: str
    delay: float


def submission_failed(
    rt: Runtime, batch_id: int, *, tier: int, error: Exception, actor: str = "worker"
) -> Retry | None:
    """Record a failed try of tier ``tier`` and say when and where to try next; None when the
    tiers are exhausted (the batch is parked and an operator has an exception with the
    evidence) or when another delivery of the same try already moved the batch on."""
    tiers = tiers_for(rt.settings)
    following = tier + 1
    delay = tiers.delay(following) if following <= tiers.last else None
    message = f"{type(error).__name__}: {error}"
    with rt.uow() as session:
        sealed_at = retries.next_tier(
            session, batch_id, tier=tier, error=message, delay=delay or 0, park=delay is None
        )
        if sealed_at is not None and delay is None:
            attempts = lane.live_attempts(session, batch_id)
            exception_queue.record_exception(
                session,
                exception_queue.SUBMISSION_EXHAUSTED,
                f"{batch_id}:{following}:{datetime.now(UTC).isoformat()}",
                {
                    "tries": following,
                    "tiers_seconds": list(tiers.delays),
                    "last_error": message,
                    "sealed_at": sealed_at,
                    "attempts": [{"tx": a.tx_hash, "nonce": a.nonce} for a in attempts],
                },
                batch_id=batch_id,
            )
        session.commit()
    if sealed_at is None or delay is None:
        return None
    return Retry(following, tiers.queue(following), delay)


@dataclass(frozen=True)
class Replay:
    exception: dict[str, object]
    result: SubmitResult


def replay(rt: Runtime, exception_id: int, *, actor: str) -> Replay:
    """An operator sends a parked batch again, now. On success its exception is resolved; on
    failure the batch is parked again (with the new error) and the error is raised."""
    with rt.uow() as session:
        found = exception_queue.get_exception(session, exception_id)
        if found["kind"] != exception_queue.SUBMISSION_EXHAUSTED or found["status"] != "open":
            raise InvalidInput(
                f"exception {exception_id} is {found['status']} {found['kind']}: only an open"
                " submission_exhausted exception can be replayed",
                field="exception_id",
                code="not_replayable",
            )
        batch_id = int(str(found["batch_id"]))
        retries.unpark(session, batch_id)
        session.commit()
    try:
        result = submit(rt, batch_id, actor=actor)
    except ChainError as exc:
        with rt.uow() as session:
            retries.park(session, batch_id, f"replay: {type(exc).__name__}: {exc}")
            session.commit()
        raise
    with rt.uow() as session:
        closed = exception_queue.resolve_exception(
            session,
            exception_id,
            f"replayed by {actor}: {result.describe()} {result.tx_hash or ''}".strip(),
            actor=actor,
        )
        session.commit()
    return Replay(closed, result)
