"""Two configured assets that are one on chain are refused when the settings load, with a
line that says which, not later as a server error when the catalog is written."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import AssetConfig, Settings

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def settings(*assets: AssetConfig) -> Settings:
    return Settings(assets=list(assets))


def test_two_symbols_for_one_token_address_are_refused() -> None:
    with pytest.raises(ValidationError, match="assets USDC and USDC2 name the same address"):
        settings(
            AssetConfig(symbol="USDC", decimals=6, address=TOKEN),
            AssetConfig(symbol="USDC2", decimals=6, address=TOKEN.lower()),
        )


def test_one_symbol_configured_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="asset symbol configured twice: USDC"):
        settings(
            AssetConfig(symbol="USDC", decimals=6, address=TOKEN),
            AssetConfig(symbol="USDC", decimals=6, address=None),
        )


def test_two_native_assets_are_refused() -> None:
    with pytest.raises(ValidationError, match="name the same native currency"):
        settings(AssetConfig(symbol="ETH", decimals=18), AssetConfig(symbol="GAS", decimals=18))


def test_distinct_assets_load() -> None:
    loaded = settings(
        AssetConfig(symbol="USDC", decimals=6, address=TOKEN),
        AssetConfig(symbol="ETH", decimals=18),
    )
    assert [a.symbol for a in loaded.assets] == ["USDC", "ETH"]
