"""The station's SQLite database: models, connection pragmas, and numbered migrations.

Invariants and where they are enforced:
- the journal is append-only: UPDATE and DELETE on ``journal_entry`` are refused by triggers;
- ``journal_entry.seq`` is gapless: assigned as head + 1 inside the same IMMEDIATE transaction as the rows;
- the drawer never holds negative cash: ``CHECK (cash_fen >= 0)`` on ``business_day`` and a check in code;
- a transaction UUID is recorded once: ``operation.txn`` is the primary key.

Schema changes are migrations: ``MIGRATIONS`` is an append-only list of frozen functions (explicit SQL, never the
models); ``schema_version`` records which ran (version, name, applied_at). ``open_database`` runs the missing ones
at every start, each in its own transaction, and refuses a database that a newer release has migrated. A database
from release 1 (before the history table existed) is recognised by its tables and adopted as version 1.

Damage: ``open_database`` runs ``PRAGMA integrity_check`` first and turns every report of damage by SQLite (there, in
the migrations, or later while a command reads: ``sqlite_damage``) into :class:`DatabaseDamaged`, which says what to
do. A station's database that is missing, zero-length or without a journal is refused (:class:`DatabaseMissing`),
never made afresh: that would start a second chain at seq 1.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from peewee import (
    BooleanField,
    CharField,
    Check,
    DatabaseError,
    DatabaseProxy,
    ForeignKeyField,
    IntegerField,
    SqliteDatabase,
    TextField,
    _savepoint,
)
from playhouse.migrate import SqliteMigrator

from dbkit import JSONField, SchemaTooNew, UTCTimeField, base_model, schema_version
from station.protocol.entry_types import OperationState
from station.protocol.times import utc_text

#: The database the models use in the current thread or context; set only through :func:`bound`.
_bound_database: ContextVar[SqliteDatabase | None] = ContextVar("station_database", default=None)


class NoStationBound(RuntimeError):
    """A model was used with no station's database bound in this context (a programming error, not a refusal)."""


class BoundDatabaseProxy(DatabaseProxy):
    """A ``DatabaseProxy`` whose target is per context (thread, request), never process-wide.

    peewee's own proxy holds one target for the whole process, and ``bind_ctx`` rewrites the models' metadata
    for every thread: two waitress threads (or two stations in one test) would write into each other's
    database. Here the target lives in a ``ContextVar``: each thread sees only what it bound itself.
    """

    __slots__ = ()

    def __init__(self):
        object.__setattr__(self, "_callbacks", [])

    @property
    def obj(self) -> SqliteDatabase | None:
        return _bound_database.get()

    def initialize(self, obj):
        raise TypeError("bind a station's database with station.db.bound(database), not initialize()")

    def __getattr__(self, attr):
        database = _bound_database.get()
        if database is None:
            raise NoStationBound(
                "no station database is bound here: call the function with the station (it binds itself), "
                "or wrap the code in `with st.bound():`"
            )
        return getattr(database, attr)

    def __enter__(self):
        return self.__getattr__("__enter__")()

    def __exit__(self, *exc_info):
        return self.__getattr__("__exit__")(*exc_info)


db_proxy = BoundDatabaseProxy()


@contextmanager
def bound(database: SqliteDatabase) -> Iterator[SqliteDatabase]:
    """Point the models at ``database`` in this context until the block ends; nests, and restores on exit."""
    token = _bound_database.set(database)
    try:
        yield database
    finally:
        _bound_database.reset(token)


PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL: a returned receipt survives power loss
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "cache_size": -8000,
}


class StationDatabase(SqliteDatabase):
    """peewee's SQLite database, whose rollback keeps the error that caused it.

    After some errors (SQLITE_FULL, SQLITE_IOERR) SQLite has already rolled the whole transaction back by itself;
    peewee's ROLLBACK then fails with "cannot rollback - no transaction is active", which would replace the error
    that mattered (a full disk) with one that says nothing. Here a rollback with no transaction left does nothing.
    """

    def rollback(self):
        if self.is_closed() or self.connection().in_transaction:
            super().rollback()

    def savepoint(self):
        return _Savepoint(self)


