"""The patterns the OpenAPI document publishes match only what the server accepts.

Each is read as a generator (hypothesis draws strings that match it) and every draw must pass
the server's own check; and a few values the server refuses must not match.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payouts.api import contract
from payouts.api.routes.common import decode_cursor, encode_cursor
from payouts.api.schemas import parse_occurred_at
from payouts.catalog import checked_address
from payouts.ingest.earnings import valid_key


def _matching(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(re.compile(pattern), fullmatch=True)


def test_the_blanks_are_what_python_strips() -> None:
    blanks = {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}
    assert blanks == {
        c for c in map(chr, range(sys.maxunicode + 1)) if re.fullmatch(f"[{contract.BLANKS}]", c)
    }


@pytest.mark.parametrize("ceiling", [1, 9, 10, 11, 99, 100, 101, 777, 10**6, 10**12, 2**96 - 1])
def test_positive_up_to_matches_exactly_one_to_the_ceiling(ceiling: int) -> None:
    pattern = re.compile(contract.positive_up_to(ceiling))
    values = {*range(0, 1500), ceiling - 1, ceiling, ceiling + 1, 10 ** len(str(ceiling))}
    for value in values:
        assert bool(pattern.fullmatch(str(value))) == (1 <= value <= ceiling), value
    for spelling in ("01", "+1", " 1", "1.0", "1e3", "\u0661"):
        assert not pattern.fullmatch(spelling)


def test_date_range_matches_exactly_the_calendar_dates_in_it() -> None:
    first, last = date(2003, 11, 17), date(2009, 3, 2)
    pattern = re.compile(f"^(?:{contract.date_range(first, last)})$")
    day = first - timedelta(days=400)
    while day <= last + timedelta(days=400):
        assert bool(pattern.fullmatch(day.isoformat())) == (first <= day <= last), day
        day += timedelta(days=1)
    for impossible in ("2005-02-29", "2004-02-30", "2005-04-31", "2005-13-01", "2005-00-01"):
        assert not pattern.fullmatch(impossible)


TODAY = datetime.now(UTC).date()


@settings(max_examples=300)
@given(_matching(contract.occurred_at_pattern(TODAY)))
def test_every_timestamp_the_pattern_allows_is_accepted(text: str) -> None:
    assert parse_occurred_at(text) is not None


@pytest.mark.parametrize(
    "refused",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2020-01-01T00:00:00+23:05",
        "2020-01-01T00:00:00-12:01",
        "1999-12-31T23:59:59Z",
        "2000-01-01T00:30:00+01:00",
        "2021-02-29T00:00:00Z",
        "2020-01-01T24:00:00Z",
        "2020-01-01T00:00:00.1234567Z",
        "2020-01-01T00:00:00z",
        (TODAY + timedelta(days=2)).isoformat() + "T00:00:00Z",
    ],
)
def test_timestamps_the_server_refuses_do_not_match(refused: str) -> None:
    assert not re.fullmatch(contract.occurred_at_pattern(TODAY), refused)


@given(_matching(contract.KEY_PATTERN))
def test_every_key_the_pattern_allows_is_accepted(key: str) -> None:
    assert valid_key(key)


@given(_matching(contract.address_pattern()))
def test_every_address_the_pattern_allows_is_accepted(address: str) -> None:
    assert checked_address(address).lower() == address


@given(_matching(contract.cursor_pattern()))
def test_every_cursor_the_pattern_allows_is_one_the_api_issues(cursor: str) -> None:
    assert encode_cursor(decode_cursor(cursor)) == cursor


@given(st.integers(min_value=1, max_value=10**18 - 1))
def test_every_cursor_the_api_issues_below_10_18_matches(last_id: int) -> None:
    cursor = encode_cursor(last_id)
    assert cursor is not None
    assert re.fullmatch(contract.cursor_pattern(), cursor)


@given(_matching(contract.NOT_BLANK_PATTERN))
def test_every_resolution_the_pattern_allows_is_not_blank(text: str) -> None:
    assert text.strip()
    assert "\x00" not in text


@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u3000\u2028", "\x1c\x85"])
def test_a_blank_resolution_does_not_match(blank: str) -> None:
    assert not re.fullmatch(contract.NOT_BLANK_PATTERN, blank)
