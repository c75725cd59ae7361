"""Service functions: open a unit of work, call the domain, commit.

The CLI, the Celery tasks and (later) the HTTP API call these and nothing deeper, so an
operator's manual run and beat's scheduled run go through exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from payouts import catalog, models, views
from payouts import reconcile as recon
from payouts.catalog import ensure_marketplace
from payouts.chain import submitter
from payouts.db import unit_of_work
from payouts.errors import IdempotencyConflict, IdempotencyInFlight, NotFound
from payouts.ledger.earnings import Earning, Recorded, record_earnings
from payouts.money import Asset
from payouts.rollup import RollupResult, roll_up, window_for
from payouts.runtime import Runtime
from payouts.settlement import SettlementPlan, seal_batches


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
    for asset in _token_assets(rt):
        with unit_of_work(rt.database_url) as session:
            asset_id = rt.asset_ids()[asset.symbol]
            plans[asset.symbol] = seal_batches(
                session,
                rt.chain,
                asset=asset,
                asset_id=asset_id,
                wallet=rt.signer.address,
                batcher_address=rt.batcher,
                policy=rt.batch_policy(),
                actor=actor,
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
        token = session.execute(
            text(
                "SELECT a.address FROM batches b JOIN assets a ON a.id = b.asset_id WHERE b.id = :b"
            ),
            {"b": batch_id},
        ).scalar()
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
    sent = submitter.broadcast(rt.chain, attempt)
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
            recon.record_exception(
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
        submitter.mark_broadcast(session, batch_id, attempt.id, actor=actor)
        session.commit()
    return submitter.SubmitResult(
        batch_id, attempt.tx_hash, attempt.nonce, "broadcast" if sent == "sent" else "rebroadcast"
    )


def unsent_batches(rt: Runtime) -> list[int]:
    """Sealed batches not yet out, and broadcast ones still unmined (resend is harmless)."""
    with unit_of_work(rt.database_url) as session:
        return list(
            session.execute(
                text("SELECT id FROM batches WHERE state IN ('sealed', 'broadcast') ORDER BY id")
            ).scalars()
        )


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
            actor=actor,
        )
        session.commit()
    return ReconcileOutcome(scanned, advanced)