class _Savepoint(_savepoint):
    """A savepoint whose rollback does nothing once SQLite has rolled the whole transaction back itself."""

    def rollback(self, begin=True):
        if self.db.connection().in_transaction:
            super().rollback(begin)


class DatabaseDamaged(RuntimeError):
    """The database fails ``PRAGMA integrity_check``, or SQLite finds it corrupt while reading: the station refuses
    to start, and every command stops with this message instead of a traceback."""


class DatabaseMissing(DatabaseDamaged):
    """The data folder holds a station, but its database is missing, empty (0 bytes) or holds no journal.

    Refused rather than started afresh: a new database would begin a second chain at seq 1, a fork the bank refuses,
    and the entries the bank has not yet received would be gone unnoticed."""


#: What to do, said with every refusal (docs/operations.md, "A damaged or missing database").
RECOVERY = (
    "Do not serve customers. Restore the latest backup with `station restore --replace BACKUP`, which keeps this "
    "folder aside, never deleted (docs/operations.md, \"A damaged or missing database\"). Call the bank: everything "
    "up to the last acknowledged sync is safe at the bank."
)


def sqlite_damage(exc: BaseException | None) -> str | None:
    """SQLite's words when ``exc`` (sqlite3's error, or peewee's wrapping it) says the file is not a sound
    database (corrupt, not a database, text that is not UTF-8); None for any other error (busy, disk full, ...)."""
    while exc is not None:
        if isinstance(exc, sqlite3.DatabaseError):
            name = getattr(exc, "sqlite_errorname", None) or ""
            # Text that does not decode was never written by this software: sqlite3 raises it without a code.
            if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or str(exc).startswith("Could not decode"):
                return str(exc)
            return None
        exc = exc.__context__  # peewee raises its own class while handling sqlite3's
    return None


def damaged(where: str, reason: str) -> DatabaseDamaged:
    """The refusal for a damaged database (``where``: its path, or words for it), with SQLite's ``reason``."""
    return DatabaseDamaged(f"The station database {where} is damaged ({reason}). {RECOVERY} What still reads can be "
                           "salvaged from the folder kept aside with `sqlite3 station.db .recover`.")


BaseModel = base_model(db_proxy)


class Setting(BaseModel):
    """Station configuration and sync state, one JSON value per key."""

    key = CharField(primary_key=True)
    value = JSONField()


class Agent(BaseModel):
    agent_id = CharField(primary_key=True)
    name = CharField()
    role = CharField(constraints=[Check("role IN ('agent', 'supervisor')")])
    pin_verifier = CharField()
    failed_pins = IntegerField(default=0)
    locked = BooleanField(default=False)


class Customer(BaseModel):
    """A customer as the bank's downlink (or the demo loader) describes them.

    ``allowance_fen`` is what the bank holds for offline use as of ``allowance_seq``: debits recorded after that
    seq are subtracted from it when checking (see ``station.limits``).
    """

    account_id = CharField(unique=True)
    name = CharField()
    card_number = CharField(unique=True, null=True)
    passbook_number = CharField(unique=True, null=True)
    status = CharField(default="active", constraints=[Check("status IN ('active', 'locked', 'closed')")])
    pin_verifier = CharField()
    pin_failures = IntegerField(default=0)
    allowance_fen = IntegerField(default=0, constraints=[Check("allowance_fen >= 0")])
    allowance_seq = IntegerField(default=0)
    balance_fen = IntegerField(null=True)
    balance_as_of = UTCTimeField(null=True)
    #: The bank's balance snapshot counts this station's entries through this seq (None: unknown, e.g. the demo
    #: loader's): the live balance is the snapshot minus this station's live debits after it (``station.online``).
    balance_seq = IntegerField(null=True)
    #: As the bank sends it (None: unknown): a customer of ``elderly_age`` or more is asked to call family at the
    #: fraud warning.
    birth_year = IntegerField(null=True)
    #: The risk-assessment level the bank sends, 1 to 5 (None: not assessed): a wealth-management order needs it
    #: at least the product's (``station.wmp``).
    risk_level = IntegerField(null=True)


