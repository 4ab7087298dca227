"""Shared set-up of the sync benchmarks (not collected by pytest: no test_ prefix).

A sync server with keys and demo data in a temporary folder, served by waitress on loopback, and an enrolled
station whose journal gets ``count`` deposit entries appended directly (signed as the services sign them); the sync
server as production runs it (gunicorn), and the CPU time of its workers and of their PostgreSQL backends.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests
from waitress.server import create_server

from station.db import Customer
from station.journal import append_entry
from sync_server import create_app
from sync_server.admin import add_station, load_demo_data
from sync_server.db import connect_url, db_proxy, migrate_database
from sync_server.keys import create_keys

ROOT = Path(__file__).resolve().parents[2]
#: Every client of a benchmark is on loopback, one address: the server's rate limits (docs/operations.md) are off.
LOAD_TEST_CONFIG = {"SYNC_SERVER_RATE_LIMITS": "off"}


@contextmanager
def bench_database():
    """A PostgreSQL database of the benchmark's own on the server of ``$DATABASE_URL`` or ``$TEST_DATABASE_URL``
    (default: local), dropped afterwards: its URL."""
    import psycopg

    admin_url = os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or "postgresql://postgres@127.0.0.1:5432/test"
    name = f"sk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(urlparse(admin_url)._replace(path=f"/{name}"))
    finally:
        if db_proxy.obj is not None and not db_proxy.obj.is_closed():
            db_proxy.obj.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def prepare_server(folder: Path, database_url: str, station_ids: list[str]) -> dict:
    keys_dir = folder / "keys"
    create_keys(keys_dir)
    database = connect_url(database_url)
    db_proxy.initialize(database)
    database.connect()
    migrate_database(database)
    load_demo_data(station_ids)
    codes = {station_id: add_station(station_id, "bench") for station_id in station_ids}
    database.close()
    return {"keys_dir": keys_dir, "codes": codes}


def serve(database_url: str, keys_dir: Path):
    app = create_app({"DATABASE_URL": database_url, "SYNC_SERVER_KEYS_DIR": str(keys_dir), **LOAD_TEST_CONFIG})
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", app


def enrolled_bench_station(folder: Path, database_url: str | None):
    """A sync server (SQLite in ``folder`` unless ``database_url``) serving on loopback, and station ST-0001
    enrolled with it in ``folder / "station"``: (station, database URL)."""
    from station.sync import enroll_station

    url = database_url or f"sqlite:///{folder / 'server.db'}"
    prepared = prepare_server(folder, url, ["ST-0001"])
    base, _ = serve(url, prepared["keys_dir"])
    return enroll_station(folder / "station", base, prepared["codes"]["ST-0001"]), url


def append_deposits(st, count: int) -> None:
    """``count`` deposits of 100 yuan spread over the station's customers, one minute apart."""
    with st.bound():
        accounts = [c.account_id for c in Customer.select().order_by(Customer.account_id)]
        moment = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
        with st.db.atomic():
            for index in range(count):
                moment += timedelta(seconds=61)
                append_entry(st, "deposit", moment,
                             {"agent": "A01", "account": accounts[index % len(accounts)], "amount": 10_000},
                             txn=str(uuid.uuid4()))


# -- gunicorn, and the CPU time of its workers and of their PostgreSQL backends -------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(url: str, keys_dir: Path, workers: int, verify_threads: int | None = None
                   ) -> tuple[subprocess.Popen, str]:
    """``sync-server serve`` as production runs it: gunicorn's sync workers on ``sync_server.wsgi:app``, each
    checking signatures on ``verify_threads`` threads (default: as ``serve`` sets them, the cores over the
    workers)."""
    from sync_server import VERIFY_THREADS_SETTING
    from sync_server.cli import serve_verify_threads

    port = free_port()
    threads = verify_threads or serve_verify_threads(workers)
    env = {**os.environ, "DATABASE_URL": url, "SYNC_SERVER_KEYS_DIR": str(keys_dir), **LOAD_TEST_CONFIG,
           VERIFY_THREADS_SETTING: str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
                                f"127.0.0.1:{port}", "--log-level", "warning", "sync_server.wsgi:app"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with status {process.returncode}")
            try:
                requests.get(f"{base}/api/v1/health", timeout=30).raise_for_status()
            except requests.ConnectionError:
                time.sleep(0.2)
                continue
            # Every worker answers once before the clock starts (each imports and connects on first use).
            for _ in range(workers * 4):
                requests.get(f"{base}/api/v1/health", timeout=30).raise_for_status()
            return process, base
        raise RuntimeError("gunicorn did not answer within two minutes")
    except BaseException:
        process.kill()
        process.wait()
        raise


def cpu_seconds(pids) -> float:
    """utime + stime of these processes (0 for one that has gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def backend_pids(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]


def at_once(url: str, server_pid: int, jobs: list) -> tuple[float, float, float]:
    """Run each of ``jobs`` (callables without arguments) on its own thread, all released at the same moment: the
    seconds until the last one ended, and the CPU seconds meanwhile of the gunicorn workers of ``server_pid`` and
    of the PostgreSQL backends of ``url``'s database."""
    worker_pids = children(server_pid)
    backends = backend_pids(url)
    server_before, database_before = cpu_seconds(worker_pids), cpu_seconds(backends)
    start = threading.Barrier(len(jobs) + 1)

    def released(job) -> None:
        start.wait()
        job()

    threads = [threading.Thread(target=released, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    # The pools' connections were opened during the run: their backends' CPU is the run's.
    backends = sorted(set(backends) | set(backend_pids(url)))
    return seconds, cpu_seconds(worker_pids) - server_before, cpu_seconds(backends) - database_before
