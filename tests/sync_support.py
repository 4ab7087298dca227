"""Helpers for the sync tests: a real sync server on loopback over SQLite or PostgreSQL, enrolled stations.

PostgreSQL runs only when ``TEST_DATABASE_URL`` is set: a uniquely named database is created for the test
session and dropped afterwards; each test gets a fresh ``public`` schema in it. The ``server`` fixture's bank
(migrated, with demo data) is built once per test process and backend and copied into each test's database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse, urlunparse

import pytest
from waitress_support import serve_in_thread, stop_server

from sync_server import create_app
from sync_server.admin import add_station, load_demo_data
from sync_server.db import connect_url, db_proxy, is_postgres, migrate_database
from sync_server.keys import create_keys

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])


@dataclass
class RunningServer:
    url: str
    app: object
    database_url: str
    keys_dir: Path
    _server: object
    _thread: threading.Thread

    def stop(self) -> None:
        stop_server(self._server, self._thread)


def start_server(database_url: str, keys_dir: Path) -> RunningServer:
    app = create_app({"DATABASE_URL": database_url, "SYNC_SERVER_KEYS_DIR": str(keys_dir)})
    url, server, thread = serve_in_thread(app)
    return RunningServer(url, app, database_url, keys_dir, server, thread)


@pytest.fixture(scope="session")
def pg_database_url():
    """A uniquely named PostgreSQL database for this session (dropped at the end)."""
    import psycopg

    name = f"sk_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    parsed = urlparse(TEST_DATABASE_URL)
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # A test database is dropped at the end: its commits need not wait for the disk.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    yield urlunparse(parsed._replace(path=f"/{name}"))
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: Fixtures that copy a bank into the test's database (``copy_bank``), which replaces whatever it holds.
COPIES_A_BANK = frozenset({"server", "history"})


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """An empty database of the test's own (SQLite), or this test process's PostgreSQL database with an empty
    ``public`` schema; left as the last test left it for a test whose bank ``copy_bank`` copies in (it empties
    it, or keeps the tables when their shape is the bank's and replaces their rows)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sync-server.db'}"
    url = request.getfixturevalue("pg_database_url")
    if COPIES_A_BANK.isdisjoint(request.fixturenames):
        empty_public_schema(url)
    return url


def empty_public_schema(url: str) -> None:
    database = connect_url(url)
    database.connect()
    database.execute_sql("DROP SCHEMA public CASCADE")
    database.execute_sql("CREATE SCHEMA public")
    database.close()


def start_module_bank(request, tmp: Path, station_ids: list[str]) -> RunningServer:
    """A bank for a module-scoped fixture parametrized over ``BACKENDS`` (``request.param``): its database
    (SQLite in ``tmp``, or an emptied PostgreSQL schema), keys, migrations and demo data for ``station_ids``,
    serving on loopback."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'sync-server.db'}"
    else:
        url = request.getfixturevalue("pg_database_url")
        empty_public_schema(url)
    database = connect_url(url)
    db_proxy.initialize(database)
    database.connect()
    keys_dir = tmp / "server-keys"
    create_keys(keys_dir)
    migrate_database(database)
    load_demo_data(station_ids)
    database.close()
    return start_server(url, keys_dir)


def build_bank(database_url: str, keys_dir: Path) -> None:
    """The ``server`` fixture's bank from scratch: keys, migrations, demo data for ST-0001 and ST-0002."""
    create_keys(keys_dir)
    database = connect_url(database_url)
    db_proxy.initialize(database)
    database.connect()
    migrate_database(database)
    load_demo_data(["ST-0001", "ST-0002"])
    database.close()


