"""Many stations syncing at once (issue 13, "Load"): 50 stations enrolled with one bank record deposits offline,
then all sync at the same moment, each on its own thread with its own sync (several batches each, retries as in the
field). No sync fails, every station's journal is at the bank exactly once and byte for byte, every deposit is
posted once, and the ledger checks clean; on SQLite and on PostgreSQL (``TEST_DATABASE_URL``).

The figures (1,000 stations against gunicorn on PostgreSQL, p99 latency) are the benchmark's:
tests/bench/many_stations.py. This test never times anything.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from load_support import build_bank, enroll_all, own_accounts, record_deposits
from peewee import fn
from sync_support import journal, serve_in_thread, server_db, stop_server

from station.sync import sync_once
from sync_server import create_app
from sync_server.checks import check_ledger
from sync_server.db import Entry, Posting
from sync_server.db import Station as ServerStation

STATIONS = 50
DEPOSITS = 12


def test_fifty_stations_syncing_at_once_all_converge(database_url, tmp_path):
    station_ids = [f"ST-{n:04d}" for n in range(1, STATIONS + 1)]
    codes = build_bank(database_url, tmp_path / "server-keys", station_ids)
    # All 50 stations enroll and sync from one address, loopback: the rate limits are for the field.
    app = create_app({"DATABASE_URL": database_url, "SYNC_SERVER_KEYS_DIR": str(tmp_path / "server-keys"),
                      "SYNC_SERVER_RATE_LIMITS": "off"})
    url, waitress, thread = serve_in_thread(app)
    stations = []
    try:
        stations = enroll_all(tmp_path / "stations", url, codes)
        for st in stations:
            record_deposits(st, own_accounts(st.station_id), DEPOSITS)
            st.config["sync"] = {"max_entries": 5}  # three batches each: the first two say another follows
        start = threading.Barrier(STATIONS)

        def sync(st):
            start.wait()
            return sync_once(st, sleep=lambda seconds: None)

        with ThreadPoolExecutor(STATIONS) as pool:
            results = list(pool.map(sync, stations))

        # The start entry and the deposits: all acknowledged, none rejected, nothing left to send.
        assert {(r.entries, r.acked_seq, r.pending, len(r.rejected)) for r in results} == {(DEPOSITS + 1,
                                                                                           DEPOSITS + 1, 0, 0)}
        server_db()
        for st in stations:
            held = list(Entry.select(Entry.seq, Entry.token).where(Entry.station_id == st.station_id)
                        .order_by(Entry.seq).tuples())
            assert held == journal(st), st.station_id
        assert set(ServerStation.select(ServerStation.acked_seq, ServerStation.synced_seq).tuples()) == {
            (DEPOSITS + 1, DEPOSITS + 1)}
        deposits = dict(Posting.select(Posting.station_id, fn.SUM(Posting.amount_fen))
                        .where(Posting.memo == "deposit").group_by(Posting.station_id).tuples())
        assert deposits == {station_id: -DEPOSITS * 10_000 for station_id in station_ids}
        assert check_ledger() == []
    finally:
        for st in stations:
            st.close()
        stop_server(waitress, thread)
        if not server_db().is_closed():
            server_db().close()
