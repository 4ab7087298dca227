"""Money parsing and formatting: integer fen in, exact text out, never a float."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from station.protocol.money import (
    MAX_AMOUNT_FEN,
    AmountError,
    chinese_capitals,
    fen_to_decimal,
    format_yuan,
    parse_amount,
)


@pytest.mark.parametrize(
    ("typed", "fen"),
    [
        ("500", 50_000),
        ("12.5", 1_250),
        ("12.50", 1_250),
        ("0.01", 1),
        (" 100 ", 10_000),
        ("１００", 10_000),  # full-width digits from a Chinese input method are normalised (NFKC)
        ("１２.５", 1_250),
        (Decimal("3.20"), 320),
        (700, 700),  # an int is already fen
    ],
)
def test_valid_amounts(typed, fen):
    assert parse_amount(typed) == fen


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("", "amount_empty"),
        ("   ", "amount_empty"),
        ("-5", "amount_negative"),
        ("0", "amount_zero"),
        ("0.00", "amount_zero"),
        ("10.005", "amount_precision"),
        ("1e3", "amount_format"),
        ("NaN", "amount_format"),
        ("Infinity", "amount_format"),
        ("1,000", "amount_format"),
        ("12.", "amount_format"),
        (".5", "amount_format"),
        ("五百", "amount_format"),
        ("100元", "amount_format"),
        ("৪০", "amount_format"),  # Bengali 40, which reads as 80: only 0-9 (and full-width, normalised) count
        ("٥٠٠", "amount_format"),
        ("9999999999999", "amount_too_large"),
        (10**15, "amount_too_large"),
        (MAX_AMOUNT_FEN + 1, "amount_too_large"),
        (-1, "amount_negative"),
        (1.5, "amount_type"),
        (True, "amount_type"),
        (None, "amount_type"),
        (Decimal("NaN"), "amount_format"),
        (Decimal("1.001"), "amount_precision"),
        (Decimal("1E+999999"), "amount_too_large"),
        (Decimal("1000000000000"), "amount_too_large"),
    ],
)
def test_refused_amounts(typed, code):
    with pytest.raises(AmountError) as refused:
        parse_amount(typed)
    assert refused.value.code == code


def test_zero_allowed_only_when_asked():
    assert parse_amount("0", allow_zero=True) == 0


@given(st.integers(min_value=1, max_value=MAX_AMOUNT_FEN))
def test_parse_round_trips_formatting(fen):
    assert parse_amount(str(fen_to_decimal(fen))) == fen
    assert parse_amount(format_yuan(fen).replace(",", "")) == fen


@given(st.integers(min_value=1, max_value=MAX_AMOUNT_FEN))
def test_parse_round_trips_decimal(fen):
    assert parse_amount(fen_to_decimal(fen)) == fen


@pytest.mark.parametrize(
    ("fen", "capitals"),
    [
        (50_000, "伍佰元整"),
        (100_000, "壹仟元整"),
        (123_456, "壹仟贰佰叁拾肆元伍角陆分"),
        (5, "伍分"),
        (1_050, "壹拾元伍角"),
        (0, "零元整"),
    ],
)
def test_chinese_capitals(fen, capitals):
    assert chinese_capitals(fen) == capitals


def test_format_yuan():
    assert format_yuan(123_456_78) == "123,456.78"
    assert format_yuan(-1_000) == "-10.00"
