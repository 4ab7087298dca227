"""Benchmark: the sync server ingesting signed, encrypted batches through gunicorn on PostgreSQL, with 1 and 2
workers, against the floor of the work no ingest can skip.

Each run has four parts, in turns (so a slow minute of a shared machine hurts all alike):
- ``--stations`` stations (default 2) drain their journals at once (``--entries`` deposits in all, into 20
  customers of each station whose only home it is, as at a real bank, where two stations rarely serve one customer at
  the same moment; in batches of
  ``--batch``; every batch but each station's last marked ``X-Sync-More``, as a draining station marks them) into
  ``sync-server serve`` as it runs in production: gunicorn's sync workers, each checking signatures on as many
  threads as ``serve`` gives it (``SYNC_SERVER_VERIFY_THREADS``: the cores over the workers). Three servers, fresh
  stations for each: 1 worker as ``serve --workers 1`` runs it (signatures on every core), 1 worker with the threads
  each of ``--workers`` gets, and ``--workers`` (default 2) workers. ``entries_per_s``: entries over the time from
  the first request to the last answer; ``server_cpu_us`` and ``database_cpu_us``: CPU time per entry of the
  gunicorn workers and of the PostgreSQL backends serving them (from /proc, so a busy machine changes them much
  less than it changes entries/s).
- the floor: every entry's Ed25519 signature verified on all cores (a process per core) plus a COPY of the entry
  rows (station_id, seq, type, txn, token) into an unlogged table, timed just before and just after the part with
  ``--workers`` workers (a shared machine's speed drifts within minutes): ``floor_entries_per_s`` = entries / (verify
  seconds + COPY seconds), each the mean of the two timings.

The summary gives the median of each figure over ``--runs`` runs (default 5: a shared machine's minutes differ):
``scaling`` = entries/s with ``--workers`` workers over 1 worker configured as each of them is (what adding workers
adds: anything they serialize on shows here), ``over_single_worker_all_cores`` = the same over 1 worker checking
signatures on every core (on a 2-core machine one such worker already keeps both cores partly busy, so a second
worker adds less), and ``ratio_to_floor`` = entries/s with ``--workers`` workers over the floor (medians of the
runs' ratios).
Goals on a quiet 2-core machine where PostgreSQL shares the cores: scaling >= 1.6, ratio_to_floor >= 0.5.

Run: .venv/bin/python tests/bench/server_ingest.py [--entries 10000] [--runs 5] [--workers 2]
(uses $DATABASE_URL or $TEST_DATABASE_URL as the PostgreSQL server, on this machine for the CPU figures; creates and
drops its own database).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import (  # noqa: E402
    at_once,
    bench_database,
    emit,
    serve,
    start_gunicorn,
)
from load_support import build_bank, own_accounts, record_deposits  # noqa: E402

from station.journal import iter_entries  # noqa: E402
from station.protocol.tokens import b64url_decode  # noqa: E402
from station.sync import build_batch, enroll_station, sync_once  # noqa: E402
from sync_server.cli import serve_verify_threads  # noqa: E402

#: Customers per station, each calling only that station home (tests/load_support.py): two stations' batches never
#: wait for each other's customer rows, as at a real bank.
CUSTOMERS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000, help="entries per part of a run, all stations")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stations", type=int, default=2, help="stations syncing at once")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with bench_database() as url:
        run(url, args)


class Prepared:
    """One station's journal as sealed batches, ready to send, and its entries as rows and signatures."""

    def __init__(self, station_id: str, batches: list, rows: list[tuple], public_key: bytes):
        self.station_id = station_id
        self.batches = batches
        self.rows = rows
        self.public_key = public_key


