"""Station migrations: release 1 is frozen, a release-1 data folder is upgraded in place and keeps its journal.

The fixture ``tests/fixtures/release1/station`` is a data folder made by release 1 (commit caead6e: ``station init
--demo`` and ``station simulate``), stored as an SQL dump with its config and signing key (see its README).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from peewee import IntegerField, IntegrityError, SqliteDatabase
from playhouse.migrate import migrate

from station import agents, operations, receipts
from station import db as station_db
from station.cli import cli
from station.context import Station
from station.db import MIGRATIONS, MODELS, SchemaMismatch, SchemaTooNew, migrate_database, open_database, schema_version
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN

FIXTURE = Path(__file__).parent / "fixtures" / "release1" / "station"
RELEASE_1_TABLES = ["agent", "biller", "blocked_payee", "business_day", "customer", "journal_entry", "operation",
                    "payee", "printed_receipt", "setting"]


def load_dump(path: Path, dump: Path) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(dump.read_text(encoding="utf-8"))
    connection.close()


def schema_of(database_path: Path) -> list[tuple]:
    """Every table, index and trigger with its SQL, the migration history table left out."""
    connection = sqlite3.connect(database_path)
    rows = connection.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
        "AND tbl_name <> 'schema_version' ORDER BY type, name").fetchall()
    connection.close()
    # The frozen SQL says IF NOT EXISTS (so that release 1 can be adopted); SQLite stores the text as written.
    return [(t, n, tbl, " ".join(sql.replace(" IF NOT EXISTS", "").split())) for t, n, tbl, sql in rows]


def rows_of(database_path: Path) -> dict[str, list[tuple]]:
    connection = sqlite3.connect(database_path)
    rows = {table: connection.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall() for table in RELEASE_1_TABLES}
    connection.close()
    return rows


@pytest.fixture
def release1_folder(tmp_path) -> Path:
    folder = tmp_path / "station-data"
    (folder / "keys").mkdir(parents=True, mode=0o700)
    for name in ("config.json", "keys/signing.jwk"):
        shutil.copyfile(FIXTURE / name, folder / name)
        (folder / name).chmod(0o600)
    load_dump(folder / "station.db", FIXTURE / "station.sql")
    return folder


def test_release_1_is_frozen_as_the_release_shipped_it(tmp_path):
    """Migration 1 on an empty file makes exactly the schema release 1's code made (the fixture's)."""
    released = tmp_path / "released.db"
    load_dump(released, FIXTURE / "station.sql")
    fresh = tmp_path / "fresh.db"
    database = SqliteDatabase(str(fresh))
    MIGRATIONS[0](database, None)
    database.close()
    assert schema_of(fresh) == schema_of(released)


def test_migrations_make_what_the_models_describe(tmp_path):
    """All migrations together give the schema ``create_tables(MODELS)`` would: the models and migrations agree."""
    migrated = tmp_path / "migrated.db"
    open_database(str(migrated)).close()
    modelled = tmp_path / "modelled.db"
    database = SqliteDatabase(str(modelled))
    with database.bind_ctx(MODELS):
        database.create_tables(MODELS)
    database.close()
    tables = [row for row in schema_of(migrated) if row[0] != "trigger"]
    assert tables == schema_of(modelled)
    assert {row[1] for row in schema_of(migrated) if row[0] == "trigger"} == {
        "journal_entry_no_update", "journal_entry_no_delete"}


def test_release_1_folder_is_upgraded_without_loss(release1_folder):
    before = rows_of(release1_folder / "station.db")
    assert len(before["journal_entry"]) == 43 and len(before["operation"]) == 39

    last_entry = datetime.fromisoformat(before["journal_entry"][-1][4])
    st = Station(release1_folder, clock=lambda: last_entry + timedelta(minutes=5))
    try:
        history = st.db.execute_sql('SELECT "version", "name" FROM "schema_version"').fetchall()
        assert [version for version, _ in history] == list(range(1, len(MIGRATIONS) + 1))
        assert history[0][1].startswith("Release 1")
        # Migration 2 adds operation.auth_id and customer.balance_seq, migration 3 customer.birth_year, migration 4
        # customer.risk_level: empty for every row release 1 wrote.
        added = {"operation": (None,), "customer": (None, None, None)}
        assert rows_of(release1_folder / "station.db") == {
            table: [row + added.get(table, ()) for row in rows] for table, rows in before.items()}

        # The journal guard triggers hold after the upgrade.
        for sql in ("UPDATE journal_entry SET type = 'x' WHERE seq = 2", "DELETE FROM journal_entry WHERE seq = 43"):
            with pytest.raises(IntegrityError, match="append-only"):
                st.db.execute_sql(sql)

        # A new operation appends at head + 1 and chains onto release 1's entries.
        agent_id, _, _, pin = DEMO_AGENTS[0]
        agent = agents.login_agent(st, agent_id, pin)
        customer = agents.identify_customer(
            st, next(row[3] for row in before["customer"] if row[3] and row[5] == "active"))
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        receipt = operations.deposit_cash(st, agent, auth, "200", receipts.new_txn_id())
        assert receipt.seq == 44
    finally:
        st.close()

    result = CliRunner().invoke(cli, ["verify-journal", "--data-dir", str(release1_folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"station": "ST-0001", "entries": 44, "intact": True, "problems": []}


def test_the_birth_year_migration_keeps_the_customers_of_the_release_before(release1_folder):
    """Migration 3 on a database of release 2 (issue 11): every customer is kept, with its birth year unknown
    until the bank's downlink sends one."""
    path = release1_folder / "station.db"
    database = SqliteDatabase(str(path))
    database.connect()
    database.execute_sql(station_db.SCHEMA_HISTORY_DDL)
    for version, migration in enumerate(MIGRATIONS[:2], start=1):
        migration(database, None)
        database.execute_sql("INSERT INTO schema_version VALUES (?, ?, '2026-11-30T00:00:00+00:00')",
                             (version, migration.__doc__))
    before = database.execute_sql("SELECT * FROM customer ORDER BY id").fetchall()
    assert migrate_database(database) == list(range(3, len(MIGRATIONS) + 1))
    after = database.execute_sql("SELECT * FROM customer ORDER BY id").fetchall()
    database.close()
    # Migration 4 (issue 14) adds the risk-assessment level after it, unknown too.
    assert len(before) == 60 and [row[:-2] for row in after] == before
    assert {row[-2:] for row in after} == {(None, None)}


