"""What the server enforces, written as the regular expressions the OpenAPI document publishes.

A pattern here matches only values the server accepts, so a client (or a fuzzer) that obeys the
document is never refused for the shape of a value. Where the server's rule cannot be a
pattern exactly (a timestamp's "at most a day from now"), the pattern is the part of the rule
that is true whatever the clock says, and the description says the rest.

Patterns use only what ECMA-262 and Python's ``re`` read alike (no look-around, ``[0-9]`` rather
than ``\\d``), anchored with ``^`` and ``$``.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, timedelta

from payouts.ingest.earnings import EARLIEST_OCCURRED_AT, MAX_KEY_LENGTH

# An idempotency key: 1 to 255 visible ASCII characters (0x21-0x7E).
KEY_PATTERN = f"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"
# A row's id in a path: the canonical decimal of a positive bigint.
ID_PATTERN = "^[1-9][0-9]{0,18}$"
MAX_ID = 2**63 - 1  # the largest bigint
# Text PostgreSQL can hold: anything but NUL.
NO_NUL = "[^\\u0000]"
TEXT_PATTERN = f"^{NO_NUL}*$"


# The characters str.isspace() calls blank (what str.strip() removes), as ECMA and Python
# regexes both read them; a unit test holds the list to Python's own.
BLANKS = (
    "\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029"
    "\\u202f\\u205f\\u3000"
)


# Text with at least one character that is not blank (what ``value.strip()`` keeps), no NUL.
NOT_BLANK_PATTERN = f"^{NO_NUL}*[^\\u0000{BLANKS}]{NO_NUL}*$"


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def _group(alternatives: list[str]) -> str:
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


def fixed_range(lo: int, hi: int, width: int) -> str:
    """The zero-padded decimals ``lo``..``hi``, each exactly ``width`` digits."""
    if not 0 <= lo <= hi < 10**width:
        raise ValueError(f"no {width}-digit range {lo}..{hi}")
    if width == 1:
        return _span(lo, hi)
    unit = 10 ** (width - 1)
    lo_digit, lo_rest = divmod(lo, unit)
    hi_digit, hi_rest = divmod(hi, unit)
    if lo_digit == hi_digit:
        return f"{lo_digit}{_group([fixed_range(lo_rest, hi_rest, width - 1)])}"
    parts = []
    first_full, last_full = lo_digit, hi_digit
    if lo_rest:
        parts.append(f"{lo_digit}{_group([fixed_range(lo_rest, unit - 1, width - 1)])}")
        first_full += 1
    tail = None
    if hi_rest != unit - 1:
        tail = f"{hi_digit}{_group([fixed_range(0, hi_rest, width - 1)])}"
        last_full -= 1
    if first_full <= last_full:
        rest = "[0-9]" if width == 2 else f"[0-9]{{{width - 1}}}"
        parts.append(f"{_span(first_full, last_full)}{rest}")
    if tail:
        parts.append(tail)
    return _group(parts)


def positive_up_to(ceiling: int) -> str:
    """The canonical decimals of 1..``ceiling`` (no sign, no leading zero)."""
    if ceiling < 1:
        raise ValueError("ceiling must be positive")
    digits = len(str(ceiling))
    parts = []
    if digits == 2:
        parts.append("[1-9]")
    elif digits > 2:
        parts.append(f"[1-9][0-9]{{0,{digits - 2}}}")
    parts.append(fixed_range(10 ** (digits - 1) if digits > 1 else 1, ceiling, digits))
    return f"^{_group(parts)}$"


# --- dates and times ------------------------------------------------------------------------

_MONTH_DAYS = (
    "(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8])"
)
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?"
# UTC offsets from -12:00 to +14:00; then only those at or west of UTC, or at or east of it.
_ANY_OFFSET = "Z|[+-](?:0[0-9]|1[01]):[0-5][0-9]|-12:00|\\+1[23]:[0-5][0-9]|\\+14:00"
_WEST_OFFSET = "Z|\\+00:00|-(?:0[0-9]|1[01]):[0-5][0-9]|-12:00"
_EAST_OFFSET = "Z|-00:00|\\+(?:0[0-9]|1[0-3]):[0-5][0-9]|\\+14:00"


def _years(years: Iterable[int]) -> str:
    return _group([f"{y:04d}" for y in years])


def date_range(first: date, last: date) -> str:
    """Every calendar date ``first``..``last`` as YYYY-MM-DD (no group around it)."""
    parts = []
    whole = [y for y in range(first.year, last.year + 1) if first <= date(y, 1, 1)]
    whole = [y for y in whole if date(y, 12, 31) <= last]
    if whole:
        parts.append(f"{fixed_range(whole[0], whole[-1], 4)}-(?:{_MONTH_DAYS})")
        leap = [y for y in whole if calendar.isleap(y)]
        if leap:
            parts.append(f"{_years(leap)}-02-29")
    for year in range(first.year, last.year + 1):
        if year in whole:
            continue
        for month in range(1, 13):
            start = max(first, date(year, month, 1))
            end = min(last, date(year, month, calendar.monthrange(year, month)[1]))
            if start <= end:
                days = fixed_range(start.day, end.day, 2)
                parts.append(f"{year:04d}-{month:02d}-{_group([days])}")
    return "|".join(parts)


def _instants(first: date, last: date) -> str:
    """RFC 3339 timestamps dated ``first``..``last``: a date strictly between them with any
    offset from -12:00 to +14:00, ``first`` only at or west of UTC (east of it, the instant
    may still be the day before), ``last`` only at or east of it (west of it, the instant may
    already be the day after)."""
    branches = []
    middle = date_range(first + timedelta(days=1), last - timedelta(days=1))
    if middle:
        branches.append(f"(?:{middle})T{_TIME}(?:{_ANY_OFFSET})")
    branches.append(f"{first.isoformat()}T{_TIME}(?:{_WEST_OFFSET})")
    branches.append(f"{last.isoformat()}T{_TIME}(?:{_EAST_OFFSET})")
    return "^(?:" + "|".join(branches) + ")$"


def occurred_at_pattern(today: date) -> str:
    """RFC 3339 timestamps the server accepts whatever its clock says during ``today`` (UTC).

    The server takes 2000-01-01T00:00Z to one day after now. Dates strictly between
    2000-01-01 and ``today`` are inside that with any offset from -12:00 to +14:00;
    2000-01-01 itself only at or west of UTC (east of it, the instant is still in 1999); today
    only at or east of UTC (at most today 23:59:59Z, never more than a day ahead).
    """
    return _instants(EARLIEST_OCCURRED_AT.date(), today)


# How far ahead a hold may expire; a hold meant to last longer has no expiry at all.
MAX_EXPIRY_DAYS = 366


def expires_at_pattern(today: date) -> str:
    """RFC 3339 timestamps the server takes as a hold's expiry whatever its clock says during
    ``today`` (UTC).

    The server takes an instant after now and at most ``MAX_EXPIRY_DAYS`` days from now.
    Tomorrow is after now only at or west of UTC (east of it, tomorrow's first hours are still
    today in UTC); the days after it with any offset; the last day, ``MAX_EXPIRY_DAYS - 1``
    days ahead, only at or east of UTC (west of it, its last hours would be past the horizon
    when the clock is early in the day).
    """
    return _instants(today + timedelta(days=1), today + timedelta(days=MAX_EXPIRY_DAYS - 1))


# --- addresses and cursors ------------------------------------------------------------------


def address_pattern() -> str:
    """All-lowercase addresses above 0xffff (the zero address and precompiles are not paid).

    Mixed case is accepted too when it is the address's EIP-55 checksum; a pattern cannot
    check a checksum (Keccak), so it shows the lowercase spelling every address has.
    """
    # The first 36 of the 40 hex digits are not all zero: the first non-zero one is at k.
    alternatives = [f"0{{{k}}}[1-9a-f][0-9a-f]{{{39 - k}}}" for k in range(36)]
    return "^0x(?:" + "|".join(a.replace("0{0}", "") for a in alternatives) + ")$"


# A cursor is base64url("v1:" + id), unpadded. "v1:" is three bytes, so it encodes alone as
# "djE6" and the id's digits follow in groups of three bytes (four characters each).
_DIGITS_3 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][wxyz0-5]"
_FIRST_3 = "(?:M[Tjz]|N[DTjz]|O[DT])[AEIMQUYcgk][wxyz0-5]"  # first digit not 0
_DIGITS_1 = "(?:[MN][AQgw]|O[AQ])"
_FIRST_1 = "(?:M[Qgw]|N[AQgw]|O[AQ])"
_DIGITS_2 = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"
_FIRST_2 = "(?:M[Tjz]|N[DTjz]|O[DT])[AEIMQUYcgk]"


def cursor_pattern() -> str:
    """The cursors of ids with 1 to 18 digits (every id below 10**18), exactly as issued."""
    full = f"{_FIRST_3}(?:{_DIGITS_3}){{0,4}}(?:{_DIGITS_3}|{_DIGITS_1}|{_DIGITS_2})?"
    return f"^djE6(?:{full}|{_FIRST_1}|{_FIRST_2})$"
