"""One representation for stored and sent times: ``utc_text`` writes the journal's ``ts`` form, ``parse_utc`` reads
it and the forms the previous release stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from station import limits
from station.db import PrintedReceipt
from station.protocol.times import parse_utc, utc_text

MOMENT = datetime(2026, 11, 28, 8, 10, 0, 123456, tzinfo=UTC)


def test_utc_text_is_the_journal_ts_form():
    assert utc_text(MOMENT) == "2026-11-28T08:10:00.123Z"
    assert utc_text(MOMENT.astimezone(timezone(timedelta(hours=8)))) == "2026-11-28T08:10:00.123Z"
    assert utc_text(MOMENT.replace(microsecond=0)) == "2026-11-28T08:10:00.000Z"


def test_a_naive_time_is_refused_both_ways():
    with pytest.raises(ValueError, match="naive"):
        utc_text(MOMENT.replace(tzinfo=None))
    with pytest.raises(ValueError, match="without an offset"):
        parse_utc("2026-11-28T08:10:00.123")


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-11-28T08:10:00.123Z", MOMENT.replace(microsecond=123000)),
    # What the previous release stored: isoformat() with +00:00, microseconds, milliseconds or no fraction.
    ("2026-11-28T08:10:00.123456+00:00", MOMENT),
    ("2026-11-28T08:10:00.123+00:00", MOMENT.replace(microsecond=123000)),
    ("2026-11-28T08:10:00+00:00", MOMENT.replace(microsecond=0)),
    ("2026-11-28T16:10:00.123456+08:00", MOMENT),
])
def test_parse_utc_reads_the_new_and_the_older_forms(text, moment):
    parsed = parse_utc(text)
    assert parsed == moment and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["yesterday", "", "2026-11-28T08:10:00.123Zulu", "0001-01-01T00:00:00+01:00"])
def test_parse_utc_refuses_what_is_not_a_time_with_a_value_error(text):
    with pytest.raises(ValueError):
        parse_utc(text)


moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@given(moments, moments)
def test_the_new_form_sorts_as_text_in_time_order(one, other):
    assert (utc_text(one) <= utc_text(other)) == (one.replace(microsecond=one.microsecond // 1000 * 1000)
                                                  <= other.replace(microsecond=other.microsecond // 1000 * 1000))
    assert parse_utc(utc_text(one)) == one.replace(microsecond=one.microsecond // 1000 * 1000)


@given(moments, moments)
def test_an_old_row_compares_with_a_new_now_as_text_to_the_millisecond_never_late(old, now):
    """``execute_after <= now`` in SQL over a mix: an old row is never found not due when it is due."""
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    for old_text in (old.isoformat(), old.isoformat(timespec="milliseconds")):
        if parse_utc(old_text) <= now:
            assert old_text <= utc_text(now)
        if old_text <= utc_text(now):
            assert parse_utc(old_text) < now + timedelta(milliseconds=1)


def test_a_station_database_of_the_previous_release_keeps_reading_its_times(station):
    """Rows and settings the previous release wrote (``+00:00``, microseconds) read beside this release's."""
    station.db.execute_sql('INSERT INTO "printed_receipt" ("seq", "first_printed_at", "prints") VALUES (?, ?, 1)',
                           (1, "2026-11-28T08:10:00.123456+00:00"))
    PrintedReceipt.create(seq=2, first_printed_at=MOMENT + timedelta(milliseconds=1))
    assert PrintedReceipt.get_by_id(1).first_printed_at == MOMENT
    assert station.db.execute_sql('SELECT "first_printed_at" FROM "printed_receipt" WHERE "seq" = 2').fetchone() == (
        "2026-11-28T08:10:00.124Z",)
    later = PrintedReceipt.select().where(PrintedReceipt.first_printed_at > MOMENT).order_by(PrintedReceipt.seq)
    assert [row.seq for row in later] == [2]

    station.set_setting("last_sync_at", "2026-11-28T08:10:00.123456+00:00")
    assert limits.last_sync_at(station) == MOMENT
