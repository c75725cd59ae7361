"""What a service needs from the outside world, built once from settings at an entry point.

The CLI, the Celery worker and the tests each build one ``Runtime`` and pass it inward, so
no service reads the environment itself.
"""

from __future__ import annotations

from functools import cached_property

from eth_utils.address import to_checksum_address
from sqlalchemy.orm import Session

from config.settings import Settings
from payouts.batching import BatchPolicy
from payouts.catalog import NATIVE_SYMBOL, ensure_assets
from payouts.chain.breaker import CircuitBreaker, MemoryStore, RedisStore, Store
from payouts.chain.client import ChainClient
from payouts.chain.signer import LocalKeySigner, signer_from_settings
from payouts.db import unit_of_work
from payouts.errors import InvalidInput
from payouts.money import Asset
from payouts.retry_tiers import RetryTiers
from payouts.rollup import PayoutRule


class Runtime:
    def __init__(self, settings: Settings, database_url: str | None = None) -> None:
        self.settings = settings
        self._database_url = database_url
        self._asset_ids: dict[str, int] | None = None

    @cached_property
    def database_url(self) -> str:
        if self._database_url:
            return self._database_url
        from payouts import devstack  # only when no server is configured

        return devstack.postgres_url(self.settings)

    @cached_property
    def broker_url(self) -> str:
        if self.settings.redis_url:
            return self.settings.redis_url
        from payouts import devstack  # only when no server is configured

        return devstack.redis_url(self.settings)

    @cached_property
    def chain(self) -> ChainClient:
        settings = self.settings
        # Shared through Redis where there is one, so every worker process sees one circuit.
        store: Store = RedisStore(settings.redis_url) if settings.redis_url else MemoryStore()
        breaker = CircuitBreaker(
            f"rpc:{settings.chain_id}:{settings.rpc_url}",
            store,
            threshold=settings.breaker_failure_threshold,
            reset_after=settings.breaker_reset_seconds,
        )
        return ChainClient(settings.rpc_url, breaker=breaker)

    @cached_property
    def signer(self) -> LocalKeySigner:
        return signer_from_settings(self.settings.signer_key)

    @cached_property
    def batcher(self) -> str:
        if not self.settings.batcher_address:
            raise InvalidInput("PAYOUTS_BATCHER_ADDRESS is not set", field="batcher_address")
        return to_checksum_address(self.settings.batcher_address)

    def assets(self) -> list[Asset]:
        configured = [
            Asset(
                a.symbol,
                a.decimals,
                self.settings.chain_id,
                to_checksum_address(a.address) if a.address else None,
            )
            for a in self.settings.assets
        ]
        if not any(a.is_native for a in configured):
            configured.append(Asset(NATIVE_SYMBOL, 18, self.settings.chain_id, None))
        return configured

    def sync_assets(self, session: Session) -> dict[str, int]:
        return ensure_assets(session, self.assets())

    def asset_ids(self) -> dict[str, int]:
        """Asset ids by symbol, synced once per runtime in a unit of work of its own (so a
        caller's rollback can never leave the cache pointing at rows that did not land)."""
        if self._asset_ids is None:
            with unit_of_work(self.database_url) as session:
                ids = self.sync_assets(session)
                session.commit()
            self._asset_ids = ids
        return self._asset_ids

    def payout_rules(self) -> dict[int, PayoutRule]:
        ids = self.asset_ids()
        return {
            ids[a.symbol]: PayoutRule(a.min_payout, a.rounding_unit) for a in self.settings.assets
        }

    def retry_tiers(self) -> RetryTiers:
        return RetryTiers(
            self.settings.submit_retry_delays_seconds, self.settings.submit_retry_jitter_percent
        )

    def batch_policy(self, symbol: str | None = None) -> BatchPolicy:
        settings = self.settings
        asset = settings.asset(symbol) if symbol else None
        return BatchPolicy(
            gas_cap=settings.max_gas_per_tx,
            max_size=settings.max_batch_size,
            headroom_percent=settings.gas_limit_headroom_percent,
            max_fee_per_gas=settings.max_fee_per_gas,
            priority_fee=settings.priority_fee_per_gas,
            defer_fee_per_gas=settings.defer_fee_per_gas,
            units_per_native=asset.units_per_native if asset else None,
            max_gas_share_bps=settings.max_gas_share_bps,
        )
