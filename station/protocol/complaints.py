"""12315 consumer complaints: the rules a complaint's fields follow, read by the station and by the bank alike.

A complaint is taken at the station for the market regulator (12315) and forwarded through the bank. The station
checks what a person typed before it signs anything (``station.complaints``); the bank checks the signed entry
again (``sync_server.posting_rules``), since a signature proves which device wrote an entry, not that its fields
are right. Both use ``complaint_problem``.

The complaint number is ``{station}-{YYYYMMDD}-{seq:06d}``: the station id, the local date of the entry (the
policy's time zone) and the entry's journal seq. Station ids are unique bank-wide and a station's seqs are gapless
and never reused (a replacement device continues after the bank's head), so the number is unique bank-wide without
asking anyone, offline too; the bank re-derives the station and seq parts from the entry itself.

Pure code: no Flask or peewee import (the server imports it).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta

from station.protocol.entry_types import SPECS, EntryType, one_line
from station.protocol.times import parse_utc

#: The categories a complaint is filed under, as stored (codes); the screen and the export show them translated.
CATEGORIES = SPECS[EntryType.COMPLAINT_12315].fields["category"].choices
#: The category whose complaint must say what happened (the code alone says nothing).
OTHER = "other"
#: The business complained about: one line, like a shop sign.
MAX_BUSINESS = 60
#: What happened: one line of at most this many characters.
MAX_DETAILS = 200

#: A mainland mobile number: 11 digits, 1 then 3-9.
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
#: A landline with its area code as stored: 0, the rest of a 3-digit (010, 02X) or 4-digit area code, a hyphen, a
#: local number of 7 or 8 digits not starting with 0 or 1.
_LANDLINE = re.compile(r"(?:010|02[0-9]|0[3-9][0-9]{2})-[2-9][0-9]{6,7}")
#: What a person may type between digits: spaces and hyphens (full-width ones are folded by NFKC first).
_SEPARATORS = re.compile(r"[ \-]")
_NUMBER = re.compile(r"(?P<station>.+)-(?P<date>[0-9]{8})-(?P<seq>[0-9]{6,})")


def normalise_phone(typed) -> str | None:
    """The phone number as stored, or None when it is not a mainland mobile number or a landline with its area code.

    A mobile number is its 11 digits (``13812345678``; a leading +86 or 86 is dropped); a landline is the area code,
    a hyphen and the local number (``0571-88889999``), whether typed with the hyphen or without it.
    """
    if not isinstance(typed, str) or len(typed) > 32:
        return None
    text = _SEPARATORS.sub("", unicodedata.normalize("NFKC", typed).strip())
    if text.startswith("+86"):
        text = text[3:]
    elif text.startswith("86") and len(text) == 13:
        text = text[2:]
    if not (text.isascii() and text.isdigit()):
        return None
    if _MOBILE.fullmatch(text):
        return text
    if text.startswith("0"):
        area = 3 if text.startswith(("010", "02")) else 4
        landline = f"{text[:area]}-{text[area:]}"
        if _LANDLINE.fullmatch(landline):
            return landline
    return None


def phone_ok(phone) -> bool:
    """Whether ``phone`` is a phone number exactly as stored (``normalise_phone``'s output)."""
    return isinstance(phone, str) and (_MOBILE.fullmatch(phone) is not None or _LANDLINE.fullmatch(phone) is not None)


def mask_phone(phone: str) -> str:
    """The phone number as a screen or paper shows it: a mobile by its first 3 and last 4 digits (138****5678), a
    landline by its area code and last 4 (0571-****9999)."""
    if "-" in phone:
        area, local = phone.split("-", 1)
        return f"{area}-****{local[-4:]}"
    return f"{phone[:3]}****{phone[-4:]}"


def complaint_number(station_id: str, local_day: date, seq: int) -> str:
    """The complaint number of the station's entry ``seq`` taken on ``local_day`` (see the module docstring)."""
    return f"{station_id}-{local_day:%Y%m%d}-{seq:06d}"


def number_problem(number, station_id: str, seq: int, ts: datetime) -> bool:
    """Whether ``number`` is not the complaint number of this station's entry ``seq`` stamped ``ts`` (UTC): its station
    and seq parts must be exactly these, its date a real date within a day of ``ts`` (the station's time zone is
    its own policy's, which the bank may have changed since)."""
    match = _NUMBER.fullmatch(number) if isinstance(number, str) else None
    if match is None or match["station"] != station_id or int(match["seq"]) != seq:
        return True
    try:
        day = datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError:
        return True
    return abs(day - ts.date()) > timedelta(days=1) or number != complaint_number(station_id, day, seq)


def subject_problem(fields: dict) -> str | None:
    """What is wrong with what a complaint is about, as a reason code, or None: ``complaint_bad_category``,
    ``complaint_bad_business`` (not one line of 1 to ``MAX_BUSINESS`` printable characters), ``complaint_bad_details``
    (longer than ``MAX_DETAILS``, not one printable line, or missing with ``other``).

    ``fields``: category, business, details (may be absent), as stored.
    """
    if fields.get("category") not in CATEGORIES:
        return "complaint_bad_category"
    business = fields.get("business")
    if one_line(business, MAX_BUSINESS) != business:
        return "complaint_bad_business"
    details = fields.get("details")
    if details is None:
        return "complaint_bad_details" if fields["category"] == OTHER else None
    if one_line(details, MAX_DETAILS) != details:
        return "complaint_bad_details"
    return None


def complaint_problem(fields: dict) -> str | None:
    """What is wrong with a complaint's fields, as a reason code, or None: ``complaint_no_consent`` (consent is not
    ``true``), ``complaint_bad_phone``, then ``subject_problem``'s.

    ``fields``: phone, business, category, details (may be absent), consent, as stored.
    """
    if fields.get("consent") is not True:
        return "complaint_no_consent"
    if not phone_ok(fields.get("phone")):
        return "complaint_bad_phone"
    return subject_problem(fields)


def complaint_entry_problem(payload, station_id: str) -> str | None:
    """Why a well-formed ``complaint_12315`` entry of ``station_id`` is not one the bank accepts, as its rejection
    reason, or None: ``complaint_problem``'s, or ``complaint_bad_number`` for a number that is not the entry's own
    (``number_problem``). The bank (``sync_server.posting_rules``) and a journal's verifier
    (``station.protocol.journal_checks``) both ask this."""
    problem = complaint_problem(payload)
    if problem is not None:
        return problem
    try:
        ts = parse_utc(payload["ts"])
    except (KeyError, TypeError, ValueError):
        return "complaint_bad_number"
    if number_problem(payload.get("complaint_no"), station_id, payload.get("seq"), ts):
        return "complaint_bad_number"
    return None
