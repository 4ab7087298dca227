"""Schema migrations: ordered, recorded in schema_version, each applied once, written with playhouse.migrate."""

from __future__ import annotations

from peewee import IntegerField
from playhouse.migrate import migrate

from sync_server import db as server_db_module
from sync_server.db import connect_url, migrate_database, schema_version


def test_migrations_apply_in_order_once_and_later_ones_alter_in_place(database_url, monkeypatch):
    database = connect_url(database_url)
    database.connect()
    try:
        assert schema_version(database) == 0
        assert migrate_database(database) == [1]
        assert migrate_database(database) == []
        with database.bind_ctx(server_db_module.MODELS):
            server_db_module.Station.create(station_id="ST-0001", name="kept", created_at="2026-11-28T00:00:00")

        def add_column(database, migrator):
            migrate(migrator.add_column("station", "drawer_limit_fen", IntegerField(null=True)))

        monkeypatch.setattr(server_db_module, "MIGRATIONS", [*server_db_module.MIGRATIONS, add_column])
        assert migrate_database(database) == [2]
        assert schema_version(database) == 2
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
