"""Service functions: open a unit of work, call the domain, commit.

The CLI, the Celery tasks and (later) the HTTP API call these and nothing deeper, so an
operator's manual run and beat's scheduled run go through exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import catalog, exception_queue, models, views
from payouts import reconcile as recon
from payouts.catalog import ensure_marketplace
from payouts.chain import submitter
from payouts.chain.fees import Fees, bumped
from payouts.db import unit_of_work
from payouts.errors import (
    ChainError,
    IdempotencyConflict,
    IdempotencyInFlight,
    InvalidInput,
    NotFound,
)
from payouts.ledger.earnings import Earning, Recorded, record_earnings
from payouts.money import Asset
from payouts.rollup import RollupResult, roll_up, window_for
from payouts.runtime import Runtime
from payouts.settlement import BalanceAlerts, FinalityRule, SettlementPlan, seal_batches


def record(rt: Runtime, marketplace: str, earnings: Sequence[Earning]) -> list[Recorded]:
    rt.asset_ids()
    with unit_of_work(rt.database_url) as session:
        marketplace_id = ensure_marketplace(session, marketplace)
        results = record_earnings(session, marketplace_id, earnings)
        session.commit()
    return results


def record_for(rt: Runtime, marketplace_id: int, earnings: Sequence[Earning]) -> list[Recorded]:
    """Record a marketplace's earnings in one transaction: all of them or, on any error, none."""
    rt.asset_ids()
    with unit_of_work(rt.database_url) as session:
        results = record_earnings(session, marketplace_id, earnings)
        session.commit()
    return results


# What one request of ``record_each`` gets: the body of its first response and whether this
# was a replay, or the error that is its alone.
Outcome = tuple[dict[str, object], bool] | Exception


def record_each(rt: Runtime, requests: Sequence[tuple[int, Earning]]) -> list[Outcome]:
    """Record independent single-earning requests (any marketplaces) in one transaction.

    This is group commit: the API gathers the single earnings that arrive while the previous
    transaction is committing and records them together, so each costs a share of one commit
    instead of a commit of its own. The requests stay independent: a key still in flight or
    reused with another body refuses that request only. Should the transaction fail as a
    whole, each request is retried in a transaction of its own, so one bad request cannot
    fail the others.
    """
    rt.asset_ids()
    try:
        return _record_together(rt, requests)
    except Exception:
        if len(requests) == 1:
            raise
        outcomes: list[Outcome] = []
        for request in requests:
            try:
                outcomes.extend(_record_together(rt, [request]))
            except Exception as exc:  # noqa: BLE001 - it is that request's answer
                outcomes.append(exc)
        return outcomes


def _record_together(rt: Runtime, requests: Sequence[tuple[int, Earning]]) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(requests)
    with unit_of_work(rt.database_url) as session:
        # A transaction-scoped advisory lock per key marks it in flight until this commits;
        # a second request with the same key meanwhile is refused rather than queued. The lock
        # dies with the transaction, so a crashed request never leaves a key stuck.
        refused = session.execute(
            text(
                """
                SELECT i FROM unnest(CAST(:keys AS text[]), CAST(:ms AS bigint[]))
                              WITH ORDINALITY AS t(k, m, i)
                 WHERE NOT pg_try_advisory_xact_lock(hashtextextended(k, m))
                """
            ),
            {
                "keys": [e.idempotency_key for _, e in requests],
                "ms": [m for m, _ in requests],
            },
        ).scalars()
        for i in refused:
            outcomes[i - 1] = IdempotencyInFlight(requests[i - 1][1].idempotency_key)
        by_marketplace: dict[int, list[int]] = {}
        for index, (m, _) in enumerate(requests):
            if outcomes[index] is None:
                by_marketplace.setdefault(m, []).append(index)
        for m, indexes in by_marketplace.items():
            recorded: list[Recorded] = []
            while indexes:
                try:
                    with session.begin_nested():
                        recorded = record_earnings(session, m, [requests[i][1] for i in indexes])
                    break
                except IdempotencyConflict as exc:
                    reused = set(exc.keys)
                    for i in indexes:
                        key = requests[i][1].idempotency_key
                        if key in reused:
                            outcomes[i] = IdempotencyConflict([key])
                    indexes = [i for i in indexes if requests[i][1].idempotency_key not in reused]
            bodies = views.earnings_created(session, m, [r.credit_id for r in recorded])
            for i, r in zip(indexes, recorded, strict=True):
                outcomes[i] = (bodies[r.credit_id], r.replayed)
        session.commit()
    answered = [o for o in outcomes if o is not None]
    if len(answered) != len(requests):  # pragma: no cover - every branch above answers
        raise RuntimeError("a request of the group got no outcome")
    return answered


