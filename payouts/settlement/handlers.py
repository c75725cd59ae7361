"""The settlement handler: seal pending payouts into batches the hot wallet can pay."""

from __future__ import annotations

from datetime import timedelta

from payouts.runtime import Runtime
from payouts.settlement.finality import finality_for
from payouts.settlement.policy import policy_for
from payouts.settlement.sealing import BalanceAlerts, SettlementPlan, seal_batches


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
            )
            if not dry_run:
                session.commit()
    return plans
