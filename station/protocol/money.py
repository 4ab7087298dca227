"""Money: integer fen everywhere; Decimal only at the edges.

``parse_amount`` is the one way a typed amount enters the system. Everything after it is an ``int``
of fen (1 yuan = 100 fen); formatting back to yuan happens only for display.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

FEN_PER_YUAN = 100
#: Nothing a village station handles comes near this (10 million yuan); larger input is a typo or an attack.
MAX_AMOUNT_FEN = 10_000_000 * FEN_PER_YUAN

#: ASCII digits only, after NFKC: ``\d`` would also take other scripts' digits, some of which look like other
#: figures (Bengali ৪ is 4 but reads as 8).
_AMOUNT_RE = re.compile(r"^(?P<yuan>[0-9]{1,12})(?:\.(?P<frac>[0-9]{1,2}))?$")


class AmountError(ValueError):
    """A typed amount that is not a valid sum of money. ``code`` is stable; ``message`` is English."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse_amount(value: str | int | Decimal, *, allow_zero: bool = False) -> int:
    """Return ``value`` as integer fen, or raise :class:`AmountError`.

    A ``str`` or ``Decimal`` is yuan as a person typed it ("500", "12.5", "１００"); an ``int`` is already
    fen (from code, never from a person). Floats are refused outright: they cannot hold money exactly.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise AmountError("amount_type", "An amount must be typed as digits, not a floating-point number.")
    if isinstance(value, int):
        fen = value
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise AmountError("amount_format", "Enter the amount in digits, for example 100 or 12.50.")
        if value.as_tuple().exponent < -2:
            raise AmountError("amount_precision", "An amount can have at most two decimals (fen).")
        # Before multiplying: 1E+999999 * 100 overflows the decimal context (an ArithmeticError, not ours).
        if value.adjusted() >= 12:
            raise AmountError("amount_too_large", "That amount is far too large.")
        fen = int(value * FEN_PER_YUAN)
    elif isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        if text == "":
            raise AmountError("amount_empty", "Enter an amount.")
        if text.startswith("-"):
            raise AmountError("amount_negative", "An amount cannot be negative.")
        match = _AMOUNT_RE.match(text)
        if match is None:
            if re.match(r"^[0-9]+\.[0-9]{3,}$", text):
                raise AmountError("amount_precision", "An amount can have at most two decimals (fen).")
            if re.match(r"^[0-9]{13,}(\.[0-9]*)?$", text):
                raise AmountError("amount_too_large", "That amount is far too large.")
            raise AmountError("amount_format", "Enter the amount in digits, for example 100 or 12.50.")
        frac = (match.group("frac") or "").ljust(2, "0")
        fen = int(match.group("yuan")) * FEN_PER_YUAN + int(frac)
    else:
        raise AmountError("amount_type", "An amount must be typed as digits.")
    if fen < 0:
        raise AmountError("amount_negative", "An amount cannot be negative.")
    if fen == 0 and not allow_zero:
        raise AmountError("amount_zero", "The amount must be more than zero.")
    if fen > MAX_AMOUNT_FEN:
        raise AmountError("amount_too_large", "That amount is far too large.")
    return fen


def fen_to_decimal(fen: int) -> Decimal:
    """Yuan as an exact Decimal with two places (for display and for people's files)."""
    return (Decimal(fen) / FEN_PER_YUAN).quantize(Decimal("0.01"))


def format_yuan(fen: int) -> str:
    """"1,234.50" style figures, as a receipt prints them (without a currency sign)."""
    sign = "-" if fen < 0 else ""
    yuan, rest = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{yuan:,}.{rest:02d}"


def chinese_capitals(fen: int) -> str:
    """The amount in Chinese financial capitals, as bank slips write it: 50000 -> 伍佰元整."""
    if fen < 0:
        return "负" + chinese_capitals(-fen)
    if fen == 0:
        return "零元整"
    # Imported here: loading cn2an takes about 0.1 s (it builds its tables), which every process that imports
    # the protocol (each `station` command) would pay, most of them never spelling an amount out.
    import cn2an

    # cn2an truncates past two decimals; fen_to_decimal always gives exactly two.
    return cn2an.an2cn(str(fen_to_decimal(fen)), "rmb")
