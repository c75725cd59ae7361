"""Money is integer base units: parse_amount refuses anything that is not, round_down keeps dust."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payouts.errors import InvalidAmount, InvalidInput
from payouts.money import MAX_PACKED_AMOUNT, UINT256_MAX, format_units, parse_amount, round_down


@pytest.mark.parametrize(
    ("given_value", "expected"),
    [
        ("1", 1),
        ("1000000", 1_000_000),
        (7, 7),
        (10**18, 10**18),
        (str(MAX_PACKED_AMOUNT), MAX_PACKED_AMOUNT),
        (MAX_PACKED_AMOUNT, MAX_PACKED_AMOUNT),
    ],
)
def test_parse_amount_accepts_positive_digit_strings_and_ints(
    given_value: object, expected: int
) -> None:
    parsed = parse_amount(given_value)
    assert parsed == expected
    assert type(parsed) is int


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(1.5, id="float"),
        pytest.param(2.0, id="integral-float"),
        pytest.param("1.5", id="decimal-point-string"),
        pytest.param("10.", id="trailing-point"),
        pytest.param("1e3", id="exponent"),
        pytest.param("1E3", id="exponent-upper"),
        pytest.param("-5", id="negative-string"),
        pytest.param(-5, id="negative-int"),
        pytest.param("0", id="zero-string"),
        pytest.param(0, id="zero-int"),
        pytest.param("000", id="zeros"),
        pytest.param("0042", id="leading-zeros"),
        pytest.param("007", id="leading-zeros-short"),
        pytest.param("01", id="leading-zero"),
        pytest.param("+5", id="plus-sign"),
        pytest.param(" 5", id="leading-space"),
        pytest.param("5 ", id="trailing-space"),
        pytest.param("5\n", id="trailing-newline"),
        pytest.param("1_000", id="underscore"),
        pytest.param("", id="empty"),
        pytest.param("abc", id="letters"),
        pytest.param("0x10", id="hex"),
        pytest.param("\u0661\u0662", id="non-ascii-digits"),
        pytest.param(True, id="bool-true"),
        pytest.param(False, id="bool-false"),
        pytest.param(None, id="none"),
        pytest.param(b"5", id="bytes"),
        pytest.param([5], id="list"),
        pytest.param(str(MAX_PACKED_AMOUNT + 1), id="past-packed-limit-string"),
        pytest.param(MAX_PACKED_AMOUNT + 1, id="past-packed-limit-int"),
        pytest.param(str(UINT256_MAX + 1), id="past-uint256-string"),
        pytest.param(UINT256_MAX + 1, id="past-uint256-int"),
        pytest.param("9" * 200, id="very-long-string"),
        pytest.param(10**5000, id="int-longer-than-python-str-limit"),
    ],
)
def test_parse_amount_refuses_anything_but_positive_integer_base_units(refused: object) -> None:
    with pytest.raises(InvalidAmount) as raised:
        parse_amount(refused)
    assert raised.value.code == "invalid_amount"
    assert raised.value.field == "amount"


def test_parse_amount_error_names_the_field_it_was_given() -> None:
    with pytest.raises(InvalidAmount) as raised:
        parse_amount("1.5", field="earnings[3].amount")
    assert raised.value.field == "earnings[3].amount"
    assert isinstance(raised.value, InvalidInput)


def test_parse_amount_error_states_the_packed_limit() -> None:
    with pytest.raises(InvalidAmount, match=str(MAX_PACKED_AMOUNT)):
        parse_amount(MAX_PACKED_AMOUNT + 1)


@pytest.mark.parametrize(
    "given_value", [10**12 + 1, str(10**12 + 1), MAX_PACKED_AMOUNT, UINT256_MAX]
)
def test_parse_amount_refuses_an_amount_above_the_ceiling_it_is_given_as_too_large(
    given_value: object,
) -> None:
    with pytest.raises(InvalidAmount) as raised:
        parse_amount(given_value, ceiling=10**12, field="earnings[2].amount")
    assert raised.value.code == "amount_too_large"
    assert raised.value.field == "earnings[2].amount"
    assert str(10**12) in str(raised.value)


@pytest.mark.parametrize("given_value", [UINT256_MAX + 1, str(UINT256_MAX + 1), "0", "007"])
def test_parse_amount_with_a_ceiling_still_calls_what_is_no_amount_invalid(
    given_value: object,
) -> None:
    with pytest.raises(InvalidAmount) as raised:
        parse_amount(given_value, ceiling=10**12)
    assert raised.value.code == "invalid_amount"


def test_parse_amount_accepts_the_ceiling_itself() -> None:
    assert parse_amount(str(10**12), ceiling=10**12) == 10**12


@pytest.mark.parametrize(
    ("amount", "decimals", "text"),
    [
        (1_234_567, 6, "1.234567"),
        (1, 6, "0.000001"),
        (0, 6, "0.000000"),
        (10**6, 6, "1.000000"),
        (-1_500_000, 6, "-1.500000"),
        (-1, 6, "-0.000001"),
        (42, 0, "42"),
        (-42, 0, "-42"),
        (10**18, 18, "1.000000000000000000"),
        (UINT256_MAX, 18, f"{UINT256_MAX // 10**18}.{UINT256_MAX % 10**18:018d}"),
    ],
)
def test_format_units_renders_base_units_as_exact_decimal_text(
    amount: int, decimals: int, text: str
) -> None:
    assert format_units(amount, decimals) == text


@pytest.mark.parametrize(
    ("amount", "unit", "payable", "dust"),
    [
        (12_345, 100, 12_300, 45),
        (12_300, 100, 12_300, 0),
        (99, 100, 0, 99),
        (0, 100, 0, 0),
        (7, 1, 7, 0),
    ],
)
def test_round_down_returns_whole_units_and_the_dust(
    amount: int, unit: int, payable: int, dust: int
) -> None:
    assert round_down(amount, unit) == (payable, dust)


@pytest.mark.parametrize("unit", [0, -1, -100])
def test_round_down_refuses_a_unit_that_is_not_positive(unit: int) -> None:
    with pytest.raises(ValueError, match="unit must be positive"):
        round_down(12_345, unit)


@given(
    amount=st.integers(min_value=0, max_value=UINT256_MAX),
    unit=st.integers(min_value=1, max_value=10**30),
)
def test_round_down_loses_nothing_and_leaves_less_than_one_unit_of_dust(
    amount: int, unit: int
) -> None:
    payable, dust = round_down(amount, unit)
    assert payable + dust == amount
    assert payable % unit == 0
    assert 0 <= dust < unit


@given(st.integers(min_value=1, max_value=MAX_PACKED_AMOUNT))
def test_parse_amount_round_trips_every_allowed_amount(amount: int) -> None:
    assert parse_amount(str(amount)) == amount
    assert parse_amount(amount) == amount


@given(
    amount=st.integers(min_value=-(10**40), max_value=10**40),
    decimals=st.integers(min_value=0, max_value=36),
)
def test_format_units_is_exact_in_base_units(amount: int, decimals: int) -> None:
    text = format_units(amount, decimals)
    digits = text.replace("-", "").replace(".", "")
    assert int(digits) == abs(amount)
    assert text.startswith("-") == (amount < 0)
    if decimals:
        assert len(text.split(".")[1]) == decimals
