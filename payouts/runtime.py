"""What a handler needs from the outside world, built once from settings at an entry point.

The CLI, the Celery worker, the API and the tests each build one ``Runtime`` and pass it
inward, so no handler reads the environment itself. The runtime knows infrastructure only
(databases, broker, chain client, signer, configured assets); each stage builds its own policy
from ``rt.settings``.

Where the settings name no database or broker, the backend named by
``PAYOUTS_EMBEDDED_SERVERS`` (a module with ``database_url(settings)`` and
``broker_url(settings)``, ``devstack.embedded`` by default) starts real local servers. It is
loaded by name, so the domain never imports the dev tooling.
"""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import Protocol, cast

from eth_utils.address import to_checksum_address
from sqlalchemy.orm import Session

from config.settings import Settings
from payouts.catalog import NATIVE_SYMBOL, ensure_assets
from payouts.chain.breaker import CircuitBreaker, MemoryStore, RedisStore, Store
from payouts.chain.client import ChainClient
from payouts.chain.signer import LocalKeySigner, signer_from_settings
from payouts.db import UnitOfWork, units_of_work
from payouts.errors import InvalidInput
from payouts.money import Asset


class EmbeddedServers(Protocol):
    def database_url(self, settings: Settings) -> str: ...
    def broker_url(self, settings: Settings) -> str: ...


def embedded_servers(settings: Settings) -> EmbeddedServers:
    """The backend that starts local servers, by the dotted name the settings give."""
    if not settings.embedded_servers:
        raise InvalidInput(
            "PAYOUTS_DATABASE_URL or PAYOUTS_REDIS_URL is not set and no embedded servers"
            " are configured (PAYOUTS_EMBEDDED_SERVERS)",
            field="database_url",
            code="not_configured",
        )
    try:
        return cast(EmbeddedServers, importlib.import_module(settings.embedded_servers))
    except ImportError as exc:
        raise InvalidInput(
            f"PAYOUTS_DATABASE_URL or PAYOUTS_REDIS_URL is not set, and the embedded servers"
            f" backend {settings.embedded_servers!r} is not installed",
            field="embedded_servers",
            code="not_configured",
        ) from exc


class Runtime:
    def __init__(
        self, settings: Settings, database_url: str | None = None, uow: UnitOfWork | None = None
    ) -> None:
        self.settings = settings
        self._database_url = database_url
        self._uow = uow
        self._asset_ids: dict[str, int] | None = None

    @cached_property
    def database_url(self) -> str:
        if self._database_url:
            return self._database_url
        if self.settings.database_url:
            return self.settings.database_url
        return embedded_servers(self.settings).database_url(self.settings)

    @property
    def uow(self) -> UnitOfWork:
        """Opens a unit of work: ``with rt.uow() as session``."""
        if self._uow is None:
            self._uow = units_of_work(self.database_url)
        return self._uow

    @cached_property
    def broker_url(self) -> str:
        if self.settings.redis_url:
            return self.settings.redis_url
        return embedded_servers(self.settings).broker_url(self.settings)

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
    def claim_signer(self) -> LocalKeySigner:
        """Signs claim vouchers: its own key, or the hot wallet's where none is set (dev)."""
        return signer_from_settings(self.settings.claims_signer_key or self.settings.signer_key)

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

    def token_assets(self) -> list[Asset]:
        return [a for a in self.assets() if not a.is_native]

    def sync_assets(self, session: Session) -> dict[str, int]:
        return ensure_assets(session, self.assets())

    def asset_ids(self) -> dict[str, int]:
        """Asset ids by symbol, synced once per runtime in a unit of work of its own (so a
        caller's rollback can never leave the cache pointing at rows that did not land)."""
        if self._asset_ids is None:
            with self.uow() as session:
                ids = self.sync_assets(session)
                session.commit()
            self._asset_ids = ids
        return self._asset_ids
