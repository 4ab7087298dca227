"""Benchmark: the sync server ingesting signed, encrypted batches of 500 entries on PostgreSQL.

``entries_per_s``: sealed batches prepared in advance, then each opened (decrypt, verify every signature and the
chain), applied to the ledger and answered with a signed ack and sealed downlink by the same function the API
calls (``sync_server.service.ingest``), in-process, one batch after another. ``copy_rows_per_s``: a raw COPY of
the same entry rows (station_id, seq, type, txn, token) into an unlogged scratch table, in the same run: the floor
no ingest can beat. ``ratio_to_copy`` = entries_per_s / copy_rows_per_s.
Goal: entries_per_s >= 5,000 on a 2-core machine, ratio_to_copy >= 0.2.

Run: .venv/bin/python tests/bench/server_ingest.py [--entries 10000]
(uses $DATABASE_URL or $TEST_DATABASE_URL as the PostgreSQL server; creates and drops its own database).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import append_deposits, emit, prepare_server, serve  # noqa: E402

from station.journal import iter_entries  # noqa: E402
from station.sync import build_batch, enroll_station, sync_once  # noqa: E402


def main() -> None:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    admin_url = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql://postgres@127.0.0.1:5432/test"
    name = f"sk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunparse(urlparse(admin_url)._replace(path=f"/{name}"))
    try:
        run(url, args)
    finally:
        from sync_server.db import db_proxy

        if db_proxy.obj is not None and not db_proxy.obj.is_closed():
            db_proxy.obj.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, args) -> None:
    import psycopg

    from sync_server import database_for
    from sync_server.keys import load_keys
    from sync_server.service import ingest

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepared = prepare_server(folder, url, ["ST-0001"])
        base, _ = serve(url, prepared["keys_dir"])
        st = enroll_station(folder / "station", base, prepared["codes"]["ST-0001"])
        sync_once(st)
        append_deposits(st, args.entries)
        acked = st.setting("acked_seq")
        batches = []
        for start in range(0, args.entries, args.batch):
            st.set_setting("acked_seq", acked + start)
            st.config["sync"] = {"max_entries": args.batch, "max_bytes": 4 * 1024 * 1024}
            batches.append(build_batch(st))
        rows = [("ST-0001", seq, "deposit", None, token) for seq, token in iter_entries(after_seq=acked)]

        keys = load_keys(prepared["keys_dir"])
        database = database_for(url)
        database.connect(reuse_if_open=True)
        started = time.perf_counter()
        for sealed in batches:
            batch_started = time.perf_counter()
            ingest(keys, "ST-0001", {**sealed.headers}, sealed.body)
            emit({"batch_first": sealed.first, "entries": sealed.last - sealed.first + 1,
                  "seconds": round(time.perf_counter() - batch_started, 4)})
        seconds = time.perf_counter() - started
        entries_per_s = args.entries / seconds

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE UNLOGGED TABLE copy_floor (station_id text, seq bigint, type text, txn text, "
                         "token text, PRIMARY KEY (station_id, seq))")
            started = time.perf_counter()
            with conn.cursor() as cursor, cursor.copy(
                    "COPY copy_floor (station_id, seq, type, txn, token) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            copy_seconds = time.perf_counter() - started
        copy_rows_per_s = len(rows) / copy_seconds
        emit({
            "summary": True,
            "database": "postgresql",
            "entries": args.entries,
            "batch": args.batch,
            "seconds": round(seconds, 3),
            "entries_per_s": round(entries_per_s),
            "copy_rows_per_s": round(copy_rows_per_s),
            "ratio_to_copy": round(entries_per_s / copy_rows_per_s, 3),
            "goal_entries_per_s": 5000,
            "goal_ratio_to_copy": 0.2,
        })


if __name__ == "__main__":
    main()
