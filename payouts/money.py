"""Money as integers in an asset's base units.

There is no float anywhere on this path: amounts arrive as strings of digits, are held as
``int`` and leave as strings. Rounding happens in one place (``round_down``) and returns the
remainder, so the caller has to decide where the dust goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from payouts.errors import InvalidAmount

UINT256_MAX = 2**256 - 1
# The batcher packs an amount into the top 96 bits of a 32-byte word.
MAX_PACKED_AMOUNT = 2**96 - 1

_DIGITS = re.compile(r"[0-9]{1,78}")


@dataclass(frozen=True, slots=True)
class Asset:
    symbol: str
    decimals: int
    chain_id: int
    address: str | None  # None: the chain's native currency

    @property
    def is_native(self) -> bool:
        return self.address is None


def parse_amount(text: object, *, field: str = "amount") -> int:
    """Parse a positive amount of base units from its decimal string; refuse anything else.

    Floats, exponents, signs, decimal points and whitespace are refused rather than
    coerced: a marketplace that sends ``1e3`` or ``10.5`` has a bug we must surface.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise InvalidAmount("amount must be a string of integer base units", field=field)
    if isinstance(text, int) and not 0 <= text <= UINT256_MAX:
        raise InvalidAmount("amount must be a positive integer below 2**256", field=field)
    raw = str(text)
    if not _DIGITS.fullmatch(raw):
        raise InvalidAmount(
            "amount must be a string of digits (integer base units, no sign, point or exponent)",
            field=field,
        )
    value = int(raw)
    if value <= 0:
        raise InvalidAmount("amount must be greater than zero", field=field)
    if value > MAX_PACKED_AMOUNT:
        raise InvalidAmount(f"amount must be at most {MAX_PACKED_AMOUNT}", field=field)
    return value


def format_units(amount: int, decimals: int) -> str:
    """Render base units as a decimal string for people, e.g. 1234567 with 6 -> '1.234567'."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**decimals)
    if decimals == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{decimals}d}"


def round_down(amount: int, unit: int) -> tuple[int, int]:
    """Split ``amount`` into a whole number of ``unit`` and the dust left over."""
    if unit <= 0:
        raise ValueError("unit must be positive")
    dust = amount % unit
    return amount - dust, dust
