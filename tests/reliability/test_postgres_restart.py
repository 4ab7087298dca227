"""PostgreSQL restarted (``pg_ctl restart -m immediate``: its processes killed, crash recovery at start) while a
station's batches flow into the sync server (gunicorn, two workers); the station retries and converges.

The machine's own PostgreSQL is shared and is never touched: the trial makes a private cluster in a temporary
folder with the server binaries (``/usr/lib/postgresql/<version>/bin``: ``initdb``, ``pg_ctl``; as root run as the
``postgres`` user), listening on its own port on 127.0.0.1, and removes it afterwards. It is skipped, saying so,
only where those binaries are missing. The proxy in front of the server holds each answer back a little, so the
ingest is surely under way when the database goes down. One restart by default, 5 with ``RELIABILITY_FULL=1``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from fault_proxy import FaultProxy
from sync_support import build_bank, enrolled_station

from reliability import counts
from reliability.convergence import (
    ServerProcess,
    ShopCounter,
    assert_bank_holds_the_journal,
    free_port,
    sync_until_converged,
)
from sync_server.db import db_proxy

RESTARTS = counts(quick=1, full=5)
ENTRIES_PER_RESTART = 60
BATCH_ENTRIES = 3
#: Each answer held back this long: 20 batches take at least 4 s, the restart comes after 0.5 s.
ANSWER_DELAY_MS = 200
#: How long the cluster stays down at each restart: the station syncs every 0.2 s meanwhile.
DOWN_SECONDS = 1.5


def server_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    found = [Path(folder) for folder in glob.glob("/usr/lib/postgresql/*/bin")
             if os.access(Path(folder) / "initdb", os.X_OK) and os.access(Path(folder) / "pg_ctl", os.X_OK)]
    return max(found, key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
               default=None)


@dataclass
class PrivateCluster:
    bindir: Path
    data: Path
    port: int
    as_postgres: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/bank"

    def pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        subprocess.run([*self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                        "-l", str(self.data / "server.log"), "-w", "-t", "60", *args],
                       check=True, capture_output=True)

    def entries(self) -> int:
        with psycopg.connect(self.url, connect_timeout=10) as conn:
            return conn.execute("SELECT count(*) FROM entry").fetchone()[0]


@pytest.fixture
def private_cluster():
    bindir = server_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb and pg_ctl): this trial "
                    "restarts a private cluster of its own, never the machine's")
    as_postgres = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user to run a private PostgreSQL cluster as")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="sk-private-pg-"))
    folder.chmod(0o755)  # the postgres user reaches its data folder inside
    data = folder / "data"
    data.mkdir(mode=0o700)
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    cluster = PrivateCluster(bindir, data, free_port(), as_postgres)
    cluster.pg_ctl("start")
    try:
        with psycopg.connect(cluster.url.replace("/bank", "/postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bank")
        yield cluster
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def restart_soon(cluster: PrivateCluster) -> tuple[threading.Thread, list[int]]:
    """In half a second, stop ``cluster`` (immediate: its processes killed), leave it down for ``DOWN_SECONDS`` (so
    requests under way meet it down, not only the ones it cut), start it again (crash recovery); then count the
    entries it holds into the list returned with the (started) thread."""
    held = []

    def restart():
        time.sleep(0.5)
        cluster.pg_ctl("stop", "-m", "immediate")
        time.sleep(DOWN_SECONDS)
        cluster.pg_ctl("start")
        held.append(cluster.entries())

    thread = threading.Thread(target=restart)
    thread.start()
    return thread, held


def test_postgres_restarted_mid_ingest(private_cluster, tmp_path, clock, reliability_report):
    keys_dir = tmp_path / "server-keys"
    build_bank(private_cluster.url, keys_dir)
    server = ServerProcess("gunicorn", {"DATABASE_URL": private_cluster.url, "SYNC_SERVER_KEYS_DIR": str(keys_dir)},
                           workers=2)
    survived = failed_syncs = 0
    try:
        st = enrolled_station(SimpleNamespace(url=server.url), tmp_path, "ST-0001", clock)
        st.config["sync"] = {"max_entries": BATCH_ENTRIES, "attempts": 2}
        counter = ShopCounter(st)
        with FaultProxy.to_url(server.url) as proxy:
            st.config["server"]["url"] = proxy.url
            proxy.set_mode("slow", delay_ms=ANSWER_DELAY_MS)
            for _ in range(RESTARTS):
                counter.record(ENTRIES_PER_RESTART)
                db_proxy.obj.close()  # the test's own connection would not survive the restart
                restarter, held_after_restart = restart_soon(private_cluster)
                failed_syncs += sync_until_converged(st, pause=0.2)
                restarter.join(timeout=120)
                head_seq = assert_bank_holds_the_journal(st)
                # The database came back while the station still had batches to send, and some failed meanwhile.
                assert held_after_restart and held_after_restart[0] < head_seq
                survived += 1
    finally:
        errors = server.stop()
        db_proxy.obj.close()  # before the cluster goes: the test's connection to it
    # The restarts hit requests under way: the server answered them 503 database-unavailable (the station retries),
    # never with an unexpected error.
    failed_requests = errors.count("database out of reach on /api/v1/stations/ST-0001/batches")
    assert failed_requests >= 1 and "unexpected error" not in errors, errors[-3000:]
    reliability_report(fault="PostgreSQL restarted (immediate) mid-ingest", trials=RESTARTS, survived=survived,
                       requests_failed_meanwhile=failed_requests, failed_syncs=failed_syncs, lost_entries=0)
    st.close()
