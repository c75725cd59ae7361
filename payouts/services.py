"""Service functions: open a unit of work, call the domain, commit.

The CLI, the Celery tasks and (later) the HTTP API call these and nothing deeper, so an
operator's manual run and beat's scheduled run go through exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from payouts import reconcile as recon
from payouts.catalog import ensure_marketplace
from payouts.chain import submitter
from payouts.db import unit_of_work
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


def submit(rt: Runtime, batch_id: int, *, actor: str = "submitter") -> submitter.SubmitResult:
    """Sign-and-store, broadcast, record: each step safe to repeat after a crash."""
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
    sent = submitter.broadcast(rt.chain, attempt)
    if sent == "nonce-used":
        with unit_of_work(rt.database_url) as session:
            recon.record_exception(
                session,
                "nonce_consumed",
                attempt.tx_hash,
                {"nonce": attempt.nonce, "sender": attempt.sender},
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
