"""Benchmark: the sync server ingesting signed, encrypted batches of 500 entries on PostgreSQL.

``entries_per_s``: sealed batches prepared in advance, then each opened (decrypt, verify every signature and the
chain), applied to the ledger and answered with a signed ack and sealed downlink by the same function the API
calls (``sync_server.service.ingest``), in-process, one batch after another, every batch but the last marked
``X-Sync-More`` as a draining station marks them. ``copy_rows_per_s``: a raw COPY of
the same entry rows (station_id, seq, type, txn, token) into an unlogged scratch table, in the same run: the floor
no ingest can beat. ``ratio_to_copy`` = entries_per_s / copy_rows_per_s.
With ``--workers N`` (default 2, one per core) N processes ingest N stations' batches at once, as N gunicorn
workers would; ``single_worker_entries_per_s`` is measured first with one process.
Goal: entries_per_s >= 5,000 on a 2-core machine, ratio_to_copy >= 0.2.

Run: .venv/bin/python tests/bench/server_ingest.py [--entries 10000] [--workers 2]
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
    parser.add_argument("--workers", type=int, default=2)
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


def _ingest_all(url: str, keys_dir: str, station_id: str, batches: list, start_at: float) -> float:
    """Ingest ``batches`` in this process (its own connection); returns the seconds it took."""
    from sync_server import database_for
    from sync_server.keys import load_keys
    from sync_server.service import ingest

    keys = load_keys(keys_dir)
    database = database_for(url)
    database.connect(reuse_if_open=True)
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    for index, sealed in enumerate(batches):
        # As a station drains: every batch but the last says another follows (the downlink comes once).
        more = {"X-Sync-More": "1"} if index < len(batches) - 1 else {}
        ingest(keys, station_id, {**sealed.headers, **more}, sealed.body)
    seconds = time.perf_counter() - started
    database.close()
    return seconds


def _prepare_station(folder: Path, base: str, code: str, station_id: str, entries: int, batch: int):
    st = enroll_station(folder / station_id, base, code)
    sync_once(st)
    append_deposits(st, entries)
    acked = st.setting("acked_seq")
    st.config["sync"] = {"max_entries": batch, "max_bytes": 4 * 1024 * 1024}
    batches = []
    for start in range(0, entries, batch):
        st.set_setting("acked_seq", acked + start)
        batches.append(build_batch(st))
    rows = [(station_id, seq, "deposit", None, token) for seq, token in iter_entries(st, after_seq=acked)]
    st.close()
    return batches, rows


def run(url: str, args) -> None:
    import multiprocessing

    import psycopg

    from sync_server.db import db_proxy

    workers = max(1, args.workers)
    station_ids = [f"ST-{n:04d}" for n in range(1, workers + 2)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepared = prepare_server(folder, url, station_ids)
        base, _ = serve(url, prepared["keys_dir"])
        keys_dir = str(prepared["keys_dir"])
        per_station = args.entries // workers
        single_batches, _ = _prepare_station(folder, base, prepared["codes"][station_ids[0]], station_ids[0],
                                             per_station, args.batch)
        parallel = [_prepare_station(folder, base, prepared["codes"][sid], sid, per_station, args.batch)
                    for sid in station_ids[1:]]
        db_proxy.obj.close()
        context = multiprocessing.get_context("fork")

        with context.Pool(1) as pool:
            single_seconds = pool.apply(_ingest_all, (url, keys_dir, station_ids[0], single_batches, 0))
        emit({"workers": 1, "entries": per_station, "seconds": round(single_seconds, 3)})

        start_at = time.time() + 1.0
        with context.Pool(workers) as pool:
            jobs = [pool.apply_async(_ingest_all, (url, keys_dir, sid, batches, start_at))
                    for sid, (batches, _) in zip(station_ids[1:], parallel, strict=True)]
            per_worker = [job.get() for job in jobs]
        seconds = max(per_worker)
        total = per_station * workers
        emit({"workers": workers, "entries": total, "seconds": round(seconds, 3),
              "per_worker_seconds": [round(x, 3) for x in per_worker]})

        rows = [row for _, station_rows in parallel for row in station_rows]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE UNLOGGED TABLE copy_floor (station_id text, seq bigint, type text, txn text, "
                         "token text, PRIMARY KEY (station_id, seq))")
            started = time.perf_counter()
            with conn.cursor() as cursor, cursor.copy(
                    "COPY copy_floor (station_id, seq, type, txn, token) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            copy_seconds = time.perf_counter() - started
        entries_per_s = total / seconds
        copy_rows_per_s = len(rows) / copy_seconds
        emit({
            "summary": True,
            "database": "postgresql",
            "entries": total,
            "batch": args.batch,
            "workers": workers,
            "seconds": round(seconds, 3),
            "entries_per_s": round(entries_per_s),
            "single_worker_entries_per_s": round(per_station / single_seconds),
            "copy_rows_per_s": round(copy_rows_per_s),
            "ratio_to_copy": round(entries_per_s / copy_rows_per_s, 3),
            "goal_entries_per_s": 5000,
            "goal_ratio_to_copy": 0.2,
        })


if __name__ == "__main__":
    main()