@dataclass
class BankTemplate:
    """A bank built once by ``build_bank`` in a test process: its keys, and its database as a file (SQLite) or
    as the SQL of ``pg_dump`` (PostgreSQL); ``sql`` is None where ``pg_dump`` cannot dump it."""

    keys_dir: Path
    sqlite_file: Path | None = None
    sql: str | None = None
    #: PostgreSQL, when the test's role may switch triggers off (a superuser): its tables, the dump's rows and
    #: sequence values alone, and the shape (``SCHEMA_SHAPE``) of a schema the dump made, as ``copy_bank`` found
    #: it after its first replay (PostgreSQL words a replayed CHECK differently from the migrations' own). A
    #: database whose schema has this shape gets the template's rows in place of its own, without the DDL (a
    #: tenth of the time).
    tables: tuple[str, ...] = ()
    rows_sql: str | None = None
    shape: str | None = None


#: What a test could have changed in the ``public`` schema's shape: tables and their columns (type, NOT NULL,
#: default), every relation, index, constraint, trigger (and whether it fires) and function.
SCHEMA_SHAPE = """
SELECT md5(coalesce(string_agg(part, E'\n' ORDER BY part), '')) FROM (
  SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || ' ' || a.attnotnull::text || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS part
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT 'relation ' || c.relname || ' ' || c.relkind::text || c.relpersistence::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
  UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL SELECT 'constraint ' || o.conname || ' ' || pg_get_constraintdef(o.oid)
    FROM pg_constraint o JOIN pg_namespace n ON n.oid = o.connamespace WHERE n.nspname = 'public'
  UNION ALL SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND NOT t.tgisinternal
  UNION ALL SELECT 'function ' || pg_get_functiondef(p.oid)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
) AS parts
"""


