"""Schema migrations: ordered, frozen, recorded in schema_version, each applied once; a release-1 database upgrades.

The fixture ``tests/fixtures/release1/sync-server.sql`` is a SQLite database made by release 1 (commit caead6e)
after demo data and two ingested batches (see the fixtures' README).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from peewee import IntegerField
from playhouse.migrate import migrate

from sync_server import create_app, database_for
from sync_server import db as server_db_module
from sync_server.db import (
    DEBIT_NORMAL,
    MIGRATIONS,
    MODELS,
    SchemaOutdated,
    SchemaTooNew,
    connect_url,
    migrate_database,
    schema_version,
)
from sync_server.keys import create_keys

FIXTURE = Path(__file__).parent / "fixtures" / "release1" / "sync-server.sql"
RELEASE_1_TABLES = ["account", "biller", "blocked_payee", "customer", "enrollment_code", "entry", "hold",
                    "home_station", "known_payee", "posting", "server_setting", "station", "transfer"]


def test_migrations_apply_in_order_once_and_later_ones_alter_in_place(database_url, monkeypatch):
    database = connect_url(database_url)
    database.connect()
    try:
        assert schema_version(database) == 0
        released = list(range(1, len(server_db_module.MIGRATIONS) + 1))
        assert migrate_database(database) == released
        assert migrate_database(database) == []
        with database.bind_ctx(server_db_module.MODELS):
            server_db_module.Station.create(station_id="ST-0001", name="kept", created_at="2026-11-28T00:00:00")

        def add_column(database, migrator):
            migrate(migrator.add_column("station", "drawer_limit_fen", IntegerField(null=True)))

        monkeypatch.setattr(server_db_module, "MIGRATIONS", [*server_db_module.MIGRATIONS, add_column])
        assert migrate_database(database) == [len(released) + 1]
        assert schema_version(database) == len(released) + 1
        assert "drawer_limit_fen" in {c.name for c in database.get_columns("station")}
        # The data survived: a migration alters in place, it never drops and recreates.
        assert database.execute_sql("SELECT name FROM station").fetchone()[0] == "kept"
    finally:
        database.close()


def test_unbalanced_postings_are_refused(database_url):
    """In code on every backend (``Book.post``), and on PostgreSQL by the database as well."""
    import pytest
    from peewee import DatabaseError

    from sync_server.book import Book, LedgerError

    database = connect_url(database_url)
    server_db_module.db_proxy.initialize(database)
    database.connect()
    try:
        migrate_database(database)
        with database.bind_ctx(server_db_module.MODELS):
            with pytest.raises(LedgerError, match="do not sum to zero"):
                Book("ST-0001", set(), "2026-11-28T00:00:00").post([("a", 100, ""), ("b", -50, "")])
            Posting = server_db_module.Posting
            Posting.insert_many([dict(station_id="ST-0001", seq=1, leg=0, account_id="a", amount_fen=100),
                                 dict(station_id="ST-0001", seq=1, leg=1, account_id="b", amount_fen=-100)]).execute()
            if database_url.startswith("postgresql"):
                with pytest.raises(DatabaseError, match="sum to 50, not zero"):
                    with database.atomic():
                        Posting.insert_many([
                            dict(station_id="ST-0001", seq=2, leg=0, account_id="a", amount_fen=100),
                            dict(station_id="ST-0001", seq=2, leg=1, account_id="b", amount_fen=-50)]).execute()
            assert Posting.select().count() == 2
    finally:
        database.close()


def release1_database(tmp_path) -> Path:
    path = tmp_path / "sync-server.db"
    connection = sqlite3.connect(path)
    connection.executescript(FIXTURE.read_text(encoding="utf-8"))
    connection.close()
    return path


def sqlite_schema(path: Path) -> list[tuple]:
    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                              "AND tbl_name <> 'schema_version' ORDER BY type, name").fetchall()
    connection.close()
    return rows


def sqlite_rows(path: Path) -> dict[str, list[tuple]]:
    connection = sqlite3.connect(path)
    rows = {table: connection.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2').fetchall()
            for table in RELEASE_1_TABLES}
    connection.close()
    return rows


def introspect(database) -> dict:
    """Columns (name, type, null, primary key) and indexes of every table, as the database reports them."""
    return {table: ([(c.name, c.data_type, c.null, c.primary_key) for c in database.get_columns(table)],
                    sorted((i.name, tuple(i.columns), i.unique) for i in database.get_indexes(table)))
            for table in sorted(database.get_tables())}


def test_release_1_is_frozen_as_the_release_shipped_it(tmp_path):
    """Migration 1 on an empty SQLite file makes exactly the tables and indexes release 1 made (the fixture's)."""
    fresh = tmp_path / "fresh.db"
    database = connect_url(f"sqlite:///{fresh}")
    database.connect()
    assert migrate_database(database, up_to=1) == [1]
    database.close()
    assert sqlite_schema(fresh) == sqlite_schema(release1_database(tmp_path))


def test_migrations_make_what_the_models_describe(database_url):
    """All migrations together give what ``create_tables(MODELS)`` would, on each backend (history table too), and
    on PostgreSQL the legs check's table besides."""
    database = connect_url(database_url)
    database.connect()
    try:
        migrate_database(database)
        migrated = introspect(database)
        if database_url.startswith("postgresql"):
            # The legs check's own table (server migration 18), empty outside a transaction: no model uses it.
            assert migrated.pop("posting_legs_unbalanced") == (
                [("station_id", "character varying", False, False), ("seq", "bigint", False, False)], [])
            database.execute_sql("DROP SCHEMA public CASCADE")
            database.execute_sql("CREATE SCHEMA public")
        else:
            for table in database.get_tables():
                database.execute_sql(f'DROP TABLE "{table}"')
        with database.bind_ctx(MODELS):
            database.create_tables(MODELS)
        assert migrated == introspect(database)
    finally:
        database.close()


def test_release_1_database_is_upgraded_without_loss(tmp_path):
    path = release1_database(tmp_path)
    before = sqlite_rows(path)
    assert (len(before["entry"]), len(before["posting"]), len(before["hold"])) == (34, 163, 20)

    database = connect_url(f"sqlite:///{path}")
    database.connect()
    try:
        assert migrate_database(database) == list(range(2, len(MIGRATIONS) + 1))
        history = database.execute_sql('SELECT "version", "name" FROM "schema_version" ORDER BY 1').fetchall()
        assert [version for version, _ in history] == list(range(1, len(MIGRATIONS) + 1))
        assert history[0][1].startswith("Release 1")
    finally:
        database.close()

    after = sqlite_rows(path)
    # The last columns: release 9's unsynced exposure, nothing after a complete sync; release 13's county, none.
    assert {row[-3:] for row in after["station"]} == {(0, 0, None)}
    after["station"] = [row[:-3] for row in after["station"]]
    # Release 3 added the station's last complete sync (every past sync counts as complete) as a column; release 5
    # village, agent and rotate_requested after it.
    assert [row[-4] for row in after["station"]] == [row[8] for row in before["station"]]
    assert {row[-3:] for row in after["station"]} == {(None, None, 0)}
    after["station"] = [row[:-4] for row in after["station"]]
    # ...and release 5 each enrollment code's purpose: every code so far enrolled a new station.
    assert {row[-1] for row in after["enrollment_code"]} == {"enroll"}
    after["enrollment_code"] = [row[:-1] for row in after["enrollment_code"]]
    # ...and release 7 each customer's birth year, release 15 the risk-assessment level: unknown for every customer
    # so far.
    assert {row[-2:] for row in after["customer"]} == {(None, None)}
    after["customer"] = [row[:-2] for row in after["customer"]]
    assert after == before
    # ...and the txns already held, once each: a later entry with one of them is a duplicate.
    connection = sqlite3.connect(path)
    seen = connection.execute('SELECT COUNT(*), COUNT(DISTINCT "txn") FROM "seen_txn"').fetchone()
    operations = connection.execute('SELECT COUNT(DISTINCT "txn") FROM "entry" WHERE "type" IN (\'withdrawal\', '
                                    '\'deposit\', \'transfer\', \'bill_payment\', \'reversal\')').fetchone()[0]
    connection.close()
    assert seen[0] == seen[1] >= operations > 0
    # The ledger's invariants still hold on the kept rows: each entry's legs sum to zero, each stored balance is
    # its postings' sum on the account's normal side, each hold is covered by the customer's balance.
    legs: dict[tuple, int] = {}
    by_account: dict[str, int] = {}
    for station_id, seq, _leg, account_id, amount_fen, _memo in after["posting"]:
        legs[station_id, seq] = legs.get((station_id, seq), 0) + amount_fen
        by_account[account_id] = by_account.get(account_id, 0) + amount_fen
    assert set(legs.values()) == {0}
    for account_id, kind, _name, balance_fen in after["account"]:
        posted = by_account.get(account_id, 0)
        assert balance_fen == (posted if kind in DEBIT_NORMAL else -posted), account_id
    balances = {account_id: balance for account_id, _, _, balance in after["account"]}
    assert all(0 <= amount <= balances[account_id] for _, account_id, amount, _ in after["hold"])


def test_the_birth_year_migration_keeps_the_customers_of_the_release_before(database_url):
    """Migration 7 on a database of release 6 with customers: each is kept, its birth year unknown until the bank
    imports one; the column then takes a year."""
    database = connect_url(database_url)
    database.connect()
    try:
        assert migrate_database(database, up_to=6) == list(range(1, 7))
        database.execute_sql("INSERT INTO customer (account_id, name, card_number, passbook_number, status, "
                             "pin_verifier) VALUES ('DM00010000', '李奶奶', NULL, '8800010000', 'active', 'scrypt$x')")
        assert migrate_database(database) == list(range(7, len(MIGRATIONS) + 1))
        rows = database.execute_sql("SELECT account_id, name, birth_year FROM customer").fetchall()
        assert [tuple(row) for row in rows] == [("DM00010000", "李奶奶", None)]
        database.execute_sql("UPDATE customer SET birth_year = 1948")
        assert database.execute_sql("SELECT birth_year FROM customer").fetchone()[0] == 1948
    finally:
        database.close()


def test_the_exposure_migration_counts_each_stations_unsynced_offline_debits(database_url):
    """Migration 9 on a database of the release before: each station's running total of unsynced exposure is what
    the bank summed from its postings before: the settled customer debits after its last complete sync, except one
    settled under a real-time authorization."""
    database = connect_url(database_url)
    database.connect()
    try:
        before = 8
        assert migrate_database(database, up_to=before) == list(range(1, before + 1))

        def insert(table: str, **row) -> None:
            marks = ", ".join([database.param] * len(row))
            database.execute_sql(f'INSERT INTO "{table}" ({", ".join(row)}) VALUES ({marks})', list(row.values()))

        for station_id in ("ST-0001", "ST-0002"):
            insert("station", station_id=station_id, name=station_id, status="active", flagged=False, acked_seq=5,
                   created_at="2026-11-28T00:00:00Z", synced_seq=1, rotate_requested=False)
        for account_id, kind in (("DM00010001", "customer"), ("cash:ST-0001", "station_cash"),
                                 ("fees:ST-0001", "fee_income")):
            insert("account", account_id=account_id, kind=kind, name=account_id, balance_fen=0)
        # seq 1 before the last complete sync, 2 and 5 offline debits after it, 3 a deposit, 4 under a grant.
        for seq, entry_type, amount, fee in ((1, "withdrawal", 50_000, 0), (2, "withdrawal", 10_000, 200),
                                             (3, "deposit", -20_000, 0), (4, "withdrawal", 30_000, 0),
                                             (5, "transfer", 40_000, 100)):
            insert("entry", station_id="ST-0001", seq=seq, type=entry_type, txn=f"t{seq}", token=f"token {seq}",
                   received_at="2026-11-28T00:00:00Z", outcome="settled")
            legs = [("DM00010001", amount + fee), ("cash:ST-0001", -amount), ("fees:ST-0001", -fee)]
            with database.atomic():  # PostgreSQL checks that an entry's legs balance at COMMIT
                for leg, (account_id, fen) in enumerate(legs):
                    if fen:
                        insert("posting", station_id="ST-0001", seq=seq, leg=leg, account_id=account_id,
                               amount_fen=fen, memo="")
        insert("authorization", auth_id="a4", station_id="ST-0001", txn="t4", kind="withdrawal",
               account_id="DM00010001", amount_fen=30_000, fee_fen=0, hold_fen=30_000, request_hash="h",
               status="used", created_at="2026-11-28T00:00:00Z", expires_at="2026-11-28T00:05:00Z", used_seq=4)
        assert migrate_database(database) == list(range(before + 1, len(MIGRATIONS) + 1))
        rows = database.execute_sql('SELECT "station_id", "unsynced_debit_fen", "unsynced_debit_count" FROM "station" '
                                    'ORDER BY 1').fetchall()
        assert [tuple(row) for row in rows] == [("ST-0001", 10_200 + 40_100, 2), ("ST-0002", 0, 0)]
    finally:
        database.close()


def test_migrating_twice_changes_nothing(tmp_path):
    path = release1_database(tmp_path)
    database = connect_url(f"sqlite:///{path}")
    database.connect()
    try:
        migrate_database(database)
        schema, rows = sqlite_schema(path), sqlite_rows(path)
        history = database.execute_sql('SELECT * FROM "schema_version"').fetchall()
        assert migrate_database(database) == []
        assert database.execute_sql('SELECT * FROM "schema_version"').fetchall() == history
    finally:
        database.close()
    assert (sqlite_schema(path), sqlite_rows(path)) == (schema, rows)


def test_release_1_history_on_each_backend_is_recognised(database_url):
    """Release 1's history table had no name column: it gets one, and nothing is migrated twice."""
    database = connect_url(database_url)
    database.connect()
    try:
        database.execute_sql('CREATE TABLE "schema_version" ("version" INTEGER NOT NULL PRIMARY KEY, '
                             '"applied_at" VARCHAR(255) NOT NULL)')
        with database.atomic():
            MIGRATIONS[0](database, None)
            database.execute_sql("INSERT INTO schema_version VALUES (1, '2026-11-28T00:00:00.000+00:00')")
        assert migrate_database(database) == list(range(2, len(MIGRATIONS) + 1))
        rows = database.execute_sql('SELECT "version", "name", "applied_at" FROM "schema_version"').fetchall()
        assert rows[0][0] == 1 and rows[0][1].startswith("Release 1") and rows[0][2].startswith("2026-11-28")
    finally:
        database.close()


def test_a_schema_other_than_the_codes_is_refused(database_url, tmp_path):
    keys_dir = tmp_path / "keys"
    create_keys(keys_dir)
    config = {"DATABASE_URL": database_url, "SYNC_SERVER_KEYS_DIR": str(keys_dir)}
    with pytest.raises(SchemaOutdated, match="sync-server init-db"):
        create_app(config)
    database = connect_url(database_url)
    database.connect()
    try:
        migrate_database(database)
        assert create_app(config).test_client().get("/api/v1/health").json["schema_version"] == len(MIGRATIONS)
        database.execute_sql(f"INSERT INTO schema_version VALUES ({len(MIGRATIONS) + 1}, 'from the future', "
                             "'2030-01-01')")
        with pytest.raises(SchemaTooNew, match="newer than this sync server"):
            migrate_database(database)
        with pytest.raises(SchemaTooNew):
            create_app(config)
    finally:
        database.close()


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="the pool is PostgreSQL's (TEST_DATABASE_URL)")
def test_requests_return_their_connection_to_the_pool_and_a_fork_does_not_share_it(pg_database_url, tmp_path):
    keys_dir = tmp_path / "keys"
    create_keys(keys_dir)
    setup = connect_url(pg_database_url)
    setup.connect()
    setup.execute_sql("DROP SCHEMA public CASCADE")
    setup.execute_sql("CREATE SCHEMA public")
    migrate_database(setup)
    setup.close()

    # A URL of its own (the query goes to psycopg), so that this process's pool is not the other tests' one.
    url = f"{pg_database_url}?application_name=pool_test"
    client = create_app({"DATABASE_URL": url, "SYNC_SERVER_KEYS_DIR": str(keys_dir)}).test_client()
    pool = database_for(url)
    for _ in range(3):
        assert client.get("/api/v1/health").status_code == 200
        assert pool.is_closed() and not pool._in_use and len(pool._connections) == 1
    parents = pool._connections[0][2]

    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker forked from a master that had used the pool
        forgot = not pool._connections and not pool._in_use
        pool.connect()
        pool.execute_sql("SELECT 1")
        pool.close_all()  # had the child kept the parent's connection, this would end it for both
        os._exit(0 if forgot else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert client.get("/api/v1/health").status_code == 200
    assert pool._connections[0][2] is parents and not parents.closed
    assert parents.execute("SELECT current_setting('application_name')").fetchone()[0] == "pool_test"