def authenticate(rt: Runtime, api_key: str) -> int | None:
    """The marketplace an API key belongs to, or None."""
    with unit_of_work(rt.database_url) as session:
        return catalog.marketplace_for_key(session, api_key)


@dataclass(frozen=True)
class AddressChange:
    creator: dict[str, object]
    created: bool  # the creator was unknown before this request
    changed: bool  # the address differs from the one on file


def set_payout_address(
    rt: Runtime, marketplace_id: int, external_id: str, address: str, *, actor: str
) -> AddressChange:
    cool_down = timedelta(seconds=rt.settings.payout_address_cool_down_seconds)
    with unit_of_work(rt.database_url) as session:
        try:
            before = views.creator(session, marketplace_id, external_id)
        except NotFound:
            before = None
        catalog.set_payout_address(
            session, marketplace_id, external_id, address, cool_down=cool_down, actor=actor
        )
        after = views.creator(session, marketplace_id, external_id)
        session.commit()
    return AddressChange(
        after,
        created=before is None,
        changed=before is None or before["payout_address"] != after["payout_address"],
    )


def rollup(
    rt: Runtime,
    *,
    now: datetime | None = None,
    window_start: datetime | None = None,
    actor: str = "beat",
) -> RollupResult:
    seconds = rt.settings.rollup_window_seconds
    if window_start is None:
        window_start, window_end = window_for(now or datetime.now(UTC), seconds)
    else:
        window_end = window_start + timedelta(seconds=seconds)
    rules = rt.payout_rules()
    with unit_of_work(rt.database_url) as session:
        result = roll_up(session, window_start, window_end, rules, actor=actor)
        session.commit()
    return result


def _token_assets(rt: Runtime) -> list[Asset]:
    return [a for a in rt.assets() if not a.is_native]


def settle(rt: Runtime, *, dry_run: bool = False, actor: str = "beat") -> dict[str, SettlementPlan]:
    """Seal pending payouts into batches (per asset); with ``dry_run`` nothing is kept."""
    plans = {}
    settings = rt.settings
    for asset in _token_assets(rt):
        config = settings.asset(asset.symbol)
        with unit_of_work(rt.database_url) as session:
            asset_id = rt.asset_ids()[asset.symbol]
            plans[asset.symbol] = seal_batches(
                session,
                rt.chain,
                asset=asset,
                asset_id=asset_id,
                wallet=rt.signer.address,
                batcher_address=rt.batcher,
                policy=rt.batch_policy(asset.symbol),
                actor=actor,
                overdue_after=timedelta(seconds=settings.payout_overdue_seconds),
                alerts=BalanceAlerts(config.low_balance_alert, settings.low_gas_balance_wei),
                finality=FinalityRule(
                    settings.finality_depth,
                    [(t.at_least, t.depth) for t in config.finality_tiers],
                ),
            )
            if not dry_run:
                session.commit()
    return plans


@dataclass(frozen=True)
class SettlementRun:
    plans: dict[str, SettlementPlan]
    submissions: list[submitter.SubmitResult]


