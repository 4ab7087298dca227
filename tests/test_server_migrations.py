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
