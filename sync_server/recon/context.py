"""What one reconciliation run looks at: its period, its stations, its clock, the policy, and the database.

Every check receives a :class:`Context`. Queries filter or group by ``station_id`` first (``Context.stations_sql``)
so that the central tables can be distributed by station (Citus) without rewriting recon.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from peewee import Database

from sync_server.db import is_postgres
from sync_server.policy import CLOCK_OFFSET_MAX_MS, server_policy, station_policy

#: What recon reads from the server policy (``recon`` key), with these defaults.
DEFAULT_RECON_POLICY = {
    #: An active station that has not synced for longer than this is ``station_silent``.
    "station_silent_hours": 48,
    #: A station clock further than this from the bank's (the last sync's measurement) is ``clock_offset``.
    "clock_offset_max_ms": CLOCK_OFFSET_MAX_MS,
    #: A day close whose counted cash differs from the expected drawer by more than this is ``cash_variance``.
    "cash_variance_tolerance_fen": 1_000,
}


@dataclass
class Scope:
    """What to reconcile: business days ``date_from``..``date_to`` (None: all history), stations (None: all)."""

    date_from: str | None = None
    date_to: str | None = None
    stations: tuple[str, ...] | None = None
    now: datetime | None = None
    verify_all: bool = False

    def covers_day(self, day: str | None) -> bool:
        """A discrepancy of ``day`` is in the period (one without a day, about a station now, always is)."""
        if day is None:
            return True
        return (self.date_from is None or day >= self.date_from) and (self.date_to is None or day <= self.date_to)

    def covers_station(self, station: str | None) -> bool:
        return self.stations is None or station is None or station in self.stations


@dataclass
class Context:
    database: Database
    scope: Scope
    now: datetime
    policy: dict = field(default_factory=dict)
    recon_policy: dict = field(default_factory=dict)
    timezone: ZoneInfo | None = None
    #: Per station: whether its chain from genesis to its head held and the head's signature verified
    #: (set by ``integrity.checks``, read by ``completeness.proof``).
    heads_verified: dict = field(default_factory=dict)
    #: Per station: the seq its stored tail claim names, for the claims that verified (set by ``tail.checks``,
    #: read by ``completeness.revoked_stations``).
    tail_claims: dict = field(default_factory=dict)

    @classmethod
    def open(cls, database: Database, scope: Scope, now: datetime) -> Context:
        policy = server_policy()
        recon_policy = {**DEFAULT_RECON_POLICY, **(policy.get("recon") or {})}
        return cls(database, scope, now, policy, recon_policy, ZoneInfo(station_policy(policy)["timezone"]))

    @property
    def postgres(self) -> bool:
        return is_postgres(self.database)

    def rows(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        """Run a query written with ``?`` placeholders (never a ``?`` inside a literal) and return its rows."""
        return list(self.database.execute_sql(sql.replace("?", self.database.param), list(params)).fetchall())

    def stream(self, sql: str, params: list | tuple = (), name: str = "recon_stream", size: int = 5_000):
        """The rows of a query, in chunks (constant memory): a server-side cursor on PostgreSQL."""
        sql = sql.replace("?", self.database.param)
        if self.postgres:
            with self.database.connection().cursor(name=name) as cursor:
                cursor.itersize = size
                cursor.execute(sql, list(params))
                yield from cursor
        else:
            yield from self.database.execute_sql(sql, list(params))

    def by_keys(self, sql: str, wanted, chunk: int = 500) -> list[tuple]:
        """Rows of ``sql`` (written with ``station_id = ? AND seq IN ({seqs})``) for the ``(station_id, seq)``
        pairs in ``wanted``: one query per station and chunk of seqs."""
        by_station: dict[str, list[int]] = {}
        for station_id, seq in sorted(wanted):
            by_station.setdefault(station_id, []).append(seq)
        rows = []
        for station_id, seqs in by_station.items():
            for start in range(0, len(seqs), chunk):
                part = seqs[start:start + chunk]
                rows += self.rows(sql.format(seqs=", ".join(["?"] * len(part))), [station_id, *part])
        return rows

    def station_filter(self, column: str = "station_id") -> tuple[str, list]:
        """``AND <column> IN (?, ...)`` and its parameters when the run is limited to some stations, else ``""``."""
        if self.scope.stations is None:
            return "", []
        return f" AND {column} IN ({', '.join(['?'] * len(self.scope.stations))})", list(self.scope.stations)
