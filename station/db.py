"""The station's SQLite database: models, connection pragmas, and the journal's guard triggers.

Invariants and where they are enforced:
- the journal is append-only: UPDATE and DELETE on ``journal_entry`` are refused by triggers;
- ``journal_entry.seq`` is gapless: assigned as head + 1 inside the same IMMEDIATE transaction as the rows;
- the drawer never holds negative cash: ``CHECK (cash_fen >= 0)`` on ``business_day`` and a check in code;
- a transaction UUID is recorded once: ``operation.txn`` is the primary key.
"""

from __future__ import annotations

import json
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
    Model,
    SqliteDatabase,
    TextField,
)

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


class DatabaseDamaged(RuntimeError):
    """``PRAGMA quick_check`` failed: the station refuses to start on a damaged database."""


class JSONField(TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class UTCDateTimeField(TextField):
    """An aware datetime stored as UTC ISO-8601 text (sorts correctly; no local-time ambiguity)."""

    def db_value(self, value):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the station stores aware UTC times only")
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def python_value(self, value):
        return None if value is None else datetime.fromisoformat(value)


class BaseModel(Model):
    class Meta:
        database = db_proxy
        legacy_table_names = False


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
    balance_as_of = UTCDateTimeField(null=True)


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


class BusinessDay(BaseModel):
    """One open-to-close day of the drawer; ``cash_fen`` is the cash the drawer should hold now."""

    business_date = CharField()
    opened_at = UTCDateTimeField()
    opened_by = CharField()
    float_fen = IntegerField()
    open_counts = JSONField()
    cash_fen = IntegerField(constraints=[Check("cash_fen >= 0")])
    closed_at = UTCDateTimeField(null=True)
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
    recorded_at = UTCDateTimeField()


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
    status = CharField(default="recorded")
    outcome_reason = CharField(null=True)
    ref_txn = CharField(null=True)
    details = JSONField(default=dict)
    created_at = UTCDateTimeField()

    class Meta:
        indexes = ((("customer", "business_date"), False),)


class PrintedReceipt(BaseModel):
    """Receipts whose first paper copy came out: every later print is marked 重印 DUPLICATE."""

    seq = IntegerField(primary_key=True)
    first_printed_at = UTCDateTimeField()
    prints = IntegerField(default=1)


MODELS = [Setting, Agent, Customer, Payee, BlockedPayee, Biller, BusinessDay, JournalEntry, Operation, PrintedReceipt]

JOURNAL_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS journal_entry_no_update BEFORE UPDATE ON journal_entry
       BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS journal_entry_no_delete BEFORE DELETE ON journal_entry
       BEGIN SELECT RAISE(ABORT, 'journal entries are append-only'); END""",
]


def open_database(path: str) -> SqliteDatabase:
    """Open the station database with its pragmas, refuse a damaged file, create what is missing."""
    database = SqliteDatabase(path, pragmas=PRAGMAS, lock_type="IMMEDIATE", check_same_thread=False)
    try:
        database.connect(reuse_if_open=True)
        result = database.execute_sql("PRAGMA quick_check").fetchone()[0]
    except DatabaseError as exc:
        result = str(exc)
    if result != "ok":
        database.close()
        raise DatabaseDamaged(
            f"The station database {path} is damaged ({result}). Do not serve customers. Copy the whole data "
            "folder aside (never delete it), salvage what still reads with `sqlite3 station.db .recover`, and "
            "call the bank: everything up to the last acknowledged sync is safe at the bank."
        )
    with database.bind_ctx(MODELS):
        database.create_tables(MODELS)
        for sql in JOURNAL_TRIGGERS:
            database.execute_sql(sql)
    return database
