"""One demo catalogue for both sides: a demo station and the bank's demo server know the same billers."""

from __future__ import annotations

import csv
import io

from playhouse.shortcuts import model_to_dict
from sync_support import enrolled_station, server_db

from station.db import Biller
from station.protocol.demo_data import demo_billers
from sync_server.admin import BILLER_COLUMNS, parse_billers_csv
from sync_server.db import Biller as BankBiller


def station_billers(st) -> list[dict]:
    with st.db.bind_ctx([Biller]):
        return [model_to_dict(biller) for biller in Biller.select().order_by(Biller.code)]


def by_code(billers: list[dict]) -> list[dict]:
    return sorted(billers, key=lambda biller: biller["code"])


def test_a_demo_station_knows_the_billers_the_bank_downlinks(server, tmp_path, clock, make_station):
    local = make_station("ST-0009", customers=1)  # station init --demo: billers loaded on the device
    enrolled = enrolled_station(server, tmp_path / "enrolled", "ST-0001", clock)  # billers from the downlink
    server_db()
    at_the_bank = [model_to_dict(b) for b in BankBiller.select().order_by(BankBiller.code)]

    assert at_the_bank == by_code(demo_billers())
    assert station_billers(local) == at_the_bank
    assert station_billers(enrolled) == at_the_bank


def test_the_demo_billers_pass_the_banks_billers_import():
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=BILLER_COLUMNS)
    writer.writeheader()
    for biller in demo_billers():
        writer.writerow({key: ";".join(map(str, value)) if isinstance(value, list) else value
                         for key, value in biller.items()})
    assert parse_billers_csv(out.getvalue()) == demo_billers()


def test_demo_billers_are_fresh_copies():
    billers = demo_billers()
    billers[3]["ref_prefixes"].append("999")
    assert "999" not in demo_billers()[3]["ref_prefixes"]


def test_the_demo_station_has_a_morning_that_already_happened(server, tmp_path):
    """./run.sh demo: the activity never runs ahead of the real clock, so the station serves and records at once."""
    from datetime import UTC, datetime

    from station.db import JournalEntry
    from station.device_state import device_state
    from station.simulate import enroll_demo_station
    from sync_server.admin import add_station

    server_db()
    for now, day in ((datetime(2026, 11, 2, 2, 30, tzinfo=UTC), "2026-11-02"),   # 10:30 in Beijing: today's
                     (datetime(2026, 11, 2, 22, 30, tzinfo=UTC), "2026-11-02")):  # 06:30 the next day: yesterday's
        station_id = f"ST-00{now.hour:02d}"
        st = enroll_demo_station(tmp_path / station_id, server.url, add_station(station_id, "Demo"), now=now)
        try:
            with st.bound():
                times = [entry.recorded_at for entry in JournalEntry.select()]
                assert max(times) <= now and len(times) > 5
                assert {t.astimezone(st.timezone).date().isoformat() for t in times} == {day}
            st.clock = lambda now=now: now  # the real clock at that moment
            assert device_state(st).value == "ready"
        finally:
            st.close()
