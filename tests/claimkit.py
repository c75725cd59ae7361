"""Making payouts claimable in tests the way settlement does, without a node to ask."""

from __future__ import annotations

from payouts.runtime import Runtime
from payouts.settlement.claiming import Claiming, make_claimable
from payouts.settlement.handlers import voucher_issuer
from payouts.settlement.policy import claim_policy_for


def claim_pending(rt: Runtime) -> int:
    """Settlement's claim step over every pending USDC payout (its creators on claim; on
    auto with no price for gas nothing is claimable, so the node is never asked); returns
    how many payouts became claimable."""
    issuer = voucher_issuer(rt)
    token = rt.settings.assets[0].address
    assert issuer is not None
    assert token is not None
    with rt.uow() as session:
        made = make_claimable(
            session,
            rt.chain,
            token=token,
            asset_id=rt.asset_ids()["USDC"],
            claiming=Claiming(claim_policy_for(rt.settings, "USDC"), issuer),
            fee_per_gas=10**9,
            actor="test",
        )
        session.commit()
    return made.payouts