def test_migrating_twice_changes_nothing(release1_folder):
    path = release1_folder / "station.db"
    open_database(str(path)).close()
    schema, rows = schema_of(path), rows_of(path)
    database = open_database(str(path))
    try:
        assert migrate_database(database) == []
        history = database.execute_sql('SELECT COUNT(*) FROM "schema_version"').fetchone()[0]
    finally:
        database.close()
    assert history == len(MIGRATIONS)
    assert (schema_of(path), rows_of(path)) == (schema, rows)


def test_a_database_from_a_newer_release_is_refused(release1_folder):
    path = release1_folder / "station.db"
    open_database(str(path)).close()
    connection = sqlite3.connect(path)
    connection.execute("INSERT INTO schema_version VALUES (?, 'from the future', '2030-01-01T00:00:00+00:00')",
                       (len(MIGRATIONS) + 1,))
    connection.commit()
    connection.close()
    with pytest.raises(SchemaTooNew, match="newer than this software"):
        open_database(str(path))
    result = CliRunner().invoke(cli, ["status", "--data-dir", str(release1_folder)])
    assert result.exit_code == 1 and "never go back a release" in result.output


def test_tables_without_history_that_are_not_release_1_are_not_adopted(tmp_path):
    path = tmp_path / "station.db"
    connection = sqlite3.connect(path)
    connection.execute('CREATE TABLE "journal_entry" ("seq" INTEGER NOT NULL PRIMARY KEY, "jws" TEXT NOT NULL)')
    connection.close()
    with pytest.raises(SchemaMismatch, match="not release 1's"):
        open_database(str(path))
    assert schema_version(SqliteDatabase(str(path))) == 0


def test_a_later_migration_runs_once_in_its_own_transaction(tmp_path, monkeypatch):
    path = tmp_path / "station.db"
    open_database(str(path)).close()

    def add_column(database, migrator):
        """Add operation.branch_code."""
        migrate(migrator.add_column("operation", "branch_code", IntegerField(null=True)))

    def broken(database, migrator):
        """Add a column, then fail."""
        migrate(migrator.add_column("setting", "scope", IntegerField(null=True)))
        raise RuntimeError("half way")

    monkeypatch.setattr(station_db, "MIGRATIONS", [*MIGRATIONS, add_column, broken])
    with pytest.raises(RuntimeError, match="half way"):
        open_database(str(path))
    database = SqliteDatabase(str(path))
    # The good one was committed on its own; the broken one left nothing behind.
    assert schema_version(database) == len(MIGRATIONS) + 1
    assert "branch_code" in {c.name for c in database.get_columns("operation")}
    assert "scope" not in {c.name for c in database.get_columns("setting")}
    database.close()