def prepare_station(folder: Path, base: str, code: str, station_id: str, entries: int, batch: int) -> Prepared:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from station.protocol.key_codecs import ed25519_public_from_jwk

    st = enroll_station(folder / station_id, base, code)
    sync_once(st)
    record_deposits(st, own_accounts(station_id, CUSTOMERS), entries)
    acked = st.setting("acked_seq")
    st.config["sync"] = {"max_entries": batch, "max_bytes": 4 * 1024 * 1024}
    batches = []
    for start in range(0, entries, batch):
        st.set_setting("acked_seq", acked + start)
        batches.append(build_batch(st))
    rows = [(station_id, seq, "deposit", None, token) for seq, token in iter_entries(st, after_seq=acked)]
    jwk = st.signer_for(acked + 1).key.as_dict(private=False)
    public = ed25519_public_from_jwk(jwk).public_bytes(Encoding.Raw, PublicFormat.Raw)
    st.close()
    return Prepared(station_id, batches, rows, public)


def drain(base: str, prepared: Prepared, finished: set) -> None:
    """Send one station's batches one after another, as its sync does; every answer must be 200."""
    with requests.Session() as http:
        for index, sealed in enumerate(prepared.batches):
            headers = dict(sealed.headers)
            if index < len(prepared.batches) - 1:
                headers["X-Sync-More"] = "1"
            response = http.post(f"{base}/api/v1/stations/{prepared.station_id}/batches", data=sealed.body,
                                 headers=headers, timeout=300)
            if response.status_code != 200:
                raise RuntimeError(f"{prepared.station_id}: {response.status_code} {response.text[:300]}")
    finished.add(prepared.station_id)


def ingest_through_gunicorn(url: str, keys_dir: Path, workers: int, threads: int, stations: list[Prepared]) -> dict:
    process, base = start_gunicorn(url, keys_dir, workers, threads)
    finished: set[str] = set()
    try:
        seconds, server_cpu, database_cpu = at_once(url, process.pid, [
            functools.partial(drain, base, prepared, finished) for prepared in stations])
    finally:
        process.terminate()
        process.wait(timeout=60)
    if len(finished) != len(stations):
        raise RuntimeError("a station's sync failed (see above)")
    entries = sum(len(prepared.rows) for prepared in stations)
    return {"workers": workers, "verify_threads": threads, "entries": entries, "seconds": round(seconds, 3),
            "entries_per_s": round(entries / seconds), "server_cpu_us": round(server_cpu / entries * 1e6),
            "database_cpu_us": round(database_cpu / entries * 1e6)}


# -- the floor ------------------------------------------------------------------------------------------------
def _verify_chunk(chunk: list[tuple[bytes, str]]) -> int:
    """Verify each (raw public key, JWS) pair's signature; how many verified."""
    keys: dict[bytes, Ed25519PublicKey] = {}
    for public, token in chunk:
        key = keys.get(public) or keys.setdefault(public, Ed25519PublicKey.from_public_bytes(public))
        signing_input, _, signature = token.rpartition(".")
        key.verify(b64url_decode(signature), signing_input.encode("ascii"))
    return len(chunk)


