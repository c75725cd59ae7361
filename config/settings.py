"""Validated settings from the environment (prefix ``PAYOUTS_``).

Every value that changes between a developer's laptop, CI and production lives here and
nowhere else. Amounts are integers in an asset's base units; gas and fees are integers in wei.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

REPO_ROOT = Path(__file__).resolve().parents[1]


class FinalityTier(BaseModel):
    """Payouts of at least ``at_least`` base units are final only ``depth`` blocks deep."""

    at_least: int = Field(ge=1)
    depth: int = Field(ge=1)


class VelocityLimits(BaseModel):
    """What one creator (or one marketplace) may be paid per hour and per day, in base units
    and in payouts; unset, no limit. A payout past a limit is held for an operator's review."""

    per_hour_amount: int | None = Field(default=None, ge=0)
    per_day_amount: int | None = Field(default=None, ge=0)
    per_hour_count: int | None = Field(default=None, ge=0)
    per_day_count: int | None = Field(default=None, ge=0)


class AssetConfig(BaseModel):
    """One payable asset on the configured chain; ``address`` None means native currency."""

    symbol: str
    decimals: int = Field(ge=0, le=36)
    address: str | None = None
    # Smallest balance worth a payout, in base units; below it the balance waits.
    min_payout: int = Field(default=1, ge=1)
    # Payouts are whole multiples of this; the remainder is carried as dust.
    rounding_unit: int = Field(default=1, ge=1)
    # Larger payouts wait deeper before the ledger calls them paid (business finality).
    finality_tiers: list[FinalityTier] = Field(default_factory=list)
    # What 10**18 wei of gas is worth in this asset's base units; unset, gas is not weighed
    # against a payout's value (see max_gas_share_bps).
    units_per_native: int | None = Field(default=None, ge=1)
    # Below this wallet balance (base units) an operator is alerted.
    low_balance_alert: int = Field(default=0, ge=0)
    # Velocity limits per creator and per marketplace, and the asset's outflow ceilings (base
    # units per hour and per day); what would pass one is held for review, never dropped.
    creator_limits: VelocityLimits = Field(default_factory=VelocityLimits)
    marketplace_limits: VelocityLimits = Field(default_factory=VelocityLimits)
    outflow_per_hour: int | None = Field(default=None, ge=0)
    outflow_per_day: int | None = Field(default=None, ge=0)
    # The token's own deny check, read for every recipient before sealing: a view function
    # ``f(address) returns (bool)`` such as "isBlacklisted(address)"; unset, not read.
    deny_check: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*\(address\)$")
    # The largest single earning accepted, in base units; unset, a million whole units
    # (10**(6 + decimals)), never more than the batcher can pack into one transfer.
    max_earning: int = Field(
        default_factory=lambda data: AssetConfig.default_max_earning(data.get("decimals", 0)),
        ge=1,
        le=2**96 - 1,
    )

    # payouts.money.MAX_PACKED_AMOUNT: the batcher packs an amount into 96 bits.
    MAX_PACKED: ClassVar[int] = 2**96 - 1

    @staticmethod
    def default_max_earning(decimals: int) -> int:
        """A million whole units of an asset with ``decimals``, capped at what packs."""
        return int(min(10 ** (6 + decimals), AssetConfig.MAX_PACKED))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOUTS_", extra="ignore")

    # Where unset, the embedded default starts a real server under state_dir.
    database_url: str | None = None
    # The tables' owner, for `payouts db upgrade` only; unset, the app's own URL. The app
    # connects with database_url, as a role that may not rewrite the ledger (migration 0012).
    migration_database_url: str | None = None
    redis_url: str | None = None
    state_dir: Path = REPO_ROOT / ".state"
    # The module that starts real local servers where no URL is set (dev tooling, loaded by
    # name); empty in production, where a missing URL is then a configuration error.
    embedded_servers: str | None = "devstack.embedded"

    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = 31337
    signer_key: SecretStr | None = None
    batcher_address: str | None = None
    assets: list[AssetConfig] = Field(default_factory=list)
    # The PayoutClaims escrow; unset, nothing is claimable (every payout goes by push).
    claims_address: str | None = None
    # The hot wallet tops the escrow up to what is claimable plus this share (basis points),
    # so a claim never waits for a top-up; it tops up only when short.
    claims_topup_headroom_bps: int = Field(default=2_000, ge=0)
    # Claimable cents unclaimed this long are swept: the platform submits the vouchers itself.
    claims_sweep_after_seconds: int = Field(default=30 * 86_400, ge=0)
    # Signs claim vouchers; unset, the hot wallet's key does (dev). Rotating it on the escrow
    # stops old vouchers, and the ledger issues fresh ones for the same cumulative.
    claims_signer_key: SecretStr | None = None
    # A creator on auto is pushed only a payout worth this many times the gas its place in a
    # batch costs at today's fee (priced by the asset's units_per_native); smaller ones
    # become claimable. That gas: a recipient not yet holding the token needs a fresh slot.
    claim_push_multiple: int = Field(default=20, ge=1)
    claim_gas_fresh_holder: int = Field(default=26_300, ge=0)
    claim_gas_existing_holder: int = Field(default=9_200, ge=0)

    # Ops endpoints of the HTTP API accept only this key; unset, they are closed.
    admin_api_key: SecretStr | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # A changed payout address holds the creator's next payout this long (account takeover).
    payout_address_cool_down_seconds: int = Field(default=86_400, ge=0)

    # /metrics of the API is open unless this is set: then it needs "Bearer <token>".
    metrics_token: SecretStr | None = None
    # The worker serves its metrics (every pool process merged) on this port; 0: not at all.
    metrics_port: int = Field(default=9108, ge=0, le=65535)

    sentry_dsn: SecretStr | None = None
    log_level: str = "INFO"

    rollup_window_seconds: int = Field(default=3600, ge=1)
    settle_interval_seconds: float = Field(default=60.0, gt=0)
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)
    # How often unmined batches are checked for drops and stuck fees, and lost tasks resent.
    watch_interval_seconds: float = Field(default=10.0, gt=0)

    max_gas_per_tx: int = Field(default=16_777_216, ge=21_000)  # EIP-7825 cap
    max_batch_size: int = Field(default=500, ge=1)
    max_fee_per_gas: int = Field(default=200 * 10**9, ge=1)
    priority_fee_per_gas: int = Field(default=1 * 10**9, ge=0)
    gas_limit_headroom_percent: int = Field(default=20, ge=0, le=100)

    # Above this fee per gas (base fee + tip) settlement waits for cheaper blocks, unless a
    # payout is overdue; above max_fee_per_gas nothing is sent at all.
    defer_fee_per_gas: int | None = Field(default=None, ge=1)
    payout_overdue_seconds: int = Field(default=86_400, ge=0)
    # A payout whose share of the batch's gas would exceed this fraction of its value (basis
    # points) waits for a cheaper window; needs the asset's units_per_native.
    max_gas_share_bps: int = Field(default=500, ge=1, le=10_000)
    low_gas_balance_wei: int = Field(default=5 * 10**16, ge=0)
    # The hot wallet's runway (metrics, ops page) is its balance at the burn rate of the
    # batches sealed in this many hours.
    runway_window_hours: int = Field(default=24, ge=1)

    # A transaction unmined this many blocks after it was sent is replaced with fees raised by
    # fee_bump_bps (nodes refuse replacements under +10%), never above max_fee_per_gas.
    stuck_after_blocks: int = Field(default=3, ge=1)
    fee_bump_bps: int = Field(default=1_250, ge=1_000)
    # A failed submission waits in these tiers (seconds, each +- jitter), then goes to an operator.
    submit_retry_delays_seconds: list[int] = Field(
        default_factory=lambda: [15, 60, 300, 1800, 7200], min_length=1
    )
    submit_retry_jitter_percent: int = Field(default=20, ge=0, le=100)
    # A sealed batch nobody has tried to send for this long is picked up again (a lost task).
    resubmit_grace_seconds: float = Field(default=30.0, ge=0)
    # A task that fails for a recoverable reason (database, broker or node unavailable) is
    # retried up to task_max_retries times, after a random wait of up to
    # min(max, backoff * 2**retries) seconds.
    task_max_retries: int = Field(default=8, ge=0)
    task_retry_backoff_seconds: float = Field(default=15.0, gt=0)
    task_retry_backoff_max_seconds: float = Field(default=600.0, gt=0)
    # After this many node failures in a row, calls stop for breaker_reset_seconds.
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)

    # Webhooks (payouts.notify). A failed delivery is tried again after these delays (the
    # Standard Webhooks schedule after the first try, each +- jitter), then every last delay
    # until the endpoint has failed for webhook_disable_after_seconds: then it is disabled and
    # an operator hears of it. A receiver's Retry-After is honoured up to its cap.
    webhook_retry_delays_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18e3, 36e3, 50.4e3, 72e3, 86.4e3],
        min_length=1,
    )
    webhook_retry_jitter_percent: int = Field(default=20, ge=0, le=100)
    webhook_retry_after_max_seconds: float = Field(default=86_400, ge=0)
    webhook_disable_after_seconds: float = Field(default=5 * 86_400, gt=0)
    # Connect and read timeouts of one delivery request; redirects are never followed.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Loopback, private, link-local, multicast and reserved addresses are refused (at
    # registration and at every delivery, after resolving the name) unless this allows them.
    webhook_allow_private_addresses: bool = False
    # Endpoints must be https unless this allows plain http.
    webhook_allow_http: bool = False
    # After a rotation the old secret still signs (beside the new one) this long.
    webhook_secret_overlap_seconds: float = Field(default=86_400, ge=0)
    # How often beat looks for endpoints with events due; how many events one delivery task
    # sends at most; how long an endpoint handed to a task is not handed out again.
    webhook_dispatch_interval_seconds: float = Field(default=1.0, gt=0)
    webhook_delivery_budget: int = Field(default=20, ge=1)
    webhook_dispatch_lease_seconds: float = Field(default=60.0, gt=0)

    confirmation_depth: int = Field(default=2, ge=1)
    finality_depth: int = Field(default=5, ge=1)
    log_chunk_blocks: int = Field(default=2000, ge=1)
    # Finalized batches this close to the head are still checked: a reorg past finality is an
    # incident an operator must hear about.
    reorg_watch_blocks: int = Field(default=64, ge=0)

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        """Refused here, as configuration, rather than as a driver error at the first query."""
        if value is None:
            return None
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError(
                "must be a PostgreSQL URL with the psycopg driver,"
                " postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            )
        return value

    @field_validator("finality_depth")
    @classmethod
    def _finality_not_shallower(cls, value: int, info: object) -> int:
        confirmation = getattr(info, "data", {}).get("confirmation_depth", 1)
        if value < confirmation:
            raise ValueError("finality_depth must be >= confirmation_depth")
        return value

    @field_validator("assets")
    @classmethod
    def _assets_distinct(cls, value: list[AssetConfig]) -> list[AssetConfig]:
        """One symbol, one asset; one contract, one symbol (the ledger books by symbol, the
        chain pays by address: two names for one token would split its balance)."""
        symbols = [a.symbol for a in value]
        twice = sorted({s for s in symbols if symbols.count(s) > 1})
        if twice:
            raise ValueError(f"asset symbol configured twice: {', '.join(twice)}")
        seen: dict[str, str] = {}
        for asset in value:
            key = (asset.address or "native").lower()
            if key in seen:
                raise ValueError(
                    f"assets {seen[key]} and {asset.symbol} name the same"
                    f" {'native currency' if asset.address is None else 'address ' + asset.address}"
                )
            seen[key] = asset.symbol
        return value

    @field_validator("submit_retry_delays_seconds", "webhook_retry_delays_seconds")
    @classmethod
    def _delays_positive(cls, value: list[float]) -> list[float]:
        if any(d <= 0 for d in value):
            raise ValueError("retry delays must be positive seconds")
        return value

    def asset(self, symbol: str) -> AssetConfig:
        for asset in self.assets:
            if asset.symbol == symbol:
                return asset
        raise KeyError(symbol)


@cache
def get_settings() -> Settings:
    return Settings()


class _MappingEnvSource(EnvSettingsSource):
    """The environment source of pydantic-settings over a given mapping: the same names, the
    same JSON decoding of lists and nested models, as ``Settings()`` reads ``os.environ``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def settings_from_environ(environ: Mapping[str, str]) -> Settings:
    """The settings a process whose environment is ``environ`` reads (a child process's)."""
    return Settings.model_validate(_MappingEnvSource(environ)())
