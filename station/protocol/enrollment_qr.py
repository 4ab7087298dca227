"""What an enrollment QR carries: the bank's server, the station id and the one-time code, as one line of ASCII.

``stationkit:enroll?v=1&station=ST-0001&code=K7QX-M2PD-9HWT&server=https://sync.bank.example:8800``

A USB scanner types the QR like a keyboard, so the payload is plain ASCII that every keyboard layout has (the
server URL percent-encoded where it needs to be) and ends with no control character. The printed sheet shows the
code and the server beside the QR, for typing when there is no scanner. docs/operations.md describes the sheet.

Pure code: no Flask or peewee import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from station.protocol.entry_types import N_

SCHEME = "stationkit"
VERSION = "1"
#: A station id as ``sync-server station add`` accepts it.
STATION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
#: The code's alphabet (no 0/O, 1/I): 12 characters, written in groups of 4 with dashes.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12


class NotAnEnrollmentCode(ValueError):
    """Text that is neither an enrollment QR payload nor a typed code; the message says what is wrong.

    Messages are marked ``N_``: the station's set-up screen shows them translated (``gettext(str(exc))``)."""


@dataclass(frozen=True)
class EnrollmentTicket:
    """What the station needs to enroll: the server's base URL, the code, and (from a QR) the station id."""

    server: str | None
    code: str
    station_id: str | None = None


def normalise_code(text: str) -> str:
    """A code as the server stores it: capitals and digits only (dashes, spaces and case ignored)."""
    return "".join(ch for ch in str(text or "").upper() if ch.isascii() and ch.isalnum())


def format_code(code: str) -> str:
    """``K7QXM2PD9HWT`` -> ``K7QX-M2PD-9HWT``."""
    code = normalise_code(code)
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def check_server_url(url: str) -> str:
    """An http(s) base URL without query or fragment, trailing slash removed; raises :class:`NotAnEnrollmentCode`."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise NotAnEnrollmentCode(N_("the server address must look like https://sync.bank.example"))
    if not url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise NotAnEnrollmentCode(N_("the server address holds characters a URL cannot"))
    return url.rstrip("/")


def make_payload(server: str, station_id: str, code: str) -> str:
    """The QR payload for one station's code."""
    server = check_server_url(server)
    if not STATION_ID_PATTERN.fullmatch(station_id):
        raise ValueError(f"not a station id: {station_id!r}")
    return (f"{SCHEME}:enroll?v={VERSION}&station={station_id}&code={format_code(code)}"
            f"&server={quote(server, safe=':/')}")


def _check_code(code: str) -> str:
    normal = normalise_code(code)
    if len(normal) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in normal):
        raise NotAnEnrollmentCode(N_("an enrollment code is 12 letters and digits, like K7QX-M2PD-9HWT"))
    return format_code(normal)


def parse(text: str) -> EnrollmentTicket:
    """Read what the scanner or the technician typed: a QR payload, or a bare code (``server`` is then None).

    Surrounding spaces and a trailing newline (scanners end with Enter) are ignored; anything else that is not
    exactly a payload of this version, or a 12-character code, raises :class:`NotAnEnrollmentCode`."""
    text = (text or "").strip()
    if not text:
        raise NotAnEnrollmentCode(N_("nothing was scanned or typed"))
    if len(text) > 2048 or not text.isascii() or not text.isprintable():
        raise NotAnEnrollmentCode(N_("this is not an enrollment QR: it holds characters the bank's QR never has"))
    if not text.lower().startswith(f"{SCHEME}:"):
        return EnrollmentTicket(None, _check_code(text))
    parts = urlsplit(text)
    if parts.scheme.lower() != SCHEME or parts.path != "enroll":
        raise NotAnEnrollmentCode(N_("this QR is not a station enrollment QR"))
    try:
        fields = parse_qs(parts.query, strict_parsing=True, max_num_fields=8)
    except ValueError as exc:
        raise NotAnEnrollmentCode(N_("this enrollment QR is damaged: scan it again")) from exc
    if any(len(values) != 1 for values in fields.values()) or set(fields) != {"v", "station", "code", "server"}:
        raise NotAnEnrollmentCode(N_("this enrollment QR is damaged: scan it again"))
    if fields["v"][0] != VERSION:
        raise NotAnEnrollmentCode(N_("this enrollment QR is from a newer release: update the station software"))
    station_id = fields["station"][0]
    if not STATION_ID_PATTERN.fullmatch(station_id):
        raise NotAnEnrollmentCode(N_("this enrollment QR names no valid station"))
    return EnrollmentTicket(check_server_url(fields["server"][0]), _check_code(fields["code"][0]), station_id)
