"""The settlement handler: seal pending payouts into batches the hot wallet can pay."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts import holds
from payouts.errors import IllegalTransition, InvalidInput, NotFound
from payouts.holds import NewHold
from payouts.runtime import Runtime
from payouts.settlement import screening
from payouts.settlement.claiming import Claiming, VoucherIssuer
from payouts.settlement.finality import finality_for
from payouts.settlement.policy import claim_policy_for, policy_for
from payouts.settlement.risk import limits_for
from payouts.settlement.sealing import BalanceAlerts, SettlementPlan, seal_batches
from payouts.states import HoldState, PayoutState


def settle(rt: Runtime, *, dry_run: bool = False, actor: str = "beat") -> dict[str, SettlementPlan]:
    """Seal pending payouts into batches (per asset); with ``dry_run`` nothing is kept."""
    plans = {}
    settings = rt.settings
    asset_ids = rt.asset_ids()
    for asset in rt.token_assets():
        config = settings.asset(asset.symbol)
        with rt.uow() as session:
            plans[asset.symbol] = seal_batches(
                session,
                rt.chain,
                asset=asset,
                asset_id=asset_ids[asset.symbol],
                wallet=rt.signer.address,
                batcher_address=rt.batcher,
                policy=policy_for(settings, asset.symbol),
                actor=actor,
                overdue_after=timedelta(seconds=settings.payout_overdue_seconds),
                alerts=BalanceAlerts(config.low_balance_alert, settings.low_gas_balance_wei),
                finality=finality_for(settings, asset.symbol),
                limits=limits_for(settings, asset.symbol),
                deny_check=config.deny_check,
                claiming=_claiming(rt, asset.symbol),
            )
            if not dry_run:
                session.commit()
    return plans


def voucher_issuer(rt: Runtime) -> VoucherIssuer | None:
    """The claim signer for the configured escrow; None without one: nothing is claimable."""
    escrow = rt.settings.claims_address
    if escrow is None:
        return None
    return VoucherIssuer(rt.claim_signer, rt.settings.chain_id, to_checksum_address(escrow))


def _claiming(rt: Runtime, symbol: str) -> Claiming | None:
    """Settling by claim needs an escrow; without one every payout is pushed."""
    issuer = voucher_issuer(rt)
    return None if issuer is None else Claiming(claim_policy_for(rt.settings, symbol), issuer)


# Holds, the review queue and the deny list ----------------------------------------------


@dataclass(frozen=True)
class HoldTarget:
    """What to hold: a payout (by id) or a creator (by marketplace and external id)."""

    marketplace_id: int | None = None
    creator_external_id: str | None = None
    payout_id: int | None = None


def _resolve_target(session: Session, target: HoldTarget) -> tuple[int, int | None]:
    """(creator id, payout id or None), scoped to the marketplace when one is given."""
    if target.payout_id is not None:
        row = session.execute(
            text(
                "SELECT p.creator_id, p.state FROM payouts p JOIN creators c ON c.id = p.creator_id"
                " WHERE p.id = :p AND (CAST(:m AS bigint) IS NULL OR c.marketplace_id = :m)"
            ),
            {"p": target.payout_id, "m": target.marketplace_id},
        ).one_or_none()
        if row is None:
            raise NotFound(f"payout {target.payout_id}")
        if row.state not in (PayoutState.PENDING, PayoutState.HELD):
            raise IllegalTransition(
                f"payout {target.payout_id} is {row.state}: only a pending payout can be held"
            )
        return int(row.creator_id), target.payout_id
    creator = session.execute(
        text("SELECT id FROM creators WHERE marketplace_id = :m AND external_id = :x"),
        {"m": target.marketplace_id, "x": target.creator_external_id},
    ).scalar()
    if creator is None:
        raise NotFound(f"creator {target.creator_external_id}")
    return int(creator), None


def place_hold(
    rt: Runtime,
    target: HoldTarget,
    reason: str,
    *,
    rule: str,
    actor: str,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    """Hold a payout or a creator, with the reason, who placed it and an optional expiry."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("say why the hold is placed", field="reason", code="invalid_reason")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidInput("expires_at is in the past", field="expires_at", code="invalid_expiry")
    with rt.uow() as session:
        creator_id, payout_id = _resolve_target(session, target)
        [hold_id] = holds.place(
            session,
            [NewHold(creator_id, rule, reason, payout_id=payout_id, expires_at=expires_at)],
            actor=actor,
        )
        placed = holds.get(session, hold_id)
        session.commit()
    return placed


def release_hold(
    rt: Runtime,
    hold_id: int,
    resolution: str,
    *,
    actor: str,
    marketplace_id: int | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """End a hold (a marketplace only its own holds on its own creators); the payout or the
    creator goes again once no other hold keeps it. ``dry_run`` shows it and keeps nothing."""
    with rt.uow() as session:
        hold = _hold_for(session, hold_id, marketplace_id)
        if hold["status"] != HoldState.ACTIVE:
            raise IllegalTransition(f"hold {hold_id} is already {hold['status']}")
        holds.end(session, [hold_id], actor=actor, resolution=resolution.strip() or "released")
        released = holds.get(session, hold_id)
        if not dry_run:
            session.commit()
    return released


def reject_hold(
    rt: Runtime, hold_id: int, resolution: str, *, actor: str, dry_run: bool = False
) -> dict[str, Any]:
    """Review says no (see ``payouts.holds.reject``); ``dry_run`` shows it, keeps nothing."""
    if not resolution.strip():
        raise InvalidInput("say why it is rejected", field="resolution", code="invalid_reason")
    with rt.uow() as session:
        rejected = holds.reject(session, hold_id, actor=actor, resolution=resolution.strip())
        if not dry_run:
            session.commit()
    return rejected


def _hold_for(session: Session, hold_id: int, marketplace_id: int | None) -> dict[str, Any]:
    hold = holds.get(session, hold_id)
    if marketplace_id is not None and (
        hold["marketplace_id"] != marketplace_id or not hold["rule"].startswith("marketplace")
    ):
        raise NotFound(f"hold {hold_id}")  # another tenant's, or not the marketplace's to end
    return hold


def list_holds(
    rt: Runtime,
    *,
    state: str | None = HoldState.ACTIVE,
    review: bool = False,
    marketplace_id: int | None = None,
    creator_external_id: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    with rt.uow() as session:
        return holds.listing(
            session,
            state=state,
            review=review,
            marketplace_id=marketplace_id,
            creator_external_id=creator_external_id,
            before_id=before_id,
            limit=limit,
        )


def import_deny_list(
    rt: Runtime, lines: Iterable[str], *, source: str, actor: str, listed: bool = True
) -> int:
    """Import a deny list file (``address[,reason]`` per line); returns the addresses whose
    status changed. The rows are the audit trail: who, when, from which file."""
    entries = screening.parse_deny_file(lines)
    with rt.uow() as session:
        changed = screening.import_entries(
            session, entries, listed=listed, source=source, actor=actor
        )
        session.commit()
    return changed


def deny_list(rt: Runtime) -> list[dict[str, str]]:
    with rt.uow() as session:
        return screening.listing(session)