def floor(url: str, stations: list[Prepared], run: str) -> dict:
    """Seconds to verify every entry's signature on all cores, and to COPY the entry rows."""
    import psycopg

    work = [(prepared.public_key, row[4]) for prepared in stations for row in prepared.rows]
    cores = os.cpu_count() or 1
    size = -(-len(work) // cores)
    with ProcessPoolExecutor(cores) as pool:
        # Every process is up before the clock starts (the pool starts them as work comes).
        list(pool.map(time.sleep, [0.2] * cores))
        started = time.perf_counter()
        verified = sum(pool.map(_verify_chunk, [work[i:i + size] for i in range(0, len(work), size)]))
        verify_seconds = time.perf_counter() - started
    assert verified == len(work)
    rows = [row for prepared in stations for row in prepared.rows]
    table = f"copy_floor_{run}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE {table} (station_id text, seq bigint, type text, txn text, "
                     "token text, PRIMARY KEY (station_id, seq))")
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(
                f"COPY {table} (station_id, seq, type, txn, token) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        copy_seconds = time.perf_counter() - started
        conn.execute(f"DROP TABLE {table}")
    return _floor_figures(len(rows), verify_seconds, copy_seconds)


def _floor_figures(entries: int, verify_seconds: float, copy_seconds: float) -> dict:
    return {"floor": True, "entries": entries, "verify_seconds": round(verify_seconds, 4),
            "copy_seconds": round(copy_seconds, 4), "verify_per_s": round(entries / verify_seconds),
            "copy_rows_per_s": round(entries / copy_seconds),
            "floor_entries_per_s": round(entries / (verify_seconds + copy_seconds))}


def floor_around(url: str, stations: list[Prepared], run: int, part) -> tuple[dict, dict]:
    """The floor timed just before and just after ``part()`` (the measured ingest), and the part's result: a shared
    machine's speed drifts within minutes, and the ratio compares the two at the same moment."""
    before = floor(url, stations, f"{run}_before")
    result = part()
    after = floor(url, stations, f"{run}_after")
    return result, _floor_figures(before["entries"], (before["verify_seconds"] + after["verify_seconds"]) / 2,
                                  (before["copy_seconds"] + after["copy_seconds"]) / 2)


def run(url: str, args) -> None:
    from sync_server.db import db_proxy

    per_station = args.entries // args.stations
    cores = os.cpu_count() or 1
    # (label, workers, signature threads per worker): one worker as ``sync-server serve --workers 1`` runs it
    # (its signatures checked on every core), one worker with the threads each of the many gets, and the many.
    per_worker = serve_verify_threads(args.workers, cores)
    parts = [("one_all_cores", 1, serve_verify_threads(1, cores)), ("one", 1, per_worker),
             ("many", args.workers, per_worker)]
    station_ids = [f"ST-{n:04d}" for n in range(1, args.runs * len(parts) * args.stations + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        keys_dir = folder / "server-keys"
        codes = build_bank(url, keys_dir, station_ids, customers=CUSTOMERS)
        base, _ = serve(url, keys_dir)
        stations = iter([prepare_station(folder, base, codes[sid], sid, per_station, args.batch)
                         for sid in station_ids])
        db_proxy.obj.close()
        results = []
        for index in range(args.runs):
            by_workers = {}
            for label, workers, threads in parts:
                group = [next(stations) for _ in range(args.stations)]
                ingest = functools.partial(ingest_through_gunicorn, url, keys_dir, workers, threads, group)
                if label == "many":
                    by_workers[label], measured = floor_around(url, group, index, ingest)
                else:
                    by_workers[label] = ingest()
                emit({"run": index + 1, **by_workers[label]})
            emit({"run": index + 1, **measured})
            results.append((by_workers, measured))

    def median(values) -> float:
        return statistics.median(values)

    one = [r[0]["one"] for r in results]
    one_all_cores = [r[0]["one_all_cores"] for r in results]
    many = [r[0]["many"] for r in results]
    floors = [r[1] for r in results]
    emit({
        "summary": True,
        "database": "postgresql",
        "runs": args.runs,
        "entries": args.entries,
        "batch": args.batch,
        "stations": args.stations,
        "workers": args.workers,
        "verify_threads_per_worker": per_worker,
        "single_worker_entries_per_s": round(median(r["entries_per_s"] for r in one)),
        "single_worker_all_cores_entries_per_s": round(median(r["entries_per_s"] for r in one_all_cores)),
        "entries_per_s": round(median(r["entries_per_s"] for r in many)),
        "scaling": round(median(m["entries_per_s"] / o["entries_per_s"] for o, m in zip(one, many, strict=True)), 2),
        "over_single_worker_all_cores": round(median(m["entries_per_s"] / o["entries_per_s"]
                                                     for o, m in zip(one_all_cores, many, strict=True)), 2),
        "server_cpu_us_per_entry": round(median(r["server_cpu_us"] for r in many)),
        "database_cpu_us_per_entry": round(median(r["database_cpu_us"] for r in many)),
        "verify_all_cores_per_s": round(median(f["verify_per_s"] for f in floors)),
        "copy_rows_per_s": round(median(f["copy_rows_per_s"] for f in floors)),
        "floor_entries_per_s": round(median(f["floor_entries_per_s"] for f in floors)),
        "ratio_to_floor": round(median(m["entries_per_s"] / f["floor_entries_per_s"]
                                       for m, f in zip(many, floors, strict=True)), 3),
        "goal_scaling": 1.6,
        "goal_ratio_to_floor": 0.5,
    })


if __name__ == "__main__":
    main()
