"""Recon's core on a simulated history: a clean day reports nothing, and the report is well-formed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync_support import enrolled_station, server_db

from station.journal import journal_head
from station.simulate import simulate
from station.sync import sync_once
from sync_server.recon.context import Scope
from sync_server.recon.run import find_discrepancies


def test_a_simulated_day_at_two_stations_reconciles_clean(server, tmp_path, clock):
    # Enrolled three hours ago (a station records nothing with a clock behind its journal), then the simulated
    # hours; the stations' clock agrees with the bank's when they sync (else: clock_offset).
    clock.now = datetime.now(UTC) - timedelta(hours=3)
    stations = [enrolled_station(server, tmp_path, station_id, clock) for station_id in ("ST-0001", "ST-0002")]
    start = clock.now
    for seed, st in enumerate(stations, start=1):
        clock.now = start
        simulate(st, 40, seed=seed, start=start)
        clock.now = datetime.now(UTC)
        assert sync_once(st)
    database = server_db()
    findings = find_discrepancies(database, Scope(), datetime.now(UTC))
    assert [(d.kind, d.station, d.seq, d.detail) for d in findings.discrepancies] == []
    # Every entry the two stations journaled is counted: 40 operations each (less the refused ones, which journal
    # nothing; how many depends on the hour the simulation starts at), days opened and closed, agents added.
    assert findings.entries == sum(journal_head(st)[0] for st in stations) >= 60
    assert all(proof["head_verified"] for proof in findings.stations)
