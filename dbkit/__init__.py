"""The peewee pieces both databases share: the station's SQLite and the sync server's SQLite or PostgreSQL.

Both sides may import this package; it imports neither of them (only ``station.protocol.times``, pure code), so
the server still takes nothing from ``station`` but its protocol. Each side keeps its own models, proxy and
frozen migrations; what is here is what is truly the same on both: how JSON and times are stored, the base model
over a side's proxy, and how the migration history is read and a newer schema refused.
"""

from __future__ import annotations

import json

from peewee import Database, DatabaseProxy, Model, TextField

from station.protocol.times import parse_utc, utc_text


class JSONField(TextField):
    """A JSON value in a TEXT column: keys sorted, UTF-8 unescaped, so equal values are stored as equal text."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class UTCTimeField(TextField):
    """An aware datetime stored as ``utc_text`` (``2026-11-28T08:10:00.123Z``); reads older rows' forms too.

    Text of this one form sorts in time order. Rows a previous release wrote (``+00:00``, microseconds) still
    read, and compare with new ones as text to the millisecond (see ``station.protocol.times``).
    """

    def db_value(self, value):
        return None if value is None else utc_text(value)

    def python_value(self, value):
        return None if value is None else parse_utc(value)


def base_model(proxy: DatabaseProxy) -> type[Model]:
    """The base class of one side's models: bound to that side's proxy, tables named in snake_case."""

    class BaseModel(Model):
        class Meta:
            database = proxy
            legacy_table_names = False

    return BaseModel


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer release than this code: never run old code on it."""


def schema_version(database: Database) -> int:
    """The highest migration applied to ``database`` (0 when none is recorded, or there is no history table)."""
    if not database.table_exists("schema_version"):
        return 0
    return database.execute_sql('SELECT COALESCE(MAX("version"), 0) FROM "schema_version"').fetchone()[0]
