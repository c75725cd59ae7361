"""Validated settings from the environment (prefix ``PAYOUTS_``).

Every value that changes between a developer's laptop, CI and production lives here and
nowhere else. Amounts are integers in an asset's base units; gas and fees are integers in wei.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class AssetConfig(BaseModel):
    """One payable asset on the configured chain; ``address`` None means native currency."""

    symbol: str
    decimals: int = Field(ge=0, le=36)
    address: str | None = None
    # Smallest balance worth a payout, in base units; below it the balance waits.
    min_payout: int = Field(default=1, ge=1)
    # Payouts are whole multiples of this; the remainder is carried as dust.
    rounding_unit: int = Field(default=1, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOUTS_", extra="ignore")

    # Where unset, the embedded default starts a real server under state_dir.
    database_url: str | None = None
    redis_url: str | None = None
    state_dir: Path = REPO_ROOT / ".state"

    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = 31337
    signer_key: SecretStr | None = None
    batcher_address: str | None = None
    assets: list[AssetConfig] = Field(default_factory=list)

    # Ops endpoints of the HTTP API accept only this key; unset, they are closed.
    admin_api_key: SecretStr | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # A changed payout address holds the creator's next payout this long (account takeover).
    payout_address_cool_down_seconds: int = Field(default=86_400, ge=0)

    sentry_dsn: SecretStr | None = None
    log_level: str = "INFO"

    rollup_window_seconds: int = Field(default=3600, ge=1)
    settle_interval_seconds: float = Field(default=60.0, gt=0)
    reconcile_interval_seconds: float = Field(default=5.0, gt=0)

    max_gas_per_tx: int = Field(default=16_777_216, ge=21_000)  # EIP-7825 cap
    max_batch_size: int = Field(default=500, ge=1)
    max_fee_per_gas: int = Field(default=200 * 10**9, ge=1)
    priority_fee_per_gas: int = Field(default=1 * 10**9, ge=0)
    gas_limit_headroom_percent: int = Field(default=20, ge=0, le=100)

    confirmation_depth: int = Field(default=2, ge=1)
    finality_depth: int = Field(default=5, ge=1)
    log_chunk_blocks: int = Field(default=2000, ge=1)

    @field_validator("finality_depth")
    @classmethod
    def _finality_not_shallower(cls, value: int, info: object) -> int:
        confirmation = getattr(info, "data", {}).get("confirmation_depth", 1)
        if value < confirmation:
            raise ValueError("finality_depth must be >= confirmation_depth")
        return value

    def asset(self, symbol: str) -> AssetConfig:
        for asset in self.assets:
            if asset.symbol == symbol:
                return asset
        raise KeyError(symbol)


@cache
def get_settings() -> Settings:
    return Settings()