class Payee(BaseModel):
    """A customer's known payee: transfers to anyone else get the fraud warning first."""

    customer = ForeignKeyField(Customer, backref="payees", on_delete="CASCADE")
    account = CharField()
    name = CharField()

    class Meta:
        indexes = ((("customer", "account"), True),)


class BlockedPayee(BaseModel):
    account = CharField(primary_key=True)
    reason = CharField(default="")


class Biller(BaseModel):
    """One entry of the biller catalogue; ``denominations`` (fen) means only those amounts are accepted."""

    code = CharField(primary_key=True)
    kind = CharField(constraints=[Check("kind IN ('electricity', 'water', 'gas', 'mobile')")])
    name_zh = CharField()
    name_en = CharField()
    ref_pattern = CharField()
    ref_prefixes = JSONField(null=True)
    min_fen = IntegerField(default=100)
    max_fen = IntegerField(default=200_000)
    denominations = JSONField(null=True)


class WmpProduct(BaseModel):
    """One open wealth-management product of the bank's catalogue (``station.protocol.wmp.catalogue_item``): the
    window is of bank-local dates, both ends included."""

    code = CharField(primary_key=True)
    name_zh = CharField()
    name_en = CharField()
    risk_level = IntegerField()
    min_fen = IntegerField()
    step_fen = IntegerField()
    opens_on = CharField()
    closes_on = CharField()
    description_zh = CharField()
    description_en = CharField()


class BusinessDay(BaseModel):
    """One open-to-close day of the drawer; ``cash_fen`` is the cash the drawer should hold now."""

    business_date = CharField()
    opened_at = UTCTimeField()
    opened_by = CharField()
    float_fen = IntegerField()
    open_counts = JSONField()
    cash_fen = IntegerField(constraints=[Check("cash_fen >= 0")])
    closed_at = UTCTimeField(null=True)
    closed_by = CharField(null=True)
    counted_fen = IntegerField(null=True)
    variance_fen = IntegerField(null=True)
    close_counts = JSONField(null=True)


class JournalEntry(BaseModel):
    """The append-only, hash-chained, signed journal: one row per state change."""

    seq = IntegerField(primary_key=True)
    type = CharField()
    txn = CharField(null=True, index=True)
    token = TextField()
    recorded_at = UTCTimeField()


class Operation(BaseModel):
    """A customer-facing operation (its business row); the journal entry at ``seq`` is its receipt.

    ``debit_fen`` is what it takes from the customer's account (limits, allowance, exposure);
    ``cash_fen`` is its signed effect on the drawer. ``status``: recorded (offline, waiting for the bank),
    settled, rejected (by the bank), cancelled (transfer), reversed.
    """

    txn = CharField(primary_key=True)
    seq = IntegerField(unique=True)
    type = CharField(index=True)
    request_hash = CharField()
    customer = ForeignKeyField(Customer, null=True, backref="operations")
    day = ForeignKeyField(BusinessDay, null=True, backref="operations")
    agent_id = CharField()
    business_date = CharField(index=True)
    amount_fen = IntegerField(constraints=[Check("amount_fen >= 0")])
    fee_fen = IntegerField(default=0, constraints=[Check("fee_fen >= 0")])
    debit_fen = IntegerField(default=0, constraints=[Check("debit_fen >= 0")])
    cash_fen = IntegerField(default=0)
    status = CharField(default=OperationState.RECORDED.value)
    outcome_reason = CharField(null=True)
    ref_txn = CharField(null=True)
    details = JSONField(default=dict)
    created_at = UTCTimeField()
    #: The bank's real-time authorization it was recorded under (``bank_authorization.auth_id``), or None when
    #: recorded under the offline rules. An authorized debit is held by the bank, outside the offline allowance.
    auth_id = CharField(null=True)

    class Meta:
        indexes = ((("customer", "business_date"), False),)


class BankAuthorization(BaseModel):
    """Every real-time answer of the bank this station received (``station.online``), kept as its signed word.

    ``auth_id`` and ``expires_at`` are set for a grant, ``reason`` for a refusal; ``token`` is the answer's JWS,
    verified with the pinned server key before it was stored. Times are the bank's.
    """

    auth_id = CharField(null=True, unique=True)
    txn = CharField(index=True)
    kind = CharField()
    account_id = CharField()
    amount_fen = IntegerField()
    fee_fen = IntegerField()
    reason = CharField(null=True)
    expires_at = UTCTimeField(null=True)
    execute_after = UTCTimeField(null=True)
    server_time = UTCTimeField()
    token = TextField()
    received_at = UTCTimeField()


