"""Rules on input that need no database: payout addresses and each asset's earning ceiling."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import AssetConfig
from payouts.catalog import checked_address
from payouts.errors import InvalidInput
from payouts.money import MAX_PACKED_AMOUNT

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.mark.parametrize(
    "address",
    [
        "0x0000000000000000000000000000000000000000",
        "0x0000000000000000000000000000000000000001",
        "0x0000000000000000000000000000000000000009",
        "0x000000000000000000000000000000000000000a",
        "0x0000000000000000000000000000000000000100",
        "0x000000000000000000000000000000000000fffe",
        "0x000000000000000000000000000000000000ffff",
        "0x000000000000000000000000000000000000FFFF",
    ],
)
def test_the_zero_address_and_precompiles_are_not_payout_addresses(address: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        checked_address(address, field="earnings[1].payout_address")
    assert raised.value.code == "invalid_address"
    assert raised.value.field == "earnings[1].payout_address"


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        (
            "0x0000000000000000000000000000000000010000",
            "0x0000000000000000000000000000000000010000",
        ),
        (
            "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        ),
        (
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        ),
    ],
)
def test_any_other_address_is_accepted_and_checksummed(address: str, stored: str) -> None:
    assert checked_address(address) == stored


@pytest.mark.parametrize(
    "address",
    ["0x1234", "70997970c51812dc3a010c7d01b50e0d17dc79c8", "0x" + "g" * 40, 42, None],
)
def test_anything_that_is_no_address_stays_invalid(address: object) -> None:
    with pytest.raises(InvalidInput) as raised:
        checked_address(address)  # type: ignore[arg-type]
    assert raised.value.code == "invalid_address"


@pytest.mark.parametrize(
    ("decimals", "ceiling"),
    [
        (0, 10**6),
        (6, 10**12),
        (18, 10**24),
        (22, 10**28),
        (23, MAX_PACKED_AMOUNT),
        (36, MAX_PACKED_AMOUNT),
    ],
)
def test_an_assets_earning_ceiling_defaults_to_a_million_whole_units(
    decimals: int, ceiling: int
) -> None:
    asset = AssetConfig(symbol="T", decimals=decimals, address=TOKEN)
    assert asset.max_earning == ceiling
    assert AssetConfig.default_max_earning(decimals) == ceiling


def test_an_assets_earning_ceiling_can_be_set() -> None:
    asset = AssetConfig.model_validate(
        {"symbol": "T", "decimals": 6, "address": TOKEN, "max_earning": 5_000_000}
    )
    assert asset.max_earning == 5_000_000
    assert asset.model_dump()["max_earning"] == 5_000_000


@pytest.mark.parametrize("ceiling", [0, -1, MAX_PACKED_AMOUNT + 1])
def test_an_earning_ceiling_must_be_a_payable_amount(ceiling: int) -> None:
    with pytest.raises(ValidationError):
        AssetConfig.model_validate(
            {"symbol": "T", "decimals": 6, "address": TOKEN, "max_earning": ceiling}
        )


def test_the_settings_ceiling_cap_is_what_the_batcher_packs() -> None:
    assert AssetConfig.MAX_PACKED == MAX_PACKED_AMOUNT
