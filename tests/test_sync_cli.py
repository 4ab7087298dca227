"""The `sync-server` and `station` sync commands, their documentation, and the background sync job."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

from click.testing import CliRunner
from sync_support import server_db

from station.cli import cli as station_cli
from station.sync import SYNC_SETTINGS
from sync_server.cli import cli as server_cli
from sync_server.db import MIGRATIONS

ROOT = Path(__file__).resolve().parents[1]
CODE_RE = re.compile(r"^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$")


def run(cli, args, ok=True):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_server_admin_commands(database_url, tmp_path):
    db = ["--database-url", database_url]
    assert f"applied: {list(range(1, len(MIGRATIONS) + 1))}" in run(server_cli, ["init-db", *db]).output
    assert "applied: none" in run(server_cli, ["init-db", *db]).output
    keys = tmp_path / "keys"
    created = json.loads(run(server_cli, ["keys", "--create", "--keys-dir", str(keys)]).output)
    assert created["signing_jwk"]["crv"] == "Ed25519" and created["encryption_jwk"]["crv"] == "X25519"
    assert run(server_cli, ["keys", "--create", "--keys-dir", str(keys)], ok=False).exit_code != 0
    assert json.loads(run(server_cli, ["keys", "--keys-dir", str(keys)]).output) == created

    first = json.loads(run(server_cli, ["demo-data", "--stations", "ST-0001,ST-0002", *db]).output)
    again = json.loads(run(server_cli, ["demo-data", "--stations", "ST-0001,ST-0002", *db]).output)
    assert first == again == {"stations": ["ST-0001", "ST-0002"], "customers": 40, "billers": 6}
    assert run(server_cli, ["check", *db]).output == "Ledger sound: 5 checks passed.\n"

    added = run(server_cli, ["station", "add", "ST-0003", "--name", "Liujia shop", *db]).output
    assert CODE_RE.match(added.strip().splitlines()[-1])
    listed = json.loads(run(server_cli, ["station", "list", "--json", *db]).output)
    assert [s["station_id"] for s in listed] == ["ST-0001", "ST-0002", "ST-0003"]
    assert run(server_cli, ["station", "revoke", "ST-0003", *db], ok=False).exit_code == 2  # --reason, --by
    run(server_cli, ["station", "revoke", "ST-0003", "--reason", "retired", "--by", "Wang Fang", *db])
    assert "revoked" in run(server_cli, ["station", "list", *db]).output
    assert run(server_cli, ["station", "revoke", "ST-0404", "--reason", "x", "--by", "y", *db],
               ok=False).exit_code != 0
    run(server_cli, ["payees", "block", "6222021234567890", "--reason", "reported fraud", *db])
    assert "Executed 0 transfers" in run(server_cli, ["transfers", "execute", *db]).output


def test_csv_imports_report_every_bad_row_and_import_nothing(database_url, tmp_path):
    db = ["--database-url", database_url]
    run(server_cli, ["init-db", *db])
    bad = tmp_path / "customers.csv"
    bad.write_text("account_id,name,card_number,passbook_number,pin,balance,home_stations\n"
                   "AC000001,李秀英,6217000000000001,,123456,100.00,ST-0001\n"
                   "AC000002,,,,12,100.123,ST-0001\n"
                   "AC000001,王建国,,88000001,654321,-5,ST-0001\n", encoding="utf-8")
    result = run(server_cli, ["customers", "import", str(bad), *db], ok=False)
    assert result.exit_code != 0
    assert "line 3: name is empty; pin must be 4 to 6 digits" in result.output
    assert "balance: An amount can have at most two decimals" in result.output
    assert "line 4: account_id AC000001 appears twice" in result.output
    assert "line 2" not in result.output
    server_db()
    from sync_server.db import Customer

    assert Customer.select().count() == 0
    good = tmp_path / "good.csv"
    good.write_text("account_id,name,card_number,passbook_number,pin,balance,home_stations\n"
                    "AC000001,李秀英,6217000000000001,,123456,100.00,ST-0001;ST-0002\n", encoding="utf-8")
    assert "Imported 1 customers" in run(server_cli, ["customers", "import", str(good), *db]).output
    billers = tmp_path / "billers.csv"
    billers.write_text("code,kind,name_zh,name_en,ref_pattern,ref_prefixes,min_fen,max_fen,denominations\n"
                       "ELEC-X,electricity,电费,Electricity,\\d{10},,100,500000,\n"
                       "bad code,tv,电视,TV,(,,0,1,\n", encoding="utf-8")
    result = run(server_cli, ["billers", "import", str(billers), *db], ok=False)
    assert "line 3: code must be" in result.output and "kind must be" in result.output
    billers.write_text(billers.read_text(encoding="utf-8").splitlines()[0] + "\n"
                       "ELEC-X,electricity,电费,Electricity,\\d{10},,100,500000,\n", encoding="utf-8")
    assert "Imported 1 billers" in run(server_cli, ["billers", "import", str(billers), *db]).output


def test_station_enroll_sync_status_commands(server, tmp_path):
    server_db()
    from sync_server.admin import add_station, revoke_station

    code = add_station("ST-0001", "Liujia shop")
    data = tmp_path / "st"
    out = run(station_cli, ["enroll", "--server", server.url, "--code", code, "--data-dir", str(data)]).output
    assert "Enrolled as station ST-0001" in out
    again = run(station_cli, ["enroll", "--server", server.url, "--code", code, "--data-dir", str(tmp_path / "b")],
                ok=False)
    assert again.exit_code != 0 and "already been used" in again.output
    synced = run(station_cli, ["sync", "--data-dir", str(data)]).output
    assert "Acknowledged through seq 1" in synced
    status = json.loads(run(station_cli, ["status", "--json", "--data-dir", str(data)]).output)
    assert status["station_id"] == "ST-0001" and status["pending_entries"] == 0 and status["acked_seq"] == 1
    assert "Last successful sync" in run(station_cli, ["status", "--data-dir", str(data)]).output
    server_db()
    revoke_station("ST-0001")
    refused = run(station_cli, ["sync", "--data-dir", str(data)], ok=False)
    assert refused.exit_code != 0 and "revoked" in refused.output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_enroll_with_an_unreachable_server_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    result = run(station_cli, ["enroll", "--server", url, "--code", "AAAA-BBBB-CCCC", "--data-dir",
                               str(tmp_path / "st")], ok=False)
    assert result.exit_code != 0 and "Cannot reach the bank's server" in result.output
    assert not (tmp_path / "st" / "config.json").exists()


def test_enroll_with_a_server_that_is_no_sync_server_is_a_clear_error(tmp_path):
    from sync_support import serve_in_thread, stop_server

    def captive_portal(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>Sign in to the village Wi-Fi</html>"]

    url, server, thread = serve_in_thread(captive_portal)
    try:
        result = run(station_cli, ["enroll", "--server", url, "--code", "AAAA-BBBB-CCCC", "--data-dir",
                                   str(tmp_path / "st")], ok=False)
    finally:
        stop_server(server, thread)
    assert result.exit_code != 0 and "not as a station-kit sync server" in result.output
    assert not (tmp_path / "st" / "config.json").exists()


def test_sync_job_backs_off_while_the_server_is_unreachable(server, tmp_path, clock):
    from sync_support import enrolled_station

    from station.scheduler import JOB_ID, SyncJob, start_scheduler, sync_now

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    st.config["server"]["url"] = f"http://127.0.0.1:{_closed_port()}"
    st.config["sync"] = {"connect_timeout": 1, "backoff_base": 60}
    job = SyncJob(st)
    job()
    assert job.failures == 1 and job.not_before > 0
    assert "Cannot reach" in st.setting("last_sync_error")
    job()  # inside the backoff: skipped, not another failure
    assert job.failures == 1
    job.forced.set()  # "sync now" ignores the backoff
    job()
    assert job.failures == 2
    st.config["server"]["url"] = server.url
    job.forced.set()
    job()
    assert job.failures == 0

    scheduler = start_scheduler(st, {"SYNC_INTERVAL_SECONDS": 3600})
    try:
        sync_job = scheduler.get_job(JOB_ID)
        assert sync_job.max_instances == 1 and sync_job.coalesce and sync_job.misfire_grace_time >= 60
        assert sync_job.trigger.interval.total_seconds() == 3600
        sync_now(scheduler)
    finally:
        scheduler.shutdown(wait=True)


def test_sync_now_during_a_run_runs_again_at_once(monkeypatch, station):
    import station.scheduler as scheduler_module

    job = scheduler_module.SyncJob(station)
    runs = []

    def sync_once(station, attempts):
        runs.append(attempts)
        if len(runs) == 1:
            job.forced.set()  # "sync now" pressed meanwhile: the scheduler skips the second instance

    monkeypatch.setattr(scheduler_module, "sync_once", sync_once)
    job()
    assert runs == [1, 1] and not job.forced.is_set()


def test_every_sync_setting_and_command_is_documented():
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for name in SYNC_SETTINGS:
        assert f"`{name}`" in operations, name
    for command in ("init-db", "keys --create", "serve", "station add", "station list", "station revoke",
                    "customers import", "billers import", "payees block", "transfers execute", "demo-data"):
        assert f"sync-server {command}" in operations, command
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in ("station enroll", "station sync", "station status"):
        assert command in readme and command in operations
    assert "## Sync protocol" in (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")


def test_benchmarks_exist_and_are_not_collected():
    import subprocess
    import sys

    for path in ("tests/bench/sync_drain.py", "tests/bench/server_ingest.py"):
        assert (ROOT / path).exists()
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                "tests/bench"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 5, collected.stdout  # 5: no tests collected


def test_serve_refuses_a_schema_that_is_not_this_release_with_a_message(tmp_path, monkeypatch):
    """An upgrade deployed without `init-db`: serve says what to do and starts nothing (no traceback)."""
    from sync_server.db import connect_url, migrate_database

    path = tmp_path / "old.db"
    old = connect_url(f"sqlite:///{path}")
    old.connect()
    migrate_database(old, up_to=1)
    old.close()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    result = CliRunner().invoke(server_cli, ["serve", "--dev", "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "Run `sync-server init-db`" in result.output and "Traceback" not in result.output