class PrintedReceipt(BaseModel):
    """Receipts whose first paper copy came out: every later print is marked 重印 DUPLICATE."""

    seq = IntegerField(primary_key=True)
    first_printed_at = UTCTimeField()
    prints = IntegerField(default=1)


class VoiceAnswer(BaseModel):
    """The bank's answer to a customer's voice recorded here (the ``feedback`` entry at ``seq``), as the downlink
    brought it (``voice_answers``); ``read_at``: when the agent marked it read (None: the home screen says so)."""

    seq = IntegerField(primary_key=True)
    note = TextField()
    answered_at = UTCTimeField()
    read_at = UTCTimeField(null=True)


MODELS = [Setting, Agent, Customer, Payee, BlockedPayee, Biller, BusinessDay, JournalEntry, Operation, PrintedReceipt,
          BankAuthorization, VoiceAnswer, WmpProduct]

SCHEMA_HISTORY_DDL = (
    'CREATE TABLE IF NOT EXISTS "schema_version" ("version" INTEGER NOT NULL PRIMARY KEY, '
    '"name" VARCHAR(255) NOT NULL, "applied_at" TEXT NOT NULL)'
)


class SchemaMismatch(RuntimeError):
    """A database without migration history whose tables are not release 1's: it is not adopted."""


# -- migrations -----------------------------------------------------------------------------------------------
# Each migration is frozen: its SQL is written out here, never derived from the models above, so that changing a
# model later never changes what an old migration does. A model change comes with a new migration appended to
# MIGRATIONS (``playhouse.migrate`` through the ``migrator`` argument, or plain SQL), and
# tests/test_station_migrations.py checks that the migrated schema equals the models'.

