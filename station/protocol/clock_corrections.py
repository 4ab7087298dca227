"""A clock correction as both sides check it: the ``clock_corrected`` entry's arithmetic, pure code.

A station whose clock ran ahead and was then set right reads earlier than the latest moment it wrote down (its
``clock_floor``) and refuses to record (``station.device_state``). The technician's override, ``station clock
accept``, journals a ``clock_corrected`` entry stamped with the clock as it reads now (``ts``), naming the floor
the clock was behind (``floor``, in ``utc_text``'s form) and by how much (``behind_ms``). The three say the same
thing twice, so anyone can check them: ``behind_ms`` is exactly ``floor`` minus ``ts`` in milliseconds, and more
than ``CLOCK_TOLERANCE_MS`` (a clock behind by less was never refused). The station checks this before it signs
(``station.clock``), the bank when the entry arrives (``sync_server.posting_rules``): a correction that does not
add up is ``malformed_entry``.

Pure code: no Flask or peewee import (the server imports it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import is_integer

#: How far a clock may read behind the station's floor and still be right (``station.device_state``): NTP steps a
#: drifting clock back by a fraction of a second, and two requests may read the clock in one order and write in
#: the other. A correction is of a clock behind by more.
CLOCK_TOLERANCE_MS = 5_000
CLOCK_TOLERANCE = timedelta(milliseconds=CLOCK_TOLERANCE_MS)

_MILLISECOND = timedelta(milliseconds=1)


def exact_utc(text) -> datetime | None:
    """The moment ``text`` names when it is in ``utc_text``'s form exactly (``2026-11-05T01:30:00.000Z``), else
    None: a correction's floor has one spelling, as the journal's ``ts`` has."""
    if not isinstance(text, str) or len(text) != 24:
        return None
    try:
        moment = parse_utc(text)
        return moment if utc_text(moment) == text else None
    except (ValueError, OverflowError):
        return None


def behind_ms(floor: datetime, moment: datetime) -> int | None:
    """How many milliseconds ``moment`` is behind ``floor``, when that is a whole number of them; else None."""
    gap = floor - moment
    return gap // _MILLISECOND if gap % _MILLISECOND == timedelta(0) else None


def correction_problem(payload: dict, previous_ts=None) -> str | None:
    """Why a ``clock_corrected`` payload (already of the registry's shape) does not add up, in words; None when it
    does: ``floor`` in ``utc_text``'s form, ``ts`` a UTC time, ``behind_ms`` exactly ``floor - ts`` and more than
    ``CLOCK_TOLERANCE_MS``; and, given ``previous_ts`` (the ``ts`` of the entry before it, when known and a UTC
    time), a floor no earlier than it: the journal's last entry is one of the floor's parts."""
    floor = exact_utc(payload.get("floor"))
    if floor is None:
        return f"floor {payload.get('floor')!r} is not a UTC time in the journal's form"
    try:
        moment = parse_utc(payload.get("ts"))
    except (TypeError, ValueError, OverflowError):
        return f"ts {payload.get('ts')!r} is not a UTC time"
    gap = behind_ms(floor, moment)
    if gap is None:
        return f"floor − ts ({floor - moment}) is not a whole number of milliseconds"
    if not is_integer(payload.get("behind_ms")) or gap != payload["behind_ms"]:
        return f"behind_ms is {payload.get('behind_ms')!r}, but floor − ts is {gap} ms"
    if gap <= CLOCK_TOLERANCE_MS:
        return f"behind_ms {gap} is not beyond the clock tolerance ({CLOCK_TOLERANCE_MS} ms): nothing to correct"
    try:
        before = parse_utc(previous_ts) if isinstance(previous_ts, str) else None
    except (ValueError, OverflowError):
        before = None
    if before is not None and floor < before:
        return f"floor {payload['floor']} is earlier than the entry before it ({previous_ts}), one of its parts"
    return None