def pg_bank_template(url: str, keys_dir: Path) -> BankTemplate:
    """The bank in the PostgreSQL database at ``url`` (its keys in ``keys_dir``) as a template for ``copy_bank``."""
    import psycopg

    sql = pg_dump_sql(url)
    with psycopg.connect(url) as conn:
        if sql is None or not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            return BankTemplate(keys_dir, sql=sql)
        tables = tuple(row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"))
    return BankTemplate(keys_dir, sql=sql, tables=tables, rows_sql=pg_dump_sql(url, "--data-only"))


def pg_dump_sql(url: str, *options: str) -> str | None:
    """The ``public`` schema of ``url`` (tables, data, sequences, functions, triggers) as SQL that one
    ``execute`` replays into an empty ``public`` schema (with ``--data-only``: its rows and sequence values
    alone); None without a working ``pg_dump``."""
    parsed = urlparse(url)
    command = ["pg_dump", *options, "--no-owner", "--no-privileges", "--inserts", "--schema=public",
               "--host", parsed.hostname or "127.0.0.1", "--port", str(parsed.port or 5432),
               "--username", parsed.username or "postgres", parsed.path.lstrip("/")]
    env = {**os.environ, **({"PGPASSWORD": unquote(parsed.password)} if parsed.password else {})}
    if shutil.which("pg_dump") is None:
        return None
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return None
    # psql's meta-commands (``\restrict``) are not SQL; the schema itself exists already.
    lines = [line for line in done.stdout.splitlines()
             if not line.startswith("\\") and line.strip() != "CREATE SCHEMA public;"]
    return "\n".join(lines)


@pytest.fixture(scope="session")
def bank_templates(tmp_path_factory):
    """``template(backend)``: the ``server`` fixture's bank, built once per test process (xdist worker) and
    backend, copied into each test's own database (a few milliseconds instead of the seconds of migrations and
    demo data). The servers of one test process share their keys."""
    built: dict[str, BankTemplate] = {}

    def template(backend: str) -> BankTemplate:
        if backend not in built:
            tmp = tmp_path_factory.mktemp(f"bank-template-{backend}")
            if backend == "sqlite":
                build_bank(f"sqlite:///{tmp / 'sync-server.db'}", tmp / "server-keys")
                built[backend] = BankTemplate(tmp / "server-keys", sqlite_file=tmp / "sync-server.db")
            else:
                url = pg_template_url()
                build_bank(url, tmp / "server-keys")
                built[backend] = pg_bank_template(url, tmp / "server-keys")
        return built[backend]

    yield template
    if "postgresql" in built:
        drop_pg_database(pg_template_url())


def pg_template_url(kind: str = "bank") -> str:
    """A database of its own for this test process's PostgreSQL template ``kind`` (created on first use)."""
    import psycopg

    name = f"sk_tmpl_{os.getpid()}_{kind}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return urlunparse(urlparse(TEST_DATABASE_URL)._replace(path=f"/{name}"))


def drop_pg_database(url: str) -> None:
    import psycopg

    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{urlparse(url).path.lstrip("/")}" WITH (FORCE)')


def copy_bank(template: BankTemplate, database_url: str, keys_dir: Path) -> bool:
    """Copy ``template`` into the database at ``database_url`` and ``keys_dir``; False when it cannot (a SQLite
    file exists already, or there is no dump of PostgreSQL), and nothing was changed.

    PostgreSQL's ``public`` schema is replaced whatever it holds: when its shape is the template's (the bank an
    earlier test of this process had), only its rows are, every table emptied with the triggers off (the
    append-only ones) and the template's rows and sequence values written; otherwise the schema is dropped and
    the whole dump replayed. One transaction either way.
    """
    if urlparse(database_url).scheme == "sqlite":
        target = Path(urlparse(database_url).path)
        if target.exists() or template.sqlite_file is None:
            return False
        shutil.copyfile(template.sqlite_file, target)
    else:
        import psycopg

        if template.sql is None:
            return False
        shape = None
        with psycopg.connect(database_url) as conn:  # one transaction: all of it or nothing
            if template.shape is not None and conn.execute(SCHEMA_SHAPE).fetchone()[0] == template.shape:
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute("; ".join(f'DELETE FROM "{table}"' for table in template.tables))
                conn.execute(template.rows_sql)
            else:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
                conn.execute(template.sql)
                if template.rows_sql is not None and template.shape is None:
                    conn.execute("RESET search_path")  # the dump emptied it: names would come schema-qualified
                    shape = conn.execute(SCHEMA_SHAPE).fetchone()[0]
        if template.shape is None:
            template.shape = shape
    shutil.copytree(template.keys_dir, keys_dir)
    return True


@pytest.fixture
def server(database_url, tmp_path, bank_templates):
    """A migrated sync server with keys and demo data for ST-0001 and ST-0002, serving on loopback."""
    keys_dir = tmp_path / "server-keys"
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    if not copy_bank(bank_templates(backend), database_url, keys_dir):
        build_bank(database_url, keys_dir)
    db_proxy.initialize(connect_url(database_url))
    running = start_server(database_url, keys_dir)
    yield running
    running.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


@pytest.fixture
def slow_bank():
    """A sync server stand-in that answers only when the test lets it (``release.set()``), then with a problem
    the station has no special words for: ``(url, release)``."""
    release = threading.Event()

    def app(environ, start_response):
        release.wait(timeout=30)
        start_response("503 Service Unavailable", [("Content-Type", "application/problem+json")])
        return [b'{"type": "urn:station-kit:problem:internal-error", "title": "Busy", "detail": "Try later."}']

    url, server, thread = serve_in_thread(app, threads=2)
    yield url, release
    release.set()
    stop_server(server, thread)


def server_db():
    """Use the server's database from the test thread (call inside the test)."""
    db_proxy.obj.connect(reuse_if_open=True)
    return db_proxy.obj


def enrolled_station(server: RunningServer, tmp_path: Path, station_id: str, clock, name: str = "Demo"):
    """Add ``station_id`` on the server, enroll a fresh data folder with its code, run a first sync."""
    from station.sync import enroll_station, sync_once

    server_db()
    code = add_station(station_id, name)
    st = enroll_station(tmp_path / station_id, server.url, code, clock=clock)
    sync_once(st)
    return st


def forked_devices(server: RunningServer, tmp_path: Path, clock, station_id: str = "ST-0001"):
    """Two devices with one station's keys: its data folder copied right after enrollment. The station records
    two deposits and syncs them; the copy records three others (unsynced), so from the first deposit on the two
    journals differ. Returns ``(station, copy)``."""
    from station.context import Station
    from station.sync import sync_once

    st = enrolled_station(server, tmp_path, station_id, clock)
    st.close()
    copy_dir = tmp_path / f"{station_id}-copy"
    shutil.copytree(st.data_dir, copy_dir)
    st = Station(st.data_dir, clock=clock)
    record_some(st, 2)
    sync_once(st)
    copy = Station(copy_dir, clock=clock)
    record_some(copy, 3, amount=20_000)
    return st, copy


@contextmanager
def append_only_lifted(database):
    """An insider's (or a restore's) writes around the ledger's triggers, in one transaction.

    PostgreSQL: every user trigger of ``posting`` and ``entry`` is disabled, as ``pg_restore --disable-triggers``
    does (the balance check too: nothing written meanwhile is checked at commit). SQLite has no switch: the
    triggers are dropped and created again from their own SQL before the transaction commits.
    """
    with database.atomic():
        if is_postgres(database):
            for table in ("posting", "entry"):
                database.execute_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            yield
            for table in ("posting", "entry"):
                database.execute_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            return
        triggers = database.execute_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                        "AND tbl_name IN ('posting', 'entry')").fetchall()
        for name, _ in triggers:
            database.execute_sql(f'DROP TRIGGER "{name}"')
        yield
        for _, sql in triggers:
            database.execute_sql(sql)