#: Release 1 exactly as ``create_tables(MODELS)`` made it at commit caead6e, plus the journal's guard triggers.
#: ``IF NOT EXISTS`` everywhere: a database from that release (tables, no history) is adopted by running this.
RELEASE_1_SCHEMA = [
    'CREATE TABLE IF NOT EXISTS "agent" ("agent_id" VARCHAR(255) NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT '
    "NULL, \"role\" VARCHAR(255) NOT NULL CHECK (role IN ('agent', 'supervisor')), \"pin_verifier\" VARCHAR(255) "
    'NOT NULL, "failed_pins" INTEGER NOT NULL, "locked" INTEGER NOT NULL)',
    'CREATE TABLE IF NOT EXISTS "biller" ("code" VARCHAR(255) NOT NULL PRIMARY KEY, "kind" VARCHAR(255) NOT NULL '
    "CHECK (kind IN ('electricity', 'water', 'gas', 'mobile')), \"name_zh\" VARCHAR(255) NOT NULL, \"name_en\" "
    'VARCHAR(255) NOT NULL, "ref_pattern" VARCHAR(255) NOT NULL, "ref_prefixes" TEXT, "min_fen" INTEGER NOT NULL, '
    '"max_fen" INTEGER NOT NULL, "denominations" TEXT)',
    'CREATE TABLE IF NOT EXISTS "blocked_payee" ("account" VARCHAR(255) NOT NULL PRIMARY KEY, "reason" '
    "VARCHAR(255) NOT NULL)",
    'CREATE TABLE IF NOT EXISTS "business_day" ("id" INTEGER NOT NULL PRIMARY KEY, "business_date" VARCHAR(255) '
    'NOT NULL, "opened_at" TEXT NOT NULL, "opened_by" VARCHAR(255) NOT NULL, "float_fen" INTEGER NOT NULL, '
    '"open_counts" TEXT NOT NULL, "cash_fen" INTEGER NOT NULL CHECK (cash_fen >= 0), "closed_at" TEXT, '
    '"closed_by" VARCHAR(255), "counted_fen" INTEGER, "variance_fen" INTEGER, "close_counts" TEXT)',
    'CREATE TABLE IF NOT EXISTS "customer" ("id" INTEGER NOT NULL PRIMARY KEY, "account_id" VARCHAR(255) NOT NULL, '
    '"name" VARCHAR(255) NOT NULL, "card_number" VARCHAR(255), "passbook_number" VARCHAR(255), "status" '
    "VARCHAR(255) NOT NULL CHECK (status IN ('active', 'locked', 'closed')), \"pin_verifier\" VARCHAR(255) NOT "
    'NULL, "pin_failures" INTEGER NOT NULL, "allowance_fen" INTEGER NOT NULL CHECK (allowance_fen >= 0), '
    '"allowance_seq" INTEGER NOT NULL, "balance_fen" INTEGER, "balance_as_of" TEXT)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "customer_account_id" ON "customer" ("account_id")',
    'CREATE UNIQUE INDEX IF NOT EXISTS "customer_card_number" ON "customer" ("card_number")',
    'CREATE UNIQUE INDEX IF NOT EXISTS "customer_passbook_number" ON "customer" ("passbook_number")',
    'CREATE TABLE IF NOT EXISTS "journal_entry" ("seq" INTEGER NOT NULL PRIMARY KEY, "type" VARCHAR(255) NOT NULL, '
    '"txn" VARCHAR(255), "token" TEXT NOT NULL, "recorded_at" TEXT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "journal_entry_txn" ON "journal_entry" ("txn")',
    'CREATE TABLE IF NOT EXISTS "operation" ("txn" VARCHAR(255) NOT NULL PRIMARY KEY, "seq" INTEGER NOT NULL, '
    '"type" VARCHAR(255) NOT NULL, "request_hash" VARCHAR(255) NOT NULL, "customer_id" INTEGER, "day_id" INTEGER, '
    '"agent_id" VARCHAR(255) NOT NULL, "business_date" VARCHAR(255) NOT NULL, "amount_fen" INTEGER NOT NULL CHECK '
    '(amount_fen >= 0), "fee_fen" INTEGER NOT NULL CHECK (fee_fen >= 0), "debit_fen" INTEGER NOT NULL CHECK '
    '(debit_fen >= 0), "cash_fen" INTEGER NOT NULL, "status" VARCHAR(255) NOT NULL, "outcome_reason" VARCHAR(255), '
    '"ref_txn" VARCHAR(255), "details" TEXT NOT NULL, "created_at" TEXT NOT NULL, FOREIGN KEY ("customer_id") '
    'REFERENCES "customer" ("id"), FOREIGN KEY ("day_id") REFERENCES "business_day" ("id"))',
    'CREATE UNIQUE INDEX IF NOT EXISTS "operation_seq" ON "operation" ("seq")',
    'CREATE INDEX IF NOT EXISTS "operation_type" ON "operation" ("type")',
    'CREATE INDEX IF NOT EXISTS "operation_customer_id" ON "operation" ("customer_id")',
    'CREATE INDEX IF NOT EXISTS "operation_day_id" ON "operation" ("day_id")',
    'CREATE INDEX IF NOT EXISTS "operation_business_date" ON "operation" ("business_date")',
    'CREATE INDEX IF NOT EXISTS "operation_customer_id_business_date" ON "operation" ("customer_id", '
    '"business_date")',
    'CREATE TABLE IF NOT EXISTS "payee" ("id" INTEGER NOT NULL PRIMARY KEY, "customer_id" INTEGER NOT NULL, '
    '"account" VARCHAR(255) NOT NULL, "name" VARCHAR(255) NOT NULL, FOREIGN KEY ("customer_id") REFERENCES '
    '"customer" ("id") ON DELETE CASCADE)',
    'CREATE INDEX IF NOT EXISTS "payee_customer_id" ON "payee" ("customer_id")',
    'CREATE UNIQUE INDEX IF NOT EXISTS "payee_customer_id_account" ON "payee" ("customer_id", "account")',
    'CREATE TABLE IF NOT EXISTS "printed_receipt" ("seq" INTEGER NOT NULL PRIMARY KEY, "first_printed_at" TEXT NOT '
    'NULL, "prints" INTEGER NOT NULL)',
    'CREATE TABLE IF NOT EXISTS "setting" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL)',
    # The journal is append-only: the database itself refuses to change or remove an entry.
    """CREATE TRIGGER IF NOT EXISTS journal_entry_no_update BEFORE UPDATE ON journal_entry
       BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS journal_entry_no_delete BEFORE DELETE ON journal_entry
       BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END""",
]


