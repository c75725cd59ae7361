"""Handlers for claims: a creator's vouchers, every voucher for an export, and how a creator
settles (push, claim or auto). The API, the CLI and the client call these."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from payouts import lifecycle
from payouts.claims import vouchers
from payouts.claims.vouchers import Token
from payouts.db import models
from payouts.errors import InvalidInput, NotFound
from payouts.runtime import Runtime
from payouts.settlement.claiming import VoucherIssuer
from payouts.settlement.handlers import voucher_issuer
from payouts.settlement.policy import SettleMode


def _issuer(rt: Runtime) -> VoucherIssuer:
    issuer = voucher_issuer(rt)
    if issuer is None:
        raise InvalidInput(
            "PAYOUTS_CLAIMS_ADDRESS is not set: nothing is claimable",
            field="claims_address",
            code="no_claims_escrow",
        )
    return issuer


def _tokens(rt: Runtime) -> dict[int, Token]:
    ids = rt.asset_ids()
    return {
        ids[a.symbol]: Token(ids[a.symbol], a.symbol, a.address)
        for a in rt.token_assets()
        if a.address is not None
    }


def _creator(session: Session, marketplace_id: int, external_id: str) -> models.Creator:
    found = session.scalars(
        select(models.Creator).where(
            models.Creator.marketplace_id == marketplace_id,
            models.Creator.external_id == external_id,
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"creator {external_id}")
    return found


def creator_claim(rt: Runtime, marketplace_id: int, external_id: str) -> dict[str, Any]:
    """The creator's current vouchers (one per address and asset), signed now; none without
    an escrow, where nothing is ever made claimable."""
    issuer, tokens = voucher_issuer(rt), _tokens(rt)
    with rt.uow() as session:
        creator = _creator(session, marketplace_id, external_id)
        mode = creator.settle_mode
        found = [] if issuer is None else vouchers.current(session, issuer, tokens, creator.id)
    # Which other creators share an address is another marketplace's business.
    claims = [{k: v for k, v in c.items() if k != "creators"} for c in found]
    return {"creator_id": external_id, "settle_mode": mode, "claims": claims}


def export(rt: Runtime) -> dict[str, Any]:
    """Every address's current voucher, for an operator to keep where the API is not needed:
    each names the creators (marketplace id : their id) whose payouts it pays."""
    issuer, tokens = _issuer(rt), _tokens(rt)
    with rt.uow() as session:
        found = vouchers.current(session, issuer, tokens)
    return {
        "chain_id": issuer.chain_id,
        "contract": issuer.escrow,
        "signer": issuer.signer.address,
        "vouchers": found,
    }


def set_settle_mode(
    rt: Runtime, marketplace_id: int, external_id: str, mode: str, *, actor: str
) -> dict[str, Any]:
    """How the creator's next payouts settle; what is already claimable stays claimable.
    The change is in the creator's audit trail."""
    try:
        chosen = SettleMode(mode)
    except ValueError:
        raise InvalidInput(
            f"settle_mode must be one of {', '.join(SettleMode)}",
            field="settle_mode",
            code="invalid_settle_mode",
        ) from None
    with rt.uow() as session:
        creator = _creator(session, marketplace_id, external_id)
        before = creator.settle_mode
        if before != chosen:
            creator.settle_mode = str(chosen)
            session.flush()
            lifecycle.record_change(
                session,
                "creator",
                creator.id,
                before=f"mode:{before}",
                after=f"mode:{chosen}",
                cause=f"settle mode {before} -> {chosen}",
                actor=actor,
            )
        session.commit()
    return {"creator_id": external_id, "settle_mode": str(chosen)}