def append_forged_entry(st, entry_type: str, moment, body: dict, txn: str | None = None):
    """What a tampered device signs: the journal's format (seq, prev, ts, the station's key) around any body,
    without the check ``append_entry`` makes before signing. Call it inside ``st.write()``."""
    from station.journal import entry_payload, store_entry

    return store_entry(st, entry_payload(st, entry_type, moment, body, txn), moment)


def open_counter(st):
    """The demo agents added and logged in, the day opened with ¥30,000: (agent, supervisor) sessions."""
    from station import agents, business_day
    from station.demo import DEMO_AGENTS

    for agent_id, name, role, pin in DEMO_AGENTS:
        agents.add_agent(st, agent_id, name, role, pin)
    agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
    supervisor = agents.login_agent(st, DEMO_AGENTS[1][0], DEMO_AGENTS[1][3])
    business_day.open_day(st, agent, {"10000": 300})
    return agent, supervisor


def record_some(st, count=3, amount=10_000):
    """Open the day (once) and record ``count`` deposits for a downlinked customer."""
    from station import agents, business_day, operations, receipts
    from station.db import Agent, Customer
    from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN

    with st.bound():
        if Agent.select().count() == 0:
            for agent_id, name, role, pin in DEMO_AGENTS:
                agents.add_agent(st, agent_id, name, role, pin)
        session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        if business_day.current_day(st) is None:
            business_day.open_day(st, session, {"10000": 100})
        customer = Customer.get(Customer.account_id == "DM00010001")
        auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
        for _ in range(count):
            operations.deposit_cash(st, session, auth, amount, receipts.new_txn_id())


def partial_sync(st, batch_entries: int = 2) -> int:
    """One batch of ``batch_entries`` is sent and the link drops: returns the seq the bank then holds."""
    from station.sync import sync_once

    st.config.setdefault("sync", {})["max_entries"] = batch_entries
    result = sync_once(st, max_batches=1)
    st.config["sync"].pop("max_entries")
    assert result.batches == 1 and result.pending > 0
    return result.acked_seq


def opened_downlinks(monkeypatch) -> list[dict]:
    """The downlinks the station opens from now on, in order (``station.sync.open_answer`` watched)."""
    import station.sync as station_sync

    seen = []
    real = station_sync.open_answer

    def keep(st, answer):
        ack = real(st, answer)
        seen.append(ack.downlink)
        return ack

    monkeypatch.setattr(station_sync, "open_answer", keep)
    return seen


def journal(st) -> list[tuple[int, str]]:
    """The station's journal as (seq, token) pairs."""
    from station.journal import iter_entries

    with st.bound():
        return list(iter_entries(st))
