"""The escrow's handlers: the reconcile pass over its claims, and sending what the hot wallet
stored for it. Each opens its own unit of work and never holds one across a send."""

from __future__ import annotations

import logging

from eth_utils.address import to_checksum_address

from payouts.catalog import NATIVE_SYMBOL
from payouts.chain.client import RpcError
from payouts.claims import wallet
from payouts.claims.onchain import ClaimsReport, Escrow, reconcile_claims
from payouts.errors import InvalidInput
from payouts.runtime import Runtime
from payouts.settlement.finality import finality_for

log = logging.getLogger(__name__)


def escrow_of(rt: Runtime) -> Escrow | None:
    """The configured escrow and the tokens it may pay; None where no escrow is configured."""
    if not rt.settings.claims_address:
        return None
    ids = rt.asset_ids()
    return Escrow(
        chain_id=rt.settings.chain_id,
        address=to_checksum_address(rt.settings.claims_address),
        assets={str(a.address).lower(): ids[a.symbol] for a in rt.token_assets()},
        native_asset_id=ids.get(NATIVE_SYMBOL),
    )


def escrow_address(rt: Runtime) -> str:
    """The configured escrow's address; refused where none is configured."""
    if not rt.settings.claims_address:
        raise InvalidInput(
            "PAYOUTS_CLAIMS_ADDRESS is not set: nothing is claimable",
            field="claims_address",
            code="no_claims_escrow",
        )
    return to_checksum_address(rt.settings.claims_address)


def wallet_fees(rt: Runtime, *, lane: bool = True) -> wallet.Fees:
    """What the hot wallet's transactions may pay (at the cap on its lane: ``wallet.sign_call``)."""
    s = rt.settings
    return wallet.Fees(
        s.max_fee_per_gas, s.priority_fee_per_gas, s.gas_limit_headroom_percent, at_cap=lane
    )


def reconcile(rt: Runtime, *, head: int, actor: str = "reconciler") -> ClaimsReport | None:
    """Claims and the hot wallet's own transactions up to ``head``, in one unit of work."""
    escrow = escrow_of(rt)
    if escrow is None:
        return None
    symbols = {asset_id: symbol for symbol, asset_id in rt.asset_ids().items()}
    rules = {
        asset_id: finality_for(rt.settings, symbol)
        for asset_id, symbol in symbols.items()
        if any(a.symbol == symbol for a in rt.settings.assets)
    }

    def depth_for(asset_id: int, amount: int) -> int:
        rule = rules.get(asset_id)
        return rule.depth_for(amount) if rule else rt.settings.finality_depth

    send_unmined(rt)
    with rt.uow() as session:
        report = reconcile_claims(
            session,
            rt.chain,
            escrow,
            head=head,
            chunk=rt.settings.log_chunk_blocks,
            depth_for=depth_for,
            watch_blocks=max(rt.settings.reorg_watch_blocks, rt.settings.finality_depth),
            actor=actor,
        )
        session.commit()
    return report


def send_unmined(rt: Runtime) -> int:
    """Send (again) every stored transaction of the hot wallet no block holds yet, in nonce
    order; how many the node took or already had."""
    with rt.uow() as session:
        stored = wallet.unmined(session, rt.settings.chain_id, rt.signer.address)
    sent = []
    for row_id, raw in stored:
        try:
            wallet.send(rt.chain, raw)
        except RpcError as exc:
            # A refusal nobody understands (fees below today's base fee, say) must not stop
            # the claims pass: the transaction stays stored, and the next pass tries again.
            log.warning("wallet transaction %s refused by the node: %s", row_id, exc)
            continue
        sent.append(row_id)
    if sent:
        with rt.uow() as session:
            wallet.mark_sent(session, sent)
            session.commit()
    return len(sent)
