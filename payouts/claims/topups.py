"""Escrow top-ups from the hot wallet, by policy: the escrow should always hold what is
claimable, so no creator's claim waits on the platform.

What the escrow must cover per asset is every payout now ``claimable`` (claimed ones are paid
already). What it holds is the ledger's escrow account plus the top-ups stored but not yet
mined. When that falls short, the hot wallet sends the escrow what is claimable plus the
configured headroom less what it holds, at most what the wallet has left once its batches
and top-ups not yet on chain are counted out (``sealing.committed_out``): a top-up never takes
the tokens of a batch sealed before it, and whatever it cannot send stays visible as the
escrow's shortfall (a metric and an alert).
Top-ups take the hot wallet's nonce lane (``payouts.claims.wallet``); one at a time, under an
advisory lock, so two workers never both top up for the same shortfall.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi.abi import encode
from sqlalchemy import text
from sqlalchemy.orm import Session

from payouts.chain import codec
from payouts.claims import wallet
from payouts.claims.escrow import escrow_of, send_unmined, wallet_fees
from payouts.runtime import Runtime
from payouts.settlement.sealing import committed_out
from payouts.states import PayoutState

TOPUP_LOCK = 0x746F70757073  # "topups"


def topup_amount(claimable: int, held: int, headroom_bps: int, available: int) -> int:
    """What to send the escrow: nothing while it holds what is claimable; else enough for
    the claimable plus the headroom, never more than the wallet has. Pure."""
    if held >= claimable:
        return 0
    wanted = claimable * (10_000 + headroom_bps) // 10_000 - held
    return max(0, min(wanted, available))


@dataclass(frozen=True)
class Cover:
    """One asset's escrow: what is claimable and what the escrow holds (ledger plus top-ups
    on their way), in base units."""

    asset_id: int
    symbol: str
    token: str
    claimable: int
    held: int

    @property
    def shortfall(self) -> int:
        return max(0, self.claimable - self.held)


def covers(session: Session) -> list[Cover]:
    """Every token asset's escrow cover, in one statement."""
    rows = session.execute(
        text(
            f"""
            SELECT a.id, a.symbol, a.address,
                   (SELECT coalesce(sum(p.amount), 0) FROM payouts p
                     WHERE p.asset_id = a.id AND p.state = {PayoutState.CLAIMABLE.sql}
                   ) AS claimable,
                   (SELECT coalesce(sum(e.amount), 0) FROM accounts x
                      JOIN entries e ON e.account_id = x.id
                     WHERE x.kind = 'claims_escrow' AND x.asset_id = a.id)
                 + (SELECT coalesce(sum(w.amount), 0) FROM wallet_transactions w
                     WHERE w.asset_id = a.id AND w.purpose = 'topup'
                       AND w.block_number IS NULL) AS held
              FROM assets a WHERE a.address IS NOT NULL ORDER BY a.symbol
            """
        )
    )
    return [Cover(int(r.id), r.symbol, r.address, int(r.claimable), int(r.held)) for r in rows]


def _transfer(to: str, amount: int) -> str:
    """``token.transfer(to, amount)``: tokens reach the escrow by plain transfer."""
    return "0x" + (codec.ERC20_TRANSFER + encode(["address", "uint256"], [to, amount])).hex()


@dataclass(frozen=True)
class TopUp:
    symbol: str
    amount: int
    tx_hash: str


def top_up(rt: Runtime, *, actor: str = "claims") -> list[TopUp]:
    """Top the escrow up where it is short, store the transfers on the lane, send them."""
    escrow = escrow_of(rt)
    if escrow is None:
        return []
    done: list[TopUp] = []
    with rt.uow() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TOPUP_LOCK})
        for cover in covers(session):
            if cover.shortfall == 0:
                continue
            balance = int(
                rt.chain.call(cover.token, codec.balance_of_calldata(rt.signer.address)), 16
            )
            available = balance - committed_out(session, cover.asset_id, rt.signer.address)
            amount = topup_amount(
                cover.claimable, cover.held, rt.settings.claims_topup_headroom_bps, available
            )
            if amount == 0:
                continue
            stored = wallet.store(
                session,
                rt.chain,
                rt.signer,
                chain_id=escrow.chain_id,
                purpose="topup",
                to=cover.token,
                data=_transfer(escrow.address, amount),
                asset_id=cover.asset_id,
                amount=amount,
                fees=wallet_fees(rt),
            )
            done.append(TopUp(cover.symbol, amount, stored.tx_hash))
        session.commit()
    if done:
        send_unmined(rt)
    return done
