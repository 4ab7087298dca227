"""Timestamps, one representation for everything either side stores or sends.

``utc_text`` writes RFC 3339 in UTC with milliseconds and ``Z``, exactly ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the journal's
``ts``). Written this way, times of the same form sort as text in time order. ``parse_utc`` reads that form and
the older ones a previous release stored (offset ``+00:00``; microseconds, milliseconds or no fraction), so a
database or journal written before keeps reading; it refuses a time without an offset.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(moment: datetime) -> str:
    """``2026-11-28T08:10:00.123Z``: an aware ``moment`` in UTC, milliseconds (truncated), ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times are stored and sent in UTC, from aware datetimes only")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """The aware UTC datetime ``text`` names: ``utc_text``'s form or an older one with an offset; else ValueError."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without an offset: {text!r}")
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00: before the first representable UTC moment
        raise ValueError(f"time out of range: {text!r}") from exc