def settlement_run(
    rt: Runtime, *, dry_run: bool = False, submit_now: bool = True, actor: str = "operator"
) -> SettlementRun:
    """An operator's run: seal what is pending and, unless told otherwise, send it at once.

    The CLI and the ops endpoint both call this; beat's run is ``settle`` with the sending
    left to the submit queue.
    """
    plans = settle(rt, dry_run=dry_run, actor=actor)
    sent: list[submitter.SubmitResult] = []
    if not dry_run and submit_now:
        for plan in plans.values():
            sent.extend(submit(rt, b.batch_id, actor=actor) for b in plan.sealed)
    return SettlementRun(plans, sent)


def sign(rt: Runtime, batch_id: int) -> submitter.SubmitResult | models.TxAttempt:
    """Step one of ``submit``: the batch's stored signed transaction (signed now if it has
    none), or why there is nothing to send."""
    with unit_of_work(rt.database_url) as session:
        token = _token_of(session, batch_id)
        if token is None:
            return submitter.SubmitResult(batch_id, None, None, "skipped:no-token")
        attempt = submitter.sign_and_store(
            session,
            rt.chain,
            rt.signer,
            batch_id=batch_id,
            batcher_address=rt.batcher,
            token_address=token,
            policy=rt.batch_policy(),
            max_fee_cap=rt.settings.max_fee_per_gas,
            priority_fee=rt.settings.priority_fee_per_gas,
        )
        if attempt is None:
            state = session.execute(
                text("SELECT state FROM batches WHERE id = :b"), {"b": batch_id}
            ).scalar()
            return submitter.SubmitResult(batch_id, None, None, f"skipped:{state}")
        session.commit()
    return attempt


def submit(rt: Runtime, batch_id: int, *, actor: str = "submitter") -> submitter.SubmitResult:
    """Sign-and-store, broadcast, record: each step safe to repeat after a crash."""
    attempt = sign(rt, batch_id)
    if isinstance(attempt, submitter.SubmitResult):
        return attempt
    result = _send(rt, batch_id, attempt, actor=actor)
    if result.outcome == "underpriced":
        # The base fee rose between signing and sending: the same nonce, fees raised.
        replaced = _replace(rt, batch_id, attempt, actor=actor)
        return replaced.result or submitter.SubmitResult(
            batch_id, attempt.tx_hash, attempt.nonce, replaced.outcome
        )
    return result