def _table_shapes(database: SqliteDatabase) -> dict[str, list[tuple]]:
    """Each table's columns as (name, type, not null, primary key), in order; the history table left out."""
    tables = [t for t in database.get_tables() if t != "schema_version"]
    return {t: [tuple(row[1:4]) + (row[5],) for row in database.execute_sql(f'PRAGMA table_info("{t}")')]
            for t in tables}


def _release_1(database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    """Release 1: the tables, indexes and journal triggers the station shipped with (commit caead6e)."""
    adopting = any(table != "schema_version" for table in database.get_tables())
    for sql in RELEASE_1_SCHEMA:
        database.execute_sql(sql)
    if adopting:
        # Compare with release 1 built afresh in memory: a table the release had with other columns is not adopted.
        expected = SqliteDatabase(":memory:")
        for sql in RELEASE_1_SCHEMA:
            expected.execute_sql(sql)
        matches = _table_shapes(database) == _table_shapes(expected)
        expected.close()
        if not matches:
            raise SchemaMismatch(
                "The station database has tables but no migration history, and they are not release 1's: it was "
                "not made by this software. Copy the data folder aside and call the bank."
            )


#: Migration 2 exactly as written (issue 11: online operations).
ONLINE_AUTHORIZATIONS_SCHEMA = [
    'CREATE TABLE "bank_authorization" ("id" INTEGER NOT NULL PRIMARY KEY, "auth_id" VARCHAR(255), "txn" '
    'VARCHAR(255) NOT NULL, "kind" VARCHAR(255) NOT NULL, "account_id" VARCHAR(255) NOT NULL, "amount_fen" INTEGER '
    'NOT NULL, "fee_fen" INTEGER NOT NULL, "reason" VARCHAR(255), "expires_at" TEXT, "execute_after" TEXT, '
    '"server_time" TEXT NOT NULL, "token" TEXT NOT NULL, "received_at" TEXT NOT NULL)',
    'CREATE UNIQUE INDEX "bank_authorization_auth_id" ON "bank_authorization" ("auth_id")',
    'CREATE INDEX "bank_authorization_txn" ON "bank_authorization" ("txn")',
    # SQLite writes an added column before the table's constraints: the same text create_tables gives.
    'ALTER TABLE "operation" ADD COLUMN "auth_id" VARCHAR(255)',
    'ALTER TABLE "customer" ADD COLUMN "balance_seq" INTEGER',
]


def _online_authorizations(database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    """Online operations: the bank's real-time authorizations, operation.auth_id, customer.balance_seq."""
    for sql in ONLINE_AUTHORIZATIONS_SCHEMA:
        database.execute_sql(sql)


def _customer_birth_year(database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    """Customer birth year: the fraud warning asks to call the family of an elderly customer."""
    database.execute_sql('ALTER TABLE "customer" ADD COLUMN "birth_year" INTEGER')


def _voice_answers(database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    """The bank's answers to customer voice (issue 14: "客户有呼声，银行有回声"), by the feedback entry's seq."""
    database.execute_sql('CREATE TABLE "voice_answer" ("seq" INTEGER NOT NULL PRIMARY KEY, "note" TEXT NOT NULL, '
                         '"answered_at" TEXT NOT NULL, "read_at" TEXT)')


#: Migration 5 exactly as written (issue 14: wealth-management products).
WMP_SCHEMA = [
    'CREATE TABLE "wmp_product" ("code" VARCHAR(255) NOT NULL PRIMARY KEY, "name_zh" VARCHAR(255) NOT NULL, '
    '"name_en" VARCHAR(255) NOT NULL, "risk_level" INTEGER NOT NULL, "min_fen" INTEGER NOT NULL, "step_fen" INTEGER '
    'NOT NULL, "opens_on" VARCHAR(255) NOT NULL, "closes_on" VARCHAR(255) NOT NULL, "description_zh" VARCHAR(255) '
    'NOT NULL, "description_en" VARCHAR(255) NOT NULL)',
    'ALTER TABLE "customer" ADD COLUMN "risk_level" INTEGER',
]


def _wealth_products(database: SqliteDatabase, migrator: SqliteMigrator) -> None:
    """Wealth-management products: the bank's open catalogue and the customer's risk-assessment level."""
    for sql in WMP_SCHEMA:
        database.execute_sql(sql)


#: Ordered: the migration at index i brings the schema to version i + 1. Append; never edit a released one.
MIGRATIONS = [_release_1, _online_authorizations, _customer_birth_year, _voice_answers, _wealth_products]


def migrate_database(database: SqliteDatabase) -> list[int]:
    """Run the migrations ``database`` has not had, each in its own IMMEDIATE transaction; the versions applied.

    Refuses (``SchemaTooNew``) a database a newer release has migrated. Another process opening the same data
    folder at the same time waits for the write lock and then finds the work done.
    """
    database.execute_sql(SCHEMA_HISTORY_DDL)
    if schema_version(database) > len(MIGRATIONS):
        raise SchemaTooNew(
            f"The station database is at schema version {schema_version(database)}, newer than this software "
            f"(version {len(MIGRATIONS)}). Install the newer station software again; never go back a release."
        )
    applied = []
    for version, migration in enumerate(MIGRATIONS, start=1):
        if version <= schema_version(database):
            continue
        with database.atomic():
            if version <= schema_version(database):  # another process migrated while we waited for the lock
                continue
            migration(database, SqliteMigrator(database))
            database.execute_sql(
                'INSERT INTO "schema_version" ("version", "name", "applied_at") VALUES (?, ?, ?)',
                (version, migration.__doc__.split("\n", 1)[0], utc_text(datetime.now(UTC))),
            )
        applied.append(version)
    return applied


def _refuse_missing(path: str) -> None:
    """Refuse a station's database that is not there or has no bytes (``DatabaseMissing``)."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        size = None
    if not size:
        state = "missing" if size is None else "empty (0 bytes)"
        raise DatabaseMissing(
            f"The station database {path} is {state}, but its folder holds a station (config and keys). It is not "
            f"started afresh: a new journal would fork the station's chain at the bank. {RECOVERY} If this device "
            "never served a customer (its set-up was cut short), move the folder aside and set the device up again."
        )


def _check_integrity(database: SqliteDatabase, path: str) -> None:
    """``PRAGMA integrity_check`` (every page, every index against its table, NOT NULL and CHECK constraints);
    raises :class:`DatabaseDamaged` with its first findings."""
    try:
        database.connect(reuse_if_open=True)
        findings = [row[0] for row in database.execute_sql("PRAGMA integrity_check")]
    except (DatabaseError, sqlite3.DatabaseError) as exc:
        if sqlite_damage(exc) is None:
            raise
        findings = [sqlite_damage(exc)]
    if findings != ["ok"]:
        more = f"; and {len(findings) - 3} more" if len(findings) > 3 else ""
        raise damaged(path, "; ".join(findings[:3]) + more)


def open_database(path: str, *, existing: bool = False) -> SqliteDatabase:
    """Open the station database with its pragmas, refuse a damaged file, run the migrations it has not had.

    ``existing``: the database of a station already set up, so it must be there with its journal; a missing or
    zero-length file, or an empty journal, is refused (:class:`DatabaseMissing`) instead of being made anew.
    Every SQLite report of damage on the way becomes :class:`DatabaseDamaged`.
    """
    if existing:
        _refuse_missing(path)
    database = StationDatabase(path, pragmas=PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False)
    try:
        _check_integrity(database, path)
        migrate_database(database)
        if existing and database.execute_sql("SELECT 1 FROM journal_entry LIMIT 1").fetchone() is None:
            raise DatabaseMissing(
                f"The station database {path} holds no journal, but its folder holds a station (config and keys). "
                f"It is not started afresh: a new journal would fork the station's chain at the bank. {RECOVERY}"
            )
    except (DatabaseError, sqlite3.DatabaseError) as exc:
        database.close()
        reason = sqlite_damage(exc)
        if reason is None:
            raise
        raise damaged(path, reason) from exc
    except BaseException:
        database.close()
        raise
    return database
