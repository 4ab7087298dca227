"""Resident identity card (居民身份证) numbers: GB 11643-1999 validation, and the keyed hash that is all a journal
keeps of one.

A number is 18 characters: a 6-digit address code, the birth date (YYYYMMDD), a 3-digit sequence and a check
character computed with ISO 7064 MOD 11-2 over the first 17 digits (weights 2^(17-i) mod 11; a remainder of 10 is
written ``X``). ``parse_id_number`` accepts what a person types on the pad (full-width digits, a lowercase x,
spaces) and returns the canonical form, or raises ``IdNumberError`` with a code saying what is wrong.

Privacy invariant: the full number never leaves the request that typed it. A withdrawal's entry carries only
``id_hash`` (HMAC-SHA256 of the canonical number under a key the station keeps in its data folder) and
``id_last4``; docs/threat-model.md says why the key is the station's own. Pure standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import date

#: ISO 7064 MOD 11-2 weights of the first 17 digits, and the check character of each remainder.
WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
CHECK_CHARACTERS = "10X98765432"
_NUMBER = re.compile(r"[0-9]{17}[0-9X]")
_HASH = re.compile(r"[0-9a-f]{64}")
_LAST4 = re.compile(r"[0-9]{3}[0-9X]")
#: The oldest birth year a living customer's card plausibly carries.
EARLIEST_BIRTH_YEAR = 1900


class IdNumberError(ValueError):
    """Why a typed ID card number is refused: ``code`` is ``format``, ``birth_date`` or ``check_digit``."""

    def __init__(self, code: str):
        self.code = code
        super().__init__(code)


def check_character(first17: str) -> str:
    """The GB 11643 check character of 17 decimal digits."""
    return CHECK_CHARACTERS[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def parse_id_number(text: str, *, today: date) -> str:
    """The canonical 18-character number (digits and an uppercase X) of ``text``, or ``IdNumberError``.

    Refused: anything but 17 ASCII digits and a digit or X (``format``), a birth date that is not a real day
    between 1900 and ``today`` (``birth_date``), a last character that is not the check character (``check_digit``).
    """
    if not isinstance(text, str) or len(text) > 64:
        raise IdNumberError("format")
    number = "".join(unicodedata.normalize("NFKC", text).split()).upper()
    if not _NUMBER.fullmatch(number):
        raise IdNumberError("format")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise IdNumberError("birth_date") from exc
    if born.year < EARLIEST_BIRTH_YEAR or born > today:
        raise IdNumberError("birth_date")
    if check_character(number[:17]) != number[17]:
        raise IdNumberError("check_digit")
    return number


def id_hash(key: bytes, number: str) -> str:
    """HMAC-SHA256 of a canonical number under ``key``, in hex (64 characters): the same person, the same hash at
    this station; without the key, no way back to the number."""
    return hmac.new(key, number.encode("ascii"), hashlib.sha256).hexdigest()


def last4(number: str) -> str:
    """The last 4 characters of a canonical number, as a receipt or a journal may show them."""
    return number[-4:]


def identity_problem(policy: dict, payload: dict) -> str | None:
    """The bank's rejection reason for a withdrawal's identity fields under ``policy``, or None:
    ``malformed_entry`` when ``id_hash`` and ``id_last4`` are not both present and well-formed (64 lowercase hex;
    3 digits and a digit or X) or both absent; ``id_required`` when the amount is above ``id_check_fen`` or
    ``proxy`` is true and they are absent."""
    hashed, tail = payload.get("id_hash"), payload.get("id_last4")
    if hashed is None and tail is None:
        if payload.get("proxy") is True or payload["amount"] > int(policy["id_check_fen"]):
            return "id_required"
        return None
    if not (isinstance(hashed, str) and _HASH.fullmatch(hashed) and isinstance(tail, str) and _LAST4.fullmatch(tail)):
        return "malformed_entry"
    return None