def _send(
    rt: Runtime,
    batch_id: int,
    attempt: models.TxAttempt,
    *,
    actor: str,
    outcome: str = "broadcast",
) -> submitter.SubmitResult:
    """Hand a stored attempt to the node and record what happened."""
    with unit_of_work(rt.database_url) as session:
        siblings = [
            a.tx_hash for a in submitter.live_attempts(session, batch_id) if a.id != attempt.id
        ]
    head = rt.chain.block_number()
    sent = submitter.broadcast(rt.chain, attempt, siblings)
    if sent == "underpriced":
        return submitter.SubmitResult(batch_id, attempt.tx_hash, attempt.nonce, sent)
    if sent == "nonce-used":
        # Another transaction from our wallet took this nonce: ours can never be mined. Fail
        # the batch, release its payouts for the next one, and tell an operator (a foreign
        # transaction from the hot wallet is worth a look).
        with unit_of_work(rt.database_url) as session:
            released = submitter.fail_batch(
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
        return submitter.SubmitResult(batch_id, attempt.tx_hash, attempt.nonce, "nonce-consumed")
    with unit_of_work(rt.database_url) as session:
        submitter.record_sent(session, attempt.id, head)
        submitter.mark_broadcast(session, batch_id, attempt.id, actor=actor)
        session.execute(
            text("UPDATE batches SET last_error = NULL, retry_at = NULL WHERE id = :b"),
            {"b": batch_id},
        )
        session.commit()
    return submitter.SubmitResult(
        batch_id, attempt.tx_hash, attempt.nonce, outcome if sent == "sent" else "rebroadcast"
    )


@dataclass(frozen=True)
class WatchResult:
    batch_id: int
    outcome: str  # mined | waiting | rebroadcast | replaced | fee-cap | nonce-consumed | ...
    tx_hash: str | None = None
    result: submitter.SubmitResult | None = None


def watch(rt: Runtime, batch_id: int, *, actor: str = "watcher") -> WatchResult:
    """Look after one batch that is out but not yet mined.

    Dropped from the node's pool: the stored bytes are sent again (same hash, same nonce); if
    the node refuses them because the base fee has risen past their max fee, a replacement
    goes instead. Unmined ``stuck_after_blocks`` after it was sent: a replacement with fees
    raised by ``fee_bump_bps``. The earlier attempts stay live, because whichever is mined
    first is the one the reconciler records.
    """
    with unit_of_work(rt.database_url) as session:
        state = session.execute(
            text("SELECT state FROM batches WHERE id = :b"), {"b": batch_id}
        ).scalar()
        attempts = submitter.live_attempts(session, batch_id)
        session.expunge_all()
    if state != "broadcast" or not attempts:
        return WatchResult(batch_id, f"skipped:{state}")
    if any(rt.chain.receipt(a.tx_hash) is not None for a in attempts):
        return WatchResult(batch_id, "mined")  # the reconciler takes it from here
    newest = attempts[0]
    if rt.chain.transaction(newest.tx_hash) is None:
        result = _send(rt, batch_id, newest, actor=actor, outcome="rebroadcast")
        if result.outcome != "underpriced":
            return WatchResult(batch_id, result.outcome, newest.tx_hash, result)
        return _replace(rt, batch_id, newest, actor=actor)
    head = rt.chain.block_number()
    if newest.sent_block is None or head - newest.sent_block < rt.settings.stuck_after_blocks:
        return WatchResult(batch_id, "waiting", newest.tx_hash)
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
    with unit_of_work(rt.database_url) as session:
        if fees is None:
            exception_queue.record_exception(
                session,
                "fee_cap_reached",
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
            return WatchResult(batch_id, "fee-cap", newest.tx_hash)
        token = _token_of(session, batch_id)
        assert token is not None  # a batch with an attempt pays a token
        replacement = submitter.sign_replacement(
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
    result = _send(rt, batch_id, replacement, actor=actor, outcome="replaced")
    return WatchResult(batch_id, result.outcome, replacement.tx_hash, result)


def _token_of(session: Session, batch_id: int) -> str:
    return str(
        session.execute(
            text(
                "SELECT a.address FROM batches b JOIN assets a ON a.id = b.asset_id WHERE b.id = :b"
            ),
            {"b": batch_id},
        ).scalar_one()
    )


@dataclass(frozen=True)
class Watchlist:
    due: list[tuple[int, int]]  # sealed batches whose submission is due again: (id, tier)
    unmined: list[int]  # broadcast batches to look after


def watchlist(rt: Runtime, *, grace_seconds: float | None = None) -> Watchlist:
    """Sealed batches whose submit task got lost (a dead worker, a lost retry) and broadcast
    ones still unmined. Parked batches wait for an operator; a batch in a retry tier waits
    for its tier (plus ``grace_seconds``, so a timely retry is not doubled)."""
    grace = rt.settings.resubmit_grace_seconds if grace_seconds is None else grace_seconds
    with unit_of_work(rt.database_url) as session:
        due = session.execute(
            text(
                """
                SELECT id, submit_tier FROM batches
                 WHERE state = 'sealed' AND parked_at IS NULL
                   AND coalesce(retry_at, created_at) < now() - make_interval(secs => :grace)
                 ORDER BY id
                """
            ),
            {"grace": grace},
        ).all()
        unmined = session.execute(
            text("SELECT id FROM batches WHERE state = 'broadcast' ORDER BY id")
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
    tiers = rt.retry_tiers()
    following = tier + 1
    delay = tiers.delay(following) if following <= tiers.last else None
    with unit_of_work(rt.database_url) as session:
        moved = session.execute(
            text(
                """
                UPDATE batches SET submit_tier = :next, last_error = :error,
                       retry_at = now() + make_interval(secs => :delay),
                       parked_at = CASE WHEN CAST(:park AS boolean) THEN now() END
                 WHERE id = :b AND submit_tier = :tier AND state = 'sealed'
                   AND parked_at IS NULL
                RETURNING created_at
                """
            ),
            {
                "b": batch_id,
                "tier": tier,
                "next": following,
                "error": f"{type(error).__name__}: {error}"[:2000],
                "delay": delay or 0,
                "park": delay is None,
            },
        ).one_or_none()
        if moved is not None and delay is None:
            attempts = submitter.live_attempts(session, batch_id)
            exception_queue.record_exception(
                session,
                "submission_exhausted",
                f"{batch_id}:{following}:{datetime.now(UTC).isoformat()}",
                {
                    "tries": following,
                    "tiers_seconds": list(tiers.delays),
                    "last_error": f"{type(error).__name__}: {error}",
                    "sealed_at": moved.created_at,
                    "attempts": [{"tx": a.tx_hash, "nonce": a.nonce} for a in attempts],
                },
                batch_id=batch_id,
            )
        session.commit()
    if moved is None or delay is None:
        return None
    return Retry(following, tiers.queue(following), delay)


@dataclass(frozen=True)
class Replay:
    exception: dict[str, object]
    result: submitter.SubmitResult


def replay(rt: Runtime, exception_id: int, *, actor: str) -> Replay:
    """An operator sends a parked batch again, now. On success its exception is resolved; on
    failure the batch is parked again (with the new error) and the error is raised."""
    with unit_of_work(rt.database_url) as session:
        found = exception_queue.get_exception(session, exception_id)
        if found["kind"] != "submission_exhausted" or found["status"] != "open":
            raise InvalidInput(
                f"exception {exception_id} is {found['status']} {found['kind']}: only an open"
                " submission_exhausted exception can be replayed",
                field="exception_id",
                code="not_replayable",
            )
        batch_id = int(str(found["batch_id"]))
        session.execute(
            text(
                "UPDATE batches SET parked_at = NULL, retry_at = NULL, submit_tier = 0"
                " WHERE id = :b AND parked_at IS NOT NULL"
            ),
            {"b": batch_id},
        )
        session.commit()
    try:
        result = submit(rt, batch_id, actor=actor)
    except ChainError as exc:
        with unit_of_work(rt.database_url) as session:
            session.execute(
                text(
                    "UPDATE batches SET parked_at = now(), last_error = :e WHERE id = :b"
                    " AND state = 'sealed'"
                ),
                {"b": batch_id, "e": f"replay: {type(exc).__name__}: {exc}"[:2000]},
            )
            session.commit()
        raise
    with unit_of_work(rt.database_url) as session:
        closed = exception_queue.resolve_exception(
            session,
            exception_id,
            f"replayed by {actor}: {result.outcome} {result.tx_hash or ''}".strip(),
            actor=actor,
        )
        session.commit()
    return Replay(closed, result)


@dataclass(frozen=True)
class ReconcileOutcome:
    scan: recon.ReconcileReport
    advance: recon.ReconcileReport


def reconcile(rt: Runtime, *, actor: str = "reconciler") -> ReconcileOutcome:
    head = rt.chain.block_number()
    rt.asset_ids()
    with unit_of_work(rt.database_url) as session:
        scanned = recon.scan(
            session,
            rt.chain,
            chain_id=rt.settings.chain_id,
            batcher_address=rt.batcher,
            payer=rt.signer.address,
            tokens=[a.address for a in _token_assets(rt) if a.address],
            head=head,
            chunk=rt.settings.log_chunk_blocks,
            actor=actor,
        )
        session.commit()
    with unit_of_work(rt.database_url) as session:
        advanced = recon.advance(
            session,
            rt.chain,
            head=head,
            confirmation_depth=rt.settings.confirmation_depth,
            finality_depth=rt.settings.finality_depth,
            reorg_watch_blocks=rt.settings.reorg_watch_blocks,
            actor=actor,
        )
        session.commit()
    return ReconcileOutcome(scanned, advanced)
