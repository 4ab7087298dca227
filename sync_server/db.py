"""The sync server's database: models, connection from ``DATABASE_URL``, and ordered migrations.

SQLite (a file, for the demo) or PostgreSQL via psycopg 3 (production). Invariants the database enforces:
- one journal entry per ``(station_id, seq)`` (the primary key of ``entry``; hot tables lead with station_id);
- a posting is never zero (``CHECK (amount_fen <> 0)``), a customer balance and a hold never negative (CHECKs);
- each transfer and each enrollment code is recorded once (primary keys).
That the postings of one entry sum to zero is enforced in code (``sync_server.book``) before any write, and on
PostgreSQL also by a statement trigger (``POSTGRES_BALANCED_POSTINGS``).

Schema changes are migrations: ``MIGRATIONS`` is an ordered list of functions; ``schema_version`` records which
ran. ``migrate_database`` runs the missing ones in order, each in its own transaction; never drop and recreate.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import unquote, urlparse

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    Check,
    CompositeKey,
    Database,
    DatabaseProxy,
    IntegerField,
    Model,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
)
from playhouse.migrate import SchemaMigrator

db_proxy = DatabaseProxy()
DEFAULT_DATABASE_URL = "sqlite:///sync-server.db"


def utc_now_text() -> str:
    """Now, as UTC ISO-8601 text with milliseconds (how the server stores times)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JSONField(TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = db_proxy
        legacy_table_names = False


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at = CharField()


class ServerSetting(BaseModel):
    """Server-wide values, one JSON value per key (``policy``)."""

    key = CharField(primary_key=True)
    value = JSONField()


class Station(BaseModel):
    """A station the bank knows. ``acked_seq``/``head`` are how far its journal has been applied."""

    station_id = CharField(primary_key=True)
    name = CharField()
    status = CharField(default="pending", constraints=[Check("status IN ('pending', 'active', 'revoked')")])
    flagged = BooleanField(default=False)
    flag_reason = TextField(null=True)
    signing_jwk = JSONField(null=True)
    encryption_jwk = JSONField(null=True)
    kid = CharField(null=True)
    acked_seq = BigIntegerField(default=0, constraints=[Check("acked_seq >= 0")])
    head = CharField(null=True)
    created_at = CharField()
    enrolled_at = CharField(null=True)
    last_sync_at = CharField(null=True)
    clock_offset_ms = BigIntegerField(null=True)
    revoked_at = CharField(null=True)


class EnrollmentCode(BaseModel):
    """A one-time code; only its SHA-256 is stored."""

    code_hash = CharField(primary_key=True)
    station_id = CharField(index=True)
    created_at = CharField()
    expires_at = CharField()
    used_at = CharField(null=True)


ACCOUNT_KINDS = (
    "customer", "station_cash", "float_funding", "cash_variance", "agent_payable", "commission_expense",
    "fee_income", "biller_payable", "transfer_clearing", "external_clearing", "opening_equity",
)
#: Asset and expense accounts grow with debits; the others (liabilities, income, equity) with credits.
DEBIT_NORMAL = frozenset({"station_cash", "cash_variance", "commission_expense"})


class Account(BaseModel):
    """A ledger account; ``balance_fen`` is on its normal side (a customer's money is positive)."""

    account_id = CharField(primary_key=True)
    kind = CharField(constraints=[Check("kind IN ({})".format(", ".join(f"'{k}'" for k in ACCOUNT_KINDS)))])
    name = CharField(default="")
    balance_fen = BigIntegerField(default=0)

    class Meta:
        constraints = [Check("kind <> 'customer' OR balance_fen >= 0")]


class Customer(BaseModel):
    account_id = CharField(primary_key=True)
    name = CharField()
    card_number = CharField(unique=True, null=True)
    passbook_number = CharField(unique=True, null=True)
    status = CharField(default="active", constraints=[Check("status IN ('active', 'locked', 'closed')")])
    pin_verifier = CharField()


class HomeStation(BaseModel):
    """A station where a customer is served offline (and so gets an allowance, held centrally)."""

    station_id = CharField()
    account_id = CharField(index=True)

    class Meta:
        primary_key = CompositeKey("station_id", "account_id")


class KnownPayee(BaseModel):
    account_id = CharField()
    payee_account = CharField()
    name = CharField()

    class Meta:
        primary_key = CompositeKey("account_id", "payee_account")


class BlockedPayee(BaseModel):
    account = CharField(primary_key=True)
    reason = CharField(default="")


class Biller(BaseModel):
    code = CharField(primary_key=True)
    kind = CharField(constraints=[Check("kind IN ('electricity', 'water', 'gas', 'mobile')")])
    name_zh = CharField()
    name_en = CharField()
    ref_pattern = CharField()
    ref_prefixes = JSONField(null=True)
    min_fen = BigIntegerField(default=100)
    max_fen = BigIntegerField(default=200_000)
    denominations = JSONField(null=True)


class Hold(BaseModel):
    """Money of a customer parked for offline use at one station (the station's allowance)."""

    station_id = CharField()
    account_id = CharField()
    amount_fen = BigIntegerField(constraints=[Check("amount_fen >= 0")])
    updated_at = CharField()

    class Meta:
        primary_key = CompositeKey("station_id", "account_id")


class Entry(BaseModel):
    """A station's journal entry as received: the exact token, and the bank's outcome for it."""

    station_id = CharField()
    seq = BigIntegerField()
    type = CharField()
    txn = CharField(null=True)
    token = TextField()
    received_at = CharField()
    outcome = CharField(constraints=[Check("outcome IN ('settled', 'rejected', 'acknowledged')")])
    reason = CharField(null=True)

    class Meta:
        primary_key = CompositeKey("station_id", "seq")
        indexes = ((("station_id", "txn"), False),)


class Posting(BaseModel):
    """One leg of a ledger transaction; amounts are debit-positive and an entry's legs sum to zero."""

    station_id = CharField()
    seq = BigIntegerField()
    leg = IntegerField()
    account_id = CharField(index=True)
    amount_fen = BigIntegerField(constraints=[Check("amount_fen <> 0")])
    memo = CharField(default="")

    class Meta:
        primary_key = CompositeKey("station_id", "seq", "leg")


class Transfer(BaseModel):
    """A customer's transfer, executed by the bank side (possibly delayed) unless cancelled first."""

    station_id = CharField()
    seq = BigIntegerField()
    txn = CharField()
    account_id = CharField()
    payee_account = CharField()
    payee_name = CharField()
    amount_fen = BigIntegerField(constraints=[Check("amount_fen > 0")])
    fee_fen = BigIntegerField(default=0)
    status = CharField(default="pending", constraints=[Check("status IN ('pending', 'executed', 'cancelled')")])
    execute_after = CharField()
    executed_at = CharField(null=True)

    class Meta:
        primary_key = CompositeKey("station_id", "seq")
        indexes = ((("station_id", "txn"), True),)


MODELS = [SchemaVersion, ServerSetting, Station, EnrollmentCode, Account, Customer, HomeStation, KnownPayee,
          BlockedPayee, Biller, Hold, Entry, Posting, Transfer]


# -- connection -----------------------------------------------------------------------------------------------
def connect_url(url: str) -> Database:
    """A peewee database for ``sqlite:///path`` or ``postgresql://user@host:port/name`` (psycopg 3)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:] if parsed.path.startswith("/") else parsed.path) or ":memory:"
        # IMMEDIATE: a writer takes the write lock when its transaction begins, so two workers applying the
        # same batch serialise instead of failing halfway with "database is locked".
        return SqliteDatabase(path, pragmas={"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                                             "busy_timeout": 30_000}, lock_type="IMMEDIATE",
                              check_same_thread=False)
    if parsed.scheme in ("postgres", "postgresql"):
        return PostgresqlDatabase(
            unquote(parsed.path.lstrip("/")),
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname,
            port=parsed.port or 5432,
            prefer_psycopg3=True,
        )
    raise ValueError(f"DATABASE_URL must start with sqlite:/// or postgresql:// (got {parsed.scheme!r})")


def is_postgres(database: Database | None = None) -> bool:
    """True when the models are bound to PostgreSQL (row locks, array inserts)."""
    database = database or db_proxy.obj
    return isinstance(database, PostgresqlDatabase)


# -- migrations -----------------------------------------------------------------------------------------------
def _migration_1(database: Database, migrator: SchemaMigrator) -> None:
    """The first schema: every table of this release.

    Later migrations use ``migrator`` (``playhouse.migrate``: add_column, add_index, ...); when a model changes,
    this function keeps creating the release-1 shape and a new migration changes it.
    """
    database.create_tables(MODELS[1:])
    if isinstance(database, PostgresqlDatabase):
        # Run through psycopg with parameters: a literal % in the SQL is written %%.
        for statement in POSTGRES_BALANCED_POSTINGS:
            database.execute_sql(statement)


#: PostgreSQL also refuses, per INSERT statement, postings whose legs do not sum to zero per (station_id, seq)
#: (the code writes all legs of a batch in one statement). SQLite has no transition tables: there the check in
#: ``book.Book.post`` is the only one.
POSTGRES_BALANCED_POSTINGS = [
    """CREATE FUNCTION posting_legs_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE unbalanced record;
    BEGIN
        SELECT station_id, seq, SUM(amount_fen) AS total INTO unbalanced FROM new_postings
            GROUP BY station_id, seq HAVING SUM(amount_fen) <> 0 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'postings of %% seq %% sum to %%, not zero',
                unbalanced.station_id, unbalanced.seq, unbalanced.total USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER posting_legs_balance AFTER INSERT ON posting REFERENCING NEW TABLE AS new_postings
       FOR EACH STATEMENT EXECUTE FUNCTION posting_legs_balance()""",
]


#: Ordered: the migration at index i brings the schema to version i + 1. Append; never edit a released one.
MIGRATIONS = [_migration_1]


def schema_version(database: Database) -> int:
    """The highest migration applied to ``database`` (0 for an empty one)."""
    with database.bind_ctx([SchemaVersion]):
        if not database.table_exists("schema_version"):
            return 0
        row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
        return row.version if row else 0


def migrate_database(database: Database) -> list[int]:
    """Run the migrations the database has not had yet; returns the versions applied."""
    applied = []
    with database.bind_ctx(MODELS):
        database.create_tables([SchemaVersion], safe=True)
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version <= schema_version(database):
                continue
            with database.atomic():
                migration(database, SchemaMigrator.from_database(database))
                SchemaVersion.create(version=version, applied_at=utc_now_text())
            applied.append(version)
    return applied
