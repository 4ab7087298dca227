"""Benchmark: 1,000 stations syncing at once against gunicorn on PostgreSQL (loopback).

The bank (tests/load_support.py) has ``--stations`` stations, each with customers only it calls home. The stations
enroll with the real ``enroll_station`` against gunicorn, ``--threads`` at a time (``enroll_seconds``), each records
``--deposits`` deposits offline and seals its batch (start entry and deposits). Then every station sends its batch
at the same moment, each on its own connection (gunicorn's sync workers take them from the listen queue in turn):
``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` from a station's request to the bank's answer, ``errors`` (anything
but 200: must be 0), ``entries_per_s`` over the burst, and the CPU per entry of the workers and of their PostgreSQL
backends. Then each station opens its answer with its own sync code (signature, its range, the downlink) and the
bank must hold every station's journal exactly (``converged``: every station) and check clean (``ledger_sound``).

Run: .venv/bin/python tests/bench/many_stations.py [--stations 1000] [--deposits 10] [--workers 2]
(uses $DATABASE_URL or $TEST_DATABASE_URL as the PostgreSQL server, on this machine for the CPU figures; creates and
drops its own database).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import at_once, bench_database, emit, start_gunicorn  # noqa: E402
from load_support import build_bank, enroll_all, own_accounts, record_deposits  # noqa: E402

from station.journal import iter_entries  # noqa: E402
from station.sync import apply_ack, build_batch, open_answer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--deposits", type=int, default=10, help="entries each station records before the burst")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=16, help="stations enrolling at a time")
    args = parser.parse_args()
    with bench_database() as url:
        run(url, args)


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def run(url: str, args) -> None:
    from sync_server.checks import check_ledger
    from sync_server.db import Entry, db_proxy

    station_ids = [f"ST-{n:04d}" for n in range(1, args.stations + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        codes = build_bank(url, folder / "server-keys", station_ids)
        bank_seconds = time.perf_counter() - started
        process, base = start_gunicorn(url, folder / "server-keys", args.workers)
        stations = []
        try:
            started = time.perf_counter()
            stations = enroll_all(folder / "stations", base, codes, threads=args.threads)
            enroll_seconds = time.perf_counter() - started
            started = time.perf_counter()
            batches = []
            for st in stations:
                record_deposits(st, own_accounts(st.station_id), args.deposits)
                batches.append(build_batch(st, max_entries=args.deposits + 1))
            seal_seconds = time.perf_counter() - started
            emit({"stations": len(stations), "bank_seconds": round(bank_seconds, 1),
                  "enroll_seconds": round(enroll_seconds, 1), "record_and_seal_seconds": round(seal_seconds, 1)})

            answers: list = [None] * len(stations)
            latencies: list = [None] * len(stations)

            def send(index: int) -> None:
                sealed = batches[index]
                sent = time.perf_counter()
                try:
                    answers[index] = requests.post(f"{base}/api/v1/stations/{sealed.station_id}/batches",
                                                   data=sealed.body, headers=sealed.headers, timeout=600)
                except requests.RequestException as exc:
                    answers[index] = exc
                latencies[index] = time.perf_counter() - sent

            burst_seconds, server_cpu, database_cpu = at_once(url, process.pid, [
                functools.partial(send, index) for index in range(len(stations))])
        finally:
            process.terminate()
            process.wait(timeout=60)

        errors = {}
        converged = 0
        for st, sealed, answer in zip(stations, batches, answers, strict=True):
            if not isinstance(answer, requests.Response) or answer.status_code != 200:
                errors[st.station_id] = str(answer) if not isinstance(answer, requests.Response) else \
                    f"{answer.status_code} {answer.text[:200]}"
                continue
            # The station's own code checks the answer (signature, range, downlink) and applies it.
            apply_ack(st, open_answer(st, answer.json()), sealed)
        database = db_proxy.obj
        database.connect(reuse_if_open=True)
        for st in stations:
            with st.bound():
                own = list(iter_entries(st))
            held = list(Entry.select(Entry.seq, Entry.token).where(Entry.station_id == st.station_id)
                        .order_by(Entry.seq).tuples())
            converged += held == own and st.setting("acked_seq") == own[-1][0]
        failures = check_ledger()
        database.close()
        for st in stations:
            st.close()
        for station_id, error in list(errors.items())[:5]:
            emit({"error": station_id, "detail": error})
        entries = sum(sealed.last - sealed.first + 1 for sealed in batches)
        times_ms = [seconds * 1000 for seconds in latencies]
        emit({
            "summary": True,
            "database": "postgresql",
            "workers": args.workers,
            "stations": len(stations),
            "entries": entries,
            "errors": len(errors),
            "converged": converged,
            "ledger_sound": not failures,
            "burst_seconds": round(burst_seconds, 2),
            "entries_per_s": round(entries / burst_seconds),
            "p50_ms": round(statistics.median(times_ms)),
            "p95_ms": round(percentile(times_ms, 0.95)),
            "p99_ms": round(percentile(times_ms, 0.99)),
            "max_ms": round(max(times_ms)),
            "server_cpu_ms_per_sync": round(server_cpu / len(stations) * 1000, 1),
            "database_cpu_ms_per_sync": round(database_cpu / len(stations) * 1000, 1),
            "enroll_seconds": round(enroll_seconds, 1),
        })


if __name__ == "__main__":
    main()
