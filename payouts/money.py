"""Money as integers in an asset's base units.

There is no float anywhere on this path: amounts arrive as canonical strings of digits, are held as
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

# Canonical decimal text of a positive integer: no sign, no leading zero, ASCII digits only,
# at most 78 digits (every uint256 fits in 78).
_CANONICAL = re.compile(r"[1-9][0-9]{0,77}")


@dataclass(frozen=True, slots=True)
class Asset:
    symbol: str
    decimals: int
    chain_id: int
    address: str | None  # None: the chain's native currency

    @property
    def is_native(self) -> bool:
        return self.address is None


def parse_amount(text: object, *, field: str = "amount", ceiling: int | None = None) -> int:
    """Parse a positive amount of base units from its canonical decimal string; refuse the rest.

    Floats, exponents, signs, decimal points, leading zeros and whitespace are refused rather
    than coerced: a marketplace that sends ``1e3``, ``10.5`` or ``007`` has a bug we must
    surface. What is no uint256 at all is ``invalid_amount``; a number above ``ceiling`` (an
    asset's largest earning) is ``amount_too_large``; without a ceiling, anything the batcher
    cannot pack (above ``MAX_PACKED_AMOUNT``) is ``invalid_amount``.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise InvalidAmount("amount must be a string of integer base units", field=field)
    if isinstance(text, int) and not 0 <= text <= UINT256_MAX:
        raise InvalidAmount("amount must be a positive integer below 2**256", field=field)
    raw = str(text)
    if raw == "0":
        raise InvalidAmount("amount must be greater than zero", field=field)
    if not _CANONICAL.fullmatch(raw):
        raise InvalidAmount(
            "amount must be a string of digits without a leading zero (integer base units,"
            " no sign, point, exponent or space)",
            field=field,
        )
    value = int(raw)
    if value > UINT256_MAX:
        raise InvalidAmount("amount must be a positive integer below 2**256", field=field)
    if ceiling is not None and value > ceiling:
        raise InvalidAmount(
            f"amount must be at most {ceiling} base units", field=field, code="amount_too_large"
        )
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
