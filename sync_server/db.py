"""The sync server's database: models, connection from ``DATABASE_URL``, and ordered migrations.

SQLite (a file, for the demo) or PostgreSQL via psycopg 3 (production). Invariants the database enforces:
- one journal entry per ``(station_id, seq)`` (the primary key of ``entry``; hot tables lead with station_id);
- a posting is never zero (``CHECK (amount_fen <> 0)``), a customer balance and a hold never negative (CHECKs);
- each transfer and each enrollment code is recorded once (primary keys).
- ``posting``, ``entry`` (``_migration_2``), ``recon_item`` (``_migration_3``), ``voice_event`` (the customer
  voice follow-up trail, ``_migration_12``) and ``complaint_event`` (``_migration_14``) are append-only: triggers
  refuse UPDATE and DELETE;
- a customer operation's txn is recorded once bank-wide (the primary key of ``seen_txn``).
- a station's txn has at most one authorization grant (a unique index over ``authorization`` rows that are not
  refusals), and each of its request nonces is taken once (the primary key of ``authorization_nonce``).
That the postings of one entry sum to zero is enforced in code (``sync_server.book``) before any write, and on
PostgreSQL also by triggers that sum each entry an INSERT touched and refuse at COMMIT one that does not balance
(``POSTGRES_LEGS_CHECK_18``). ``sync_server.checks`` verifies all of these, and that stored balances and holds agree
with the postings, on a live database.

Schema changes are migrations: ``MIGRATIONS`` is an append-only list of frozen functions (explicit SQL, never the
models); the ``schema_version`` table records which ran (version, name, applied_at). ``migrate_database`` (``sync-server
init-db``) runs the missing ones in order, each in its own transaction, and refuses a database a newer release has
migrated; ``create_app`` refuses to serve a schema other than the code's (``check_schema``). Never drop and recreate.
On PostgreSQL each process keeps a connection pool (``playhouse.pool``); a request returns its connection.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import weakref
from datetime import UTC, datetime
from urllib.parse import urlparse

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    Check,
    CompositeKey,
    Database,
    DatabaseProxy,
    Expression,
    IntegerField,
    PostgresqlDatabase,
    TextField,
    fn,
)
from playhouse import db_url
from playhouse.migrate import SchemaMigrator, migrate
from playhouse.pool import PooledPostgresqlDatabase

from dbkit import JSONField, SchemaTooNew, base_model, schema_version
from station.protocol.times import utc_text

db_proxy = DatabaseProxy()
DEFAULT_DATABASE_URL = "sqlite:///sync-server.db"


BaseModel = base_model(db_proxy)


class SchemaVersion(BaseModel):
    """The migration history: one row per migration applied (its number, its name, when)."""

    version = IntegerField(primary_key=True)
    name = CharField()
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
    #: The seq acknowledged by the last complete sync (an ack without "more"): the station's unsynced exposure,
    #: which the bank caps as the station does, is what it debited after this seq.
    synced_seq = BigIntegerField(default=0, constraints=[Check("synced_seq >= 0")])
    #: Where the station stands and who runs it (``station bulk-add``), for the printed enrollment sheet.
    village = CharField(null=True)
    agent = CharField(null=True)
    #: The bank asked this station to rotate its signing key (``station rotate-key``); cleared by the rotation.
    rotate_requested = BooleanField(default=False)
    #: The unsynced exposure itself (``synced_seq``), kept as batches settle (``posting_rules``) and zeroed by a
    #: complete sync: the offline debits settled after ``synced_seq`` (amount + fee; those under a real-time
    #: authorization do not count), and how many. A per-station running total, so a batch never re-reads what the
    #: sync's earlier batches settled; ``checks.unsynced_exposure_matches`` recomputes it from the postings.
    unsynced_debit_fen = BigIntegerField(default=0, constraints=[Check("unsynced_debit_fen >= 0")])
    unsynced_debit_count = BigIntegerField(default=0, constraints=[Check("unsynced_debit_count >= 0")])
    #: The county the station serves (``station add --county``): the branch dashboard groups stations by it.
    county = CharField(null=True)


class EnrollmentCode(BaseModel):
    """A one-time code; only its SHA-256 is stored. ``purpose``: ``enroll`` a new station, or ``replace`` the
    device of an enrolled one (the new device continues the chain from the bank's head)."""

    code_hash = CharField(primary_key=True)
    station_id = CharField(index=True)
    created_at = CharField()
    expires_at = CharField()
    used_at = CharField(null=True)
    purpose = CharField(default="enroll", constraints=[Check("purpose IN ('enroll', 'replace')")])


class StationKey(BaseModel):
    """Every signing key a station has had, kept for ever so its receipts keep verifying: the key signs the
    station's entries from ``from_seq`` on (until the next key's ``from_seq``). ``source``: ``enrollment`` (seq
    1), ``rotation`` (announced by a signed ``key_rotation`` entry of the previous key) or ``replacement`` (a new
    device enrolled with a replacement code, whose start entry continues the chain)."""

    station_id = CharField()
    kid = CharField()
    jwk = JSONField()
    from_seq = BigIntegerField(constraints=[Check("from_seq >= 1")])
    source = CharField(constraints=[Check("source IN ('enrollment', 'rotation', 'replacement')")])
    created_at = CharField()

    class Meta:
        primary_key = CompositeKey("station_id", "kid")


class StationEvent(BaseModel):
    """The audit trail of what the bank did to a station (append-only): who, when, what and why."""

    id = AutoField()
    station_id = CharField(index=True)
    at = CharField()
    by = CharField()
    action = CharField()
    reason = TextField(default="")
    detail = JSONField(null=True)


class StationFork(BaseModel):
    """A fork the bank refused: at ``seq`` it holds ``held_token`` (None: it held nothing there yet) and the
    station sent ``offered_token``; kept so that ``station show`` can put both contents side by side."""

    id = AutoField()
    station_id = CharField(index=True)
    seq = BigIntegerField()
    reason = TextField()
    held_token = TextField(null=True)
    offered_token = TextField(null=True)
    detected_at = CharField()


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
    #: Sent down to the stations: the fraud warning asks to call an elderly customer's family (None: unknown).
    birth_year = IntegerField(null=True)
    #: The customer's risk-assessment level, 1 (cautious) to 5 (aggressive), from the bank's questionnaire; a
    #: wealth-management order needs it at least the product's (None: not assessed, no product may be ordered).
    risk_level = IntegerField(null=True, constraints=[Check("risk_level BETWEEN 1 AND 5")])


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


WMP_STATUSES = ("open", "closed")


class WmpProduct(BaseModel):
    """A wealth-management product the bank sells at its stations (``sync_server.wmp``).

    The subscription window is of bank-local dates (the policy's ``timezone``), both ends included. ``quota_fen``
    is what is left to sell: each settled order takes its amount off, and an order beyond it is ``sold_out``.
    """

    code = CharField(primary_key=True)
    name_zh = CharField()
    name_en = CharField()
    risk_level = IntegerField(constraints=[Check("risk_level BETWEEN 1 AND 5")])
    min_fen = BigIntegerField(constraints=[Check("min_fen > 0")])
    step_fen = BigIntegerField(constraints=[Check("step_fen > 0")])
    opens_on = CharField()
    closes_on = CharField()
    quota_fen = BigIntegerField(constraints=[Check("quota_fen >= 0")])
    description_zh = CharField()
    description_en = CharField()
    status = CharField(default="open", constraints=[Check("status IN ('open', 'closed')")])


class Hold(BaseModel):
    """Money of a customer parked for offline use at one station (the station's allowance)."""

    station_id = CharField()
    # Indexed (server migration 17): a batch reads every station's hold on the customers it names.
    account_id = CharField(index=True)
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


class SeenTxn(BaseModel):
    """Every customer operation's txn the bank has recorded, from any station: a txn is unique bank-wide."""

    txn = CharField(primary_key=True)
    station_id = CharField()
    seq = BigIntegerField()


class DailyTotal(BaseModel):
    """Running totals of one station's local day that the bank's limits read: ``kind`` is an operation type and
    ``subject`` the customer's account (settled amounts, less what was reversed or cancelled), or ``kind``
    ``commission`` and ``subject`` the agent (commission paid)."""

    station_id = CharField()
    local_date = CharField()
    kind = CharField()
    subject = CharField()
    amount_fen = BigIntegerField()

    class Meta:
        primary_key = CompositeKey("station_id", "local_date", "kind", "subject")


class ReconItem(BaseModel):
    """An exception for reconciliation staff, append-only: e.g. a rejected offline debit whose cash the agent
    already paid out (``rejected_offline_debit``)."""

    station_id = CharField()
    seq = BigIntegerField()
    kind = CharField()
    account_id = CharField(null=True)
    amount_fen = BigIntegerField()
    reason = CharField()
    created_at = CharField()

    class Meta:
        primary_key = CompositeKey("station_id", "seq", "kind")


class DownlinkState(BaseModel):
    """The downlinks of a station (``sync_server.downlink_versions``): the last version made for it, the first
    version since the bank last forgot what the station holds that carried its whole customer list (None: none
    yet), and the acked seq of the last downlink that carried the whole list (this station's postings after it
    send their customers again)."""

    station_id = CharField(primary_key=True)
    version = BigIntegerField(constraints=[Check("version >= 0")])
    complete_since = BigIntegerField(null=True)
    refreshed_seq = BigIntegerField(constraints=[Check("refreshed_seq >= 0")])


class DownlinkItem(BaseModel):
    """What the bank last sent a station of one downlink item (``policy``, ``billers``, ``blocked_payees``,
    ``customer:<account id>``): a digest of it (None: a customer no longer served, sent as removed) and the
    version of the downlink that carried it."""

    station_id = CharField()
    item = CharField()
    digest = CharField(null=True)
    version = BigIntegerField()

    class Meta:
        primary_key = CompositeKey("station_id", "item")


class StationTail(BaseModel):
    """The newest journal position a station has signed for the bank (``tail`` of its batches): its seq, the
    chain value after it, and the station's signed claim (a JWS) that recon re-verifies (``missing_tail``)."""

    station_id = CharField(primary_key=True)
    seq = BigIntegerField()
    head = CharField()
    claim = TextField()
    received_at = CharField()


class ReconException(BaseModel):
    """A discrepancy ``recon run`` found, kept with a stable id: the same discrepancy found again (the same
    ``fingerprint``: its kind and where it is, never its amounts) keeps its row. ``status`` is ``open`` or
    ``resolved`` (by a clerk, or automatically once it is no longer found); every change is a ``ReconEvent``."""

    id = AutoField()
    fingerprint = CharField(unique=True)
    kind = CharField()
    station_id = CharField(null=True)
    seq = BigIntegerField(null=True)
    txn = CharField(null=True)
    account_id = CharField(null=True)
    biller = CharField(null=True)
    reference = CharField(null=True)
    amount_fen = BigIntegerField(null=True)
    expected_fen = BigIntegerField(null=True)
    day = CharField(null=True)
    detail = JSONField(null=True)
    status = CharField(default="open", constraints=[Check("status IN ('open', 'resolved')")])
    first_found_at = CharField()
    last_found_at = CharField()

    class Meta:
        indexes = ((("station_id", "kind"), False),)


class ReconEvent(BaseModel):
    """The audit trail of reconciliation exceptions, append-only: who did what to which exception, when."""

    id = AutoField()
    exception_id = BigIntegerField(index=True)
    at = CharField()
    by = CharField()
    action = CharField(constraints=[Check("action IN ('opened', 'resolved', 'closed', 'reopened')")])
    note = TextField(default="")


class VoiceEvent(BaseModel):
    """The follow-up trail of a customer voice item (``sync_server.voice``), append-only: the ``n``-th step on the
    item ``(station_id, seq)``, who took it, when, and the note. ``n`` is unique per item, so two people resolving
    the same item at once cannot both append step ``n``: the second is told to look again."""

    id = AutoField()
    station_id = CharField()
    seq = BigIntegerField()
    n = IntegerField(constraints=[Check("n >= 1")])
    at = CharField()
    by = CharField()
    action = CharField(constraints=[Check("action IN ('resolved', 'reopened', 'noted')")])
    note = TextField()

    class Meta:
        indexes = ((("station_id", "seq", "n"), True),)


class BillerFile(BaseModel):
    """A biller's settlement file as imported (once: its SHA-256 is unique), and the value dates it covers."""

    id = AutoField()
    biller = CharField()
    sha256 = CharField(unique=True)
    name = CharField()
    lines = IntegerField()
    first_value_date = CharField()
    last_value_date = CharField()
    imported_at = CharField()
    imported_by = CharField(default="")


class BillerLine(BaseModel):
    """One line of a biller's settlement file: what the biller says the bank paid it."""

    file_id = BigIntegerField()
    line_no = IntegerField()
    biller = CharField()
    reference = CharField()
    amount_fen = BigIntegerField()
    value_date = CharField()
    bank_txn_id = CharField(null=True)

    class Meta:
        primary_key = CompositeKey("file_id", "line_no")
        indexes = ((("biller", "value_date"), False),)


AUTHORIZATION_STATUSES = ("active", "used", "expired", "refused")


class Authorization(BaseModel):
    """The bank's real-time answer to a station's request (``sync_server.authorize``): a grant or a refusal.

    A granted debit holds ``hold_fen`` (amount + fee; 0 for a balance enquiry or a transfer cancellation) of the
    customer's balance while it is live: ``status`` ``active`` and ``expires_at`` after now (UTC text, which sorts
    in time order). The entry that names ``auth_id`` consumes it (``used``, ``used_seq``); unused, it becomes
    ``expired``. A refusal (``refused``, ``reason``) holds nothing and is kept for the bank's audit. One grant per
    ``(station_id, txn)`` (a unique index over the rows that are not refusals: a refused txn may be asked again).
    """

    auth_id = CharField(primary_key=True)
    station_id = CharField()
    txn = CharField()
    kind = CharField()
    account_id = CharField()
    amount_fen = BigIntegerField(constraints=[Check("amount_fen >= 0")])
    fee_fen = BigIntegerField(constraints=[Check("fee_fen >= 0")])
    hold_fen = BigIntegerField(constraints=[Check("hold_fen >= 0")])
    payee_account = CharField(null=True)
    biller = CharField(null=True)
    ref_txn = CharField(null=True)
    request_hash = CharField()
    status = CharField(constraints=[Check("status IN ({})".format(", ".join(f"'{s}'" for s in
                                                                            AUTHORIZATION_STATUSES)))])
    reason = CharField(null=True)
    created_at = CharField()
    expires_at = CharField()
    execute_after = CharField(null=True)
    used_seq = BigIntegerField(null=True)
    #: A wealth-product order's product code: its live grants hold the product's quota too (``authorize``).
    product = CharField(null=True)

    class Meta:
        #: The live holds of an account (``book.Book``, ``checks``).
        indexes = ((("account_id", "status", "expires_at"), False),)


Authorization.add_index(Authorization.index(Authorization.station_id, Authorization.txn, unique=True).where(
    Authorization.status != "refused"))


class BankUser(BaseModel):
    """A bank-side account for the branch dashboard (``sync-server users``): never a customer or an agent.

    ``session_id`` is the one session the user is logged in with (a new login or a logout ends the one before), so a
    copied cookie dies with the session it belonged to; a disabled user's requests are refused at once."""

    name = CharField(primary_key=True)
    password_hash = CharField()
    role = CharField(default="manager", constraints=[Check("role IN ('manager')")])
    disabled = BooleanField(default=False)
    session_id = CharField(null=True)
    created_at = CharField()
    last_login_at = CharField(null=True)


class EntryTime(BaseModel):
    """What the branch dashboard reads of each entry, once (``sync_server.dashboard_data``): the station's ``ts``
    from the token's payload (NULL when it is not a time), the gap from the station's previous entry in
    milliseconds, and the entry's type and the bank's outcome copied from ``entry``. Filled lazily, in seq order per
    station, up to ``EntryTimeMark.through_seq``; a cache of the tokens, rebuilt from them if ever dropped."""

    station_id = CharField()
    seq = BigIntegerField()
    type = CharField()
    outcome = CharField()
    reason = CharField(null=True)
    ts = CharField(null=True)
    gap_ms = BigIntegerField(null=True)

    class Meta:
        primary_key = CompositeKey("station_id", "seq")
        indexes = ((("ts",), False),)


class EntryTimeMark(BaseModel):
    """How far ``entry_time`` has read each station's entries (its seq)."""

    station_id = CharField(primary_key=True)
    through_seq = BigIntegerField(default=0)


class AuthorizationNonce(BaseModel):
    """The nonces of a station's authorization requests, each taken once (a replayed request is refused); kept
    while a request with it could still be fresh, then pruned (``sync_server.authorize``)."""

    station_id = CharField()
    nonce = CharField()
    seen_at = CharField()

    class Meta:
        primary_key = CompositeKey("station_id", "nonce")


#: The states of a 12315 complaint at the bank: ``received`` when its entry arrives, then what the regulator's answers
#: set (``sync_server.complaints``), never back from a final one.
COMPLAINT_STATUSES = ("received", "accepted", "transferred", "resolved", "rejected")
_COMPLAINT_STATUS_CHECK = "status IN ('received', 'accepted', 'transferred', 'resolved', 'rejected')"


class Complaint(BaseModel):
    """A 12315 consumer complaint a station took for the market regulator (entry ``complaint_12315``, acknowledged),
    with what the regulator needs (the phone in full: the regulator calls back) and where it stands. Every change of
    ``status`` is also a ``ComplaintEvent``."""

    complaint_no = CharField(primary_key=True)
    station_id = CharField()
    seq = BigIntegerField()
    entry_ts = CharField()
    received_at = CharField(index=True)
    agent = CharField()
    phone = CharField()
    business = CharField()
    category = CharField()
    details = TextField(default="")
    status = CharField(default="received", constraints=[Check(_COMPLAINT_STATUS_CHECK)])
    status_note = TextField(default="")
    answered_at = CharField(null=True)
    updated_at = CharField()

    class Meta:
        indexes = ((("station_id", "seq"), True),)


class ComplaintEvent(BaseModel):
    """The audit trail of complaints, append-only: each status a complaint took, from which import, when."""

    id = AutoField()
    complaint_no = CharField(index=True)
    at = CharField()
    by = CharField()
    status = CharField(constraints=[Check(_COMPLAINT_STATUS_CHECK)])
    note = TextField(default="")
    answered_at = CharField(null=True)


MODELS = [SchemaVersion, ServerSetting, Station, EnrollmentCode, Account, Customer, HomeStation, KnownPayee,
          BlockedPayee, Biller, Hold, Entry, Posting, Transfer, SeenTxn, DailyTotal, ReconItem, StationTail,
          ReconException, ReconEvent, BillerFile, BillerLine, StationKey, StationEvent, StationFork, Authorization,
          AuthorizationNonce, DownlinkState, DownlinkItem, VoiceEvent, BankUser, EntryTime, EntryTimeMark, Complaint,
          ComplaintEvent, WmpProduct]


# -- connection -----------------------------------------------------------------------------------------------
#: Connection pool of each process for PostgreSQL (``playhouse.pool``); any of these can be set in the URL's query
#: string, e.g. ``postgresql://bank@db/ledger?max_connections=8&sslmode=require`` (the rest go to psycopg).
POOL_DEFAULTS = {
    "max_connections": 20,  # per process: a gunicorn worker serves one request at a time, waitress a few threads
    "stale_timeout": 300,  # seconds; an older connection is closed instead of reused
    "timeout": 10,  # seconds to wait for a free connection before failing the request
}
SQLITE_OPTIONS = {
    # IMMEDIATE: a writer takes the write lock when its transaction begins, so two workers applying the
    # same batch serialise instead of failing halfway with "database is locked".
    "pragmas": {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30_000},
    "lock_type": "IMMEDIATE",
    "check_same_thread": False,
}


def connect_url(url: str, *, pooled: bool = False) -> Database:
    """A peewee database for ``sqlite:///path`` or ``postgresql://user@host:port/name`` (psycopg 3).

    Nothing connects yet. ``pooled`` (the long-lived database of a serving process, see
    ``sync_server.database_for``): on PostgreSQL ``connect()`` takes a connection from the process's pool and
    ``close()`` gives it back; after a fork (gunicorn ``--preload``) the child forgets the parent's pooled
    connections instead of sharing their sockets; the pool is closed when the process exits. Unpooled,
    ``close()`` ends the connection (scripts, tests).
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        return db_url.connect(url, **SQLITE_OPTIONS)
    if parsed.scheme in ("postgres", "postgresql"):
        params = {"prefer_psycopg3": True, **db_url.parse(url, unquote_password=True, unquote_user=True)}
        if not pooled:
            return PostgresqlDatabase(**{k: v for k, v in params.items() if k not in POOL_DEFAULTS})
        database = PooledPostgresqlDatabase(**{**POOL_DEFAULTS, **params})
        os.register_at_fork(after_in_child=functools.partial(_forget_pool, weakref.ref(database)))
        atexit.register(database.close_all)  # end the idle connections cleanly instead of leaving them to the GC
        return database
    raise ValueError(f"DATABASE_URL must start with sqlite:/// or postgresql:// (got {parsed.scheme!r})")


def _forget_pool(database_ref: weakref.ref) -> None:
    """In a forked child: drop the parent's connections without closing them (closing would end the parent's)."""
    database = database_ref()
    if database is not None:
        database.dispose()


def arg(n: int = 0) -> str:
    """What stands for the ``n``-th value a ``cached_rows`` query is run with (a text no key of the kit's tables
    holds: PostgreSQL refuses a NUL in text)."""
    return f"\x00cached-argument-{n}\x00"


def one_of(field, n: int = 0):
    """``field`` equals one of the values of the list a ``cached_rows`` query is run with as its ``n``-th value,
    in SQL that does not depend on the list's length (peewee's ``in_`` writes one placeholder per value, so its SQL
    could not be built once): on PostgreSQL ``= ANY(%s)``, the list one array parameter (an index on ``field`` is
    used by the plan prepared for any list, tests/test_server_query_plans.py); on SQLite
    ``IN (SELECT value FROM json_each(?))``, the list one JSON text. An empty list matches nothing, as ``in_([])``.
    Call it inside the ``build`` of ``cached_rows``: which one depends on the database bound then."""
    if is_postgres():
        return Expression(field, "=", fn.ANY(arg(n)))
    return field.in_(SQL(f"(SELECT value FROM json_each({db_proxy.obj.param}))", [arg(n)]))


def locked(query):
    """``query`` locking the rows it reads until the transaction ends: on PostgreSQL ``FOR UPDATE`` (in the order
    the query gives them), on SQLite as it is (transactions are IMMEDIATE: the whole database is locked)."""
    return query.for_update() if is_postgres() else query


#: (key, database class, placeholder) -> (model, SQL, parameters with ``arg`` stand-ins, the selected fields).
_COMPILED: dict[tuple, tuple] = {}


def _compiled(key: str, build) -> tuple:
    """(model, SQL, parameters with ``arg`` stand-ins, the fields it selects) of the statement ``build()`` makes,
    built once per ``key`` and kind of database."""
    database = db_proxy.obj
    cache_key = (key, type(database), database.param)
    compiled = _COMPILED.get(cache_key)
    if compiled is None:
        query = build()
        sql, params = query.sql()
        fields = tuple(getattr(query, "_returning", None) or ())
        compiled = _COMPILED[cache_key] = (query.model, sql, tuple(params), fields)
    return compiled


def _bound(params: tuple, values: tuple) -> list:
    """``params`` with each ``arg(n)`` replaced by ``values[n]`` (a list as ``one_of`` takes it on this database)."""
    if not is_postgres():
        values = tuple(json.dumps(value) if isinstance(value, list) else value for value in values)
    stand_ins = {arg(n): value for n, value in enumerate(values)}
    return [stand_ins.get(param, param) if isinstance(param, str) else param for param in params]


def cached_rows(key: str, build, *values) -> list:
    """The rows (model instances, with every field converted) of the select ``build()`` makes of its model's fields,
    each ``arg(n)`` in it replaced by ``values[n]``: peewee builds a query's SQL once per ``key`` and kind of
    database.

    Building a select of a wide table costs peewee about 150 µs of CPU, several times what PostgreSQL takes to run
    it; a synced batch runs a dozen such lookups by key. Only for queries whose SQL does not depend on the values:
    one row by its key, or rows whose key is one of a list (``one_of``, a ``list`` value), with text values. The
    rows are made as peewee makes them (each value through its field's ``python_value``, nothing dirty), from the
    fields the query selects: peewee would match the cursor's column names to them for every query run."""
    model, sql, params, fields = _compiled(key, build)
    cursor = db_proxy.obj.execute_sql(sql, _bound(params, values))
    rows = []
    for row in cursor.fetchall():
        instance = model(__no_default__=1, **{field.name: field.python_value(value)
                                              for field, value in zip(fields, row, strict=True)})
        instance._dirty.clear()
        rows.append(instance)
    return rows


def cached_row(key: str, build, *values):
    """The first row of ``cached_rows``, or None."""
    rows = cached_rows(key, build, *values)
    return rows[0] if rows else None


def cached_execute(key: str, build, *values):
    """Run the statement ``build()`` makes (a select of some columns, an update, an insert) as ``cached_rows`` runs
    a query, its SQL built once per ``key``: the database's cursor (``fetchall()`` gives the rows as tuples of the
    values as the database driver reads them, ``rowcount`` how many rows an update changed). An ``arg`` stands for a
    text, an integer or a list (``one_of``), never for the value of a field that converts what it is given at build
    time (a boolean field would store the stand-in as true, a JSON field as its JSON text)."""
    _, sql, params, _ = _compiled(key, build)
    return db_proxy.obj.execute_sql(sql, _bound(params, values))


def is_postgres(database: Database | None = None) -> bool:
    """True when the models are bound to PostgreSQL (row locks, array inserts)."""
    database = database or db_proxy.obj
    return isinstance(database, PostgresqlDatabase)


# -- migrations -----------------------------------------------------------------------------------------------
# Each migration is frozen: its SQL is written out here, never derived from the models above, so that changing a
# model later never changes what an old migration does. A model change comes with a new migration appended to
# MIGRATIONS (``playhouse.migrate`` through the ``migrator`` argument, or plain SQL), and
# tests/test_server_migrations.py checks that the migrated schema equals the models'.

class SchemaOutdated(RuntimeError):
    """The database lacks migrations this code needs: run ``sync-server init-db`` first."""


SCHEMA_HISTORY_DDL = (
    'CREATE TABLE IF NOT EXISTS "schema_version" ("version" INTEGER NOT NULL PRIMARY KEY, '
    '"name" VARCHAR(255) NOT NULL, "applied_at" VARCHAR(255) NOT NULL)'
)

#: Release 1 exactly as ``create_tables(MODELS[1:])`` made it at commit caead6e; ``{bigint}`` and ``{boolean}``
#: are the column types peewee chose per backend (BIGINT and BOOLEAN on PostgreSQL, INTEGER on SQLite).
RELEASE_1_SCHEMA = [
    """CREATE TABLE "account" ("account_id" VARCHAR(255) NOT NULL PRIMARY KEY, "kind" VARCHAR(255) NOT NULL CHECK
       (kind IN ('customer', 'station_cash', 'float_funding', 'cash_variance', 'agent_payable',
       'commission_expense', 'fee_income', 'biller_payable', 'transfer_clearing', 'external_clearing',
       'opening_equity')), "name" VARCHAR(255) NOT NULL, "balance_fen" {bigint} NOT NULL, CHECK (kind <> 'customer'
       OR balance_fen >= 0))""",
    """CREATE TABLE "biller" ("code" VARCHAR(255) NOT NULL PRIMARY KEY, "kind" VARCHAR(255) NOT NULL CHECK (kind IN
       ('electricity', 'water', 'gas', 'mobile')), "name_zh" VARCHAR(255) NOT NULL, "name_en" VARCHAR(255) NOT
       NULL, "ref_pattern" VARCHAR(255) NOT NULL, "ref_prefixes" TEXT, "min_fen" {bigint} NOT NULL, "max_fen"
       {bigint} NOT NULL, "denominations" TEXT)""",
    """CREATE TABLE "blocked_payee" ("account" VARCHAR(255) NOT NULL PRIMARY KEY, "reason" VARCHAR(255) NOT NULL)""",
    """CREATE TABLE "customer" ("account_id" VARCHAR(255) NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL,
       "card_number" VARCHAR(255), "passbook_number" VARCHAR(255), "status" VARCHAR(255) NOT NULL CHECK (status IN
       ('active', 'locked', 'closed')), "pin_verifier" VARCHAR(255) NOT NULL)""",
    """CREATE UNIQUE INDEX "customer_card_number" ON "customer" ("card_number")""",
    """CREATE UNIQUE INDEX "customer_passbook_number" ON "customer" ("passbook_number")""",
    """CREATE TABLE "enrollment_code" ("code_hash" VARCHAR(255) NOT NULL PRIMARY KEY, "station_id" VARCHAR(255) NOT
       NULL, "created_at" VARCHAR(255) NOT NULL, "expires_at" VARCHAR(255) NOT NULL, "used_at" VARCHAR(255))""",
    """CREATE INDEX "enrollment_code_station_id" ON "enrollment_code" ("station_id")""",
    """CREATE TABLE "entry" ("station_id" VARCHAR(255) NOT NULL, "seq" {bigint} NOT NULL, "type" VARCHAR(255) NOT
       NULL, "txn" VARCHAR(255), "token" TEXT NOT NULL, "received_at" VARCHAR(255) NOT NULL, "outcome" VARCHAR(255)
       NOT NULL CHECK (outcome IN ('settled', 'rejected', 'acknowledged')), "reason" VARCHAR(255), PRIMARY KEY
       ("station_id", "seq"))""",
    """CREATE INDEX "entry_station_id_txn" ON "entry" ("station_id", "txn")""",
    """CREATE TABLE "hold" ("station_id" VARCHAR(255) NOT NULL, "account_id" VARCHAR(255) NOT NULL, "amount_fen"
       {bigint} NOT NULL CHECK (amount_fen >= 0), "updated_at" VARCHAR(255) NOT NULL, PRIMARY KEY ("station_id",
       "account_id"))""",
    """CREATE TABLE "home_station" ("station_id" VARCHAR(255) NOT NULL, "account_id" VARCHAR(255) NOT NULL, PRIMARY
       KEY ("station_id", "account_id"))""",
    """CREATE INDEX "home_station_account_id" ON "home_station" ("account_id")""",
    """CREATE TABLE "known_payee" ("account_id" VARCHAR(255) NOT NULL, "payee_account" VARCHAR(255) NOT NULL,
       "name" VARCHAR(255) NOT NULL, PRIMARY KEY ("account_id", "payee_account"))""",
    """CREATE TABLE "posting" ("station_id" VARCHAR(255) NOT NULL, "seq" {bigint} NOT NULL, "leg" INTEGER NOT NULL,
       "account_id" VARCHAR(255) NOT NULL, "amount_fen" {bigint} NOT NULL CHECK (amount_fen <> 0), "memo"
       VARCHAR(255) NOT NULL, PRIMARY KEY ("station_id", "seq", "leg"))""",
    """CREATE INDEX "posting_account_id" ON "posting" ("account_id")""",
    """CREATE TABLE "server_setting" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL)""",
    """CREATE TABLE "station" ("station_id" VARCHAR(255) NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL,
       "status" VARCHAR(255) NOT NULL CHECK (status IN ('pending', 'active', 'revoked')), "flagged" {boolean} NOT
       NULL, "flag_reason" TEXT, "signing_jwk" TEXT, "encryption_jwk" TEXT, "kid" VARCHAR(255), "acked_seq"
       {bigint} NOT NULL CHECK (acked_seq >= 0), "head" VARCHAR(255), "created_at" VARCHAR(255) NOT NULL,
       "enrolled_at" VARCHAR(255), "last_sync_at" VARCHAR(255), "clock_offset_ms" {bigint}, "revoked_at"
       VARCHAR(255))""",
    """CREATE TABLE "transfer" ("station_id" VARCHAR(255) NOT NULL, "seq" {bigint} NOT NULL, "txn" VARCHAR(255) NOT
       NULL, "account_id" VARCHAR(255) NOT NULL, "payee_account" VARCHAR(255) NOT NULL, "payee_name" VARCHAR(255)
       NOT NULL, "amount_fen" {bigint} NOT NULL CHECK (amount_fen > 0), "fee_fen" {bigint} NOT NULL, "status"
       VARCHAR(255) NOT NULL CHECK (status IN ('pending', 'executed', 'cancelled')), "execute_after" VARCHAR(255)
       NOT NULL, "executed_at" VARCHAR(255), PRIMARY KEY ("station_id", "seq"))""",
    """CREATE UNIQUE INDEX "transfer_station_id_txn" ON "transfer" ("station_id", "txn")""",
]

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


def _migration_1(database: Database, migrator: SchemaMigrator) -> None:
    """Release 1: the tables, indexes and (PostgreSQL) balanced-postings trigger the server shipped with."""
    types = {"bigint": "BIGINT", "boolean": "BOOLEAN"} if is_postgres(database) else {
        "bigint": "INTEGER", "boolean": "INTEGER"}
    for sql in RELEASE_1_SCHEMA:
        # One line, as peewee wrote it: SQLite keeps the text, and playhouse.migrate parses it to alter a table.
        database.execute_sql(" ".join(sql.format(**types).split()))
    if is_postgres(database):
        # Run through psycopg with parameters: a literal % in the SQL is written %%.
        for statement in POSTGRES_BALANCED_POSTINGS:
            database.execute_sql(statement)


#: Ordered: the migration at index i brings the schema to version i + 1. Append; never edit a released one.
MIGRATIONS = [_migration_1]


def _migration_name(migration) -> str:
    return (migration.__doc__ or migration.__name__).strip().split("\n", 1)[0]


def _prepare_history(database: Database) -> None:
    """Create the history table; release 1's (version, applied_at) gets its name column, filled in."""
    database.execute_sql(SCHEMA_HISTORY_DDL)
    if "name" in {column.name for column in database.get_columns("schema_version")}:
        return
    with database.atomic():
        migrate(SchemaMigrator.from_database(database).add_column("schema_version", "name", CharField(default="")))
        with database.bind_ctx([SchemaVersion]):
            for version, migration in enumerate(MIGRATIONS, start=1):
                SchemaVersion.update(name=_migration_name(migration)).where(
                    SchemaVersion.version == version).execute()


def check_schema(database: Database) -> int:
    """The schema version, if it is the one this code was written for; else SchemaTooNew or SchemaOutdated."""
    version = schema_version(database)
    if version > len(MIGRATIONS):
        raise SchemaTooNew(
            f"The database is at schema version {version}, newer than this sync server (version "
            f"{len(MIGRATIONS)}). Deploy the newer release again; never run an older one on this database.")
    if version < len(MIGRATIONS):
        raise SchemaOutdated(
            f"The database is at schema version {version}; this sync server needs {len(MIGRATIONS)}. "
            "Run `sync-server init-db` (it applies the missing migrations) and start again.")
    return version


def migrate_database(database: Database, up_to: int | None = None) -> list[int]:
    """Run the migrations the database has not had yet (up to version ``up_to``, default all), each in its own
    transaction; returns the versions applied.

    Refuses (SchemaTooNew) a database that a newer release has migrated. Two runs at once serialise: SQLite on its
    IMMEDIATE write lock, PostgreSQL on a lock of the history table; the second finds the work done.
    """
    _prepare_history(database)
    if schema_version(database) > len(MIGRATIONS):
        check_schema(database)  # raises SchemaTooNew with the message for the operator
    applied = []
    with database.bind_ctx([SchemaVersion]):
        for version, migration in enumerate(MIGRATIONS[:up_to], start=1):
            if version <= schema_version(database):
                continue
            with database.atomic():
                if is_postgres(database):
                    database.execute_sql('LOCK TABLE "schema_version" IN SHARE ROW EXCLUSIVE MODE')
                if version <= schema_version(database):  # another process migrated while we waited for the lock
                    continue
                migration(database, SchemaMigrator.from_database(database))
                SchemaVersion.create(version=version, name=_migration_name(migration),
                                     applied_at=utc_text(datetime.now(UTC)))
            applied.append(version)
    return applied


#: Release 2 on PostgreSQL. The legs of each entry (postings with the same ``(station_id, seq)``) must sum to zero
#: when the transaction commits, whatever statements wrote, changed or removed them: a row-level constraint trigger
#: deferred to COMMIT, as django-hordak does (constraint triggers cannot see transition tables, so it re-sums the
#: entry each row touches, through the primary key). It replaces release 1's per-INSERT-statement trigger, which a
#: later statement of the same transaction could unbalance. ``posting`` and ``entry`` refuse UPDATE, DELETE and
#: TRUNCATE: the ledger is corrected by new entries, never by editing old ones.
POSTGRES_LEDGER_TRIGGERS = [
    "DROP TRIGGER IF EXISTS posting_legs_balance ON posting",
    "DROP FUNCTION IF EXISTS posting_legs_balance()",
    """CREATE FUNCTION entry_legs_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE unbalanced record;
    BEGIN
        -- NEW is NULL for a DELETE and OLD for an INSERT: each row names the one or two entries it touched.
        SELECT station_id, seq, SUM(amount_fen) AS total INTO unbalanced FROM posting
            WHERE (station_id, seq) IN ((NEW.station_id, NEW.seq), (OLD.station_id, OLD.seq))
            GROUP BY station_id, seq HAVING SUM(amount_fen) <> 0 LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'postings of %% seq %% sum to %%, not zero',
                unbalanced.station_id, unbalanced.seq, unbalanced.total USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE CONSTRAINT TRIGGER posting_legs_balance_at_commit AFTER INSERT OR UPDATE OR DELETE ON posting
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION entry_legs_balance()""",
    """CREATE FUNCTION refuse_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '%% rows are append-only: %% refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$""",
    """CREATE TRIGGER posting_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON posting
       FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()""",
    """CREATE TRIGGER entry_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON entry
       FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()""",
]

#: Release 2 on SQLite: ``posting`` and ``entry`` refuse UPDATE and DELETE, like the station's journal. SQLite has
#: no deferred triggers: there the legs' balance is held by ``ledger.Book.post`` before every write.
SQLITE_LEDGER_TRIGGERS = [
    f"""CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
       BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: {action} refused'); END"""
    for table in ("posting", "entry") for action in ("UPDATE", "DELETE")
]


def _migration_2(database: Database, migrator: SchemaMigrator) -> None:
    """The ledger's invariants held by the database: append-only ``posting`` and ``entry``; on PostgreSQL an
    entry's legs balance at COMMIT (a deferred constraint trigger instead of release 1's statement trigger)."""
    for statement in POSTGRES_LEDGER_TRIGGERS if is_postgres(database) else SQLITE_LEDGER_TRIGGERS:
        database.execute_sql(statement)


MIGRATIONS.append(_migration_2)


#: Release 3: what the bank needs to enforce its own rules on every entry (``posting_rules``). ``{bigint}`` as in
#: release 1. ``seen_txn`` is filled from the entries already held, first come first kept; ``synced_seq`` starts
#: at ``acked_seq`` (each past sync counts as complete).
RELEASE_3_SCHEMA = [
    'ALTER TABLE "station" ADD COLUMN "synced_seq" {bigint} NOT NULL DEFAULT 0 CHECK (synced_seq >= 0)',
    'UPDATE "station" SET "synced_seq" = "acked_seq"',
    """CREATE TABLE "seen_txn" ("txn" VARCHAR(255) NOT NULL PRIMARY KEY, "station_id" VARCHAR(255) NOT NULL,
       "seq" {bigint} NOT NULL)""",
    """INSERT INTO "seen_txn" ("txn", "station_id", "seq") SELECT "txn", "station_id", "seq" FROM "entry"
       WHERE "txn" IS NOT NULL AND "type" IN ('withdrawal', 'deposit', 'transfer', 'transfer_cancel', 'bill_payment',
       'balance_enquiry', 'reversal') ORDER BY "received_at", "station_id", "seq" ON CONFLICT ("txn") DO NOTHING""",
    """CREATE TABLE "daily_total" ("station_id" VARCHAR(255) NOT NULL, "local_date" VARCHAR(255) NOT NULL, "kind"
       VARCHAR(255) NOT NULL, "subject" VARCHAR(255) NOT NULL, "amount_fen" {bigint} NOT NULL, PRIMARY KEY
       ("station_id", "local_date", "kind", "subject"))""",
    """CREATE TABLE "recon_item" ("station_id" VARCHAR(255) NOT NULL, "seq" {bigint} NOT NULL, "kind" VARCHAR(255)
       NOT NULL, "account_id" VARCHAR(255), "amount_fen" {bigint} NOT NULL, "reason" VARCHAR(255) NOT NULL,
       "created_at" VARCHAR(255) NOT NULL, PRIMARY KEY ("station_id", "seq", "kind"))""",
]
#: ``recon_item`` is append-only like the ledger (``refuse_ledger_change`` is release 2's function).
POSTGRES_RECON_TRIGGERS = [
    """CREATE TRIGGER recon_item_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON recon_item
       FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()""",
]
SQLITE_RECON_TRIGGERS = [
    f"""CREATE TRIGGER recon_item_no_{action.lower()} BEFORE {action} ON recon_item
       BEGIN SELECT RAISE(ABORT, 'recon_item rows are append-only: {action} refused'); END"""
    for action in ("UPDATE", "DELETE")
]


def _migration_3(database: Database, migrator: SchemaMigrator) -> None:
    """The bank's own rules: a station's last complete sync, txns seen bank-wide, daily totals, recon items."""
    types = {"bigint": "BIGINT"} if is_postgres(database) else {"bigint": "INTEGER"}
    for sql in RELEASE_3_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))
    for statement in POSTGRES_RECON_TRIGGERS if is_postgres(database) else SQLITE_RECON_TRIGGERS:
        database.execute_sql(statement)


MIGRATIONS.append(_migration_3)


#: Release 4: reconciliation (``sync_server.recon``). ``{bigint}`` as in release 1, ``{serial}`` the
#: auto-incrementing primary key peewee writes (``SERIAL`` on PostgreSQL, ``INTEGER`` on SQLite).
RELEASE_4_SCHEMA = [
    """CREATE TABLE "station_tail" ("station_id" VARCHAR(255) NOT NULL PRIMARY KEY, "seq" {bigint} NOT NULL, "head"
       VARCHAR(255) NOT NULL, "claim" TEXT NOT NULL, "received_at" VARCHAR(255) NOT NULL)""",
    """CREATE TABLE "recon_exception" ("id" {serial} NOT NULL PRIMARY KEY, "fingerprint" VARCHAR(255) NOT NULL,
       "kind" VARCHAR(255) NOT NULL, "station_id" VARCHAR(255), "seq" {bigint}, "txn" VARCHAR(255), "account_id"
       VARCHAR(255), "biller" VARCHAR(255), "reference" VARCHAR(255), "amount_fen" {bigint}, "expected_fen"
       {bigint}, "day" VARCHAR(255), "detail" TEXT, "status" VARCHAR(255) NOT NULL CHECK (status IN ('open',
       'resolved')), "first_found_at" VARCHAR(255) NOT NULL, "last_found_at" VARCHAR(255) NOT NULL)""",
    """CREATE UNIQUE INDEX "recon_exception_fingerprint" ON "recon_exception" ("fingerprint")""",
    """CREATE INDEX "recon_exception_station_id_kind" ON "recon_exception" ("station_id", "kind")""",
    """CREATE TABLE "recon_event" ("id" {serial} NOT NULL PRIMARY KEY, "exception_id" {bigint} NOT NULL, "at"
       VARCHAR(255) NOT NULL, "by" VARCHAR(255) NOT NULL, "action" VARCHAR(255) NOT NULL CHECK (action IN
       ('opened', 'resolved', 'closed', 'reopened')), "note" TEXT NOT NULL)""",
    """CREATE INDEX "recon_event_exception_id" ON "recon_event" ("exception_id")""",
    """CREATE TABLE "biller_file" ("id" {serial} NOT NULL PRIMARY KEY, "biller" VARCHAR(255) NOT NULL, "sha256"
       VARCHAR(255) NOT NULL, "name" VARCHAR(255) NOT NULL, "lines" INTEGER NOT NULL, "first_value_date"
       VARCHAR(255) NOT NULL, "last_value_date" VARCHAR(255) NOT NULL, "imported_at" VARCHAR(255) NOT NULL,
       "imported_by" VARCHAR(255) NOT NULL)""",
    """CREATE UNIQUE INDEX "biller_file_sha256" ON "biller_file" ("sha256")""",
    """CREATE TABLE "biller_line" ("file_id" {bigint} NOT NULL, "line_no" INTEGER NOT NULL, "biller" VARCHAR(255)
       NOT NULL, "reference" VARCHAR(255) NOT NULL, "amount_fen" {bigint} NOT NULL, "value_date" VARCHAR(255) NOT
       NULL, "bank_txn_id" VARCHAR(255), PRIMARY KEY ("file_id", "line_no"))""",
    """CREATE INDEX "biller_line_biller_value_date" ON "biller_line" ("biller", "value_date")""",
]
#: The audit trail and the imported settlement files are append-only, like the ledger.
RECON_APPEND_ONLY = ("recon_event", "biller_file", "biller_line")
POSTGRES_RECON_4_TRIGGERS = [
    f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
       FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()"""
    for table in RECON_APPEND_ONLY
]
SQLITE_RECON_4_TRIGGERS = [
    f"""CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table}
       BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: {action} refused'); END"""
    for table in RECON_APPEND_ONLY for action in ("UPDATE", "DELETE")
]


def _migration_4(database: Database, migrator: SchemaMigrator) -> None:
    """Reconciliation: stations' signed tails, exceptions with their audit trail, billers' settlement files."""
    types = {"bigint": "BIGINT", "serial": "SERIAL"} if is_postgres(database) else {
        "bigint": "INTEGER", "serial": "INTEGER"}
    for sql in RELEASE_4_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))
    for statement in POSTGRES_RECON_4_TRIGGERS if is_postgres(database) else SQLITE_RECON_4_TRIGGERS:
        database.execute_sql(statement)


MIGRATIONS.append(_migration_4)


#: Release 5: the device life cycle (``sync_server.lifecycle``). ``{bigint}``, ``{boolean}``, ``{serial}`` as
#: before. Every station enrolled so far gets its one key as its enrollment key, from seq 1.
RELEASE_5_SCHEMA = [
    'ALTER TABLE "station" ADD COLUMN "village" VARCHAR(255)',
    'ALTER TABLE "station" ADD COLUMN "agent" VARCHAR(255)',
    'ALTER TABLE "station" ADD COLUMN "rotate_requested" {boolean} NOT NULL DEFAULT {false}',
    """ALTER TABLE "enrollment_code" ADD COLUMN "purpose" VARCHAR(255) NOT NULL DEFAULT 'enroll'
       CHECK (purpose IN ('enroll', 'replace'))""",
    """CREATE TABLE "station_key" ("station_id" VARCHAR(255) NOT NULL, "kid" VARCHAR(255) NOT NULL, "jwk" TEXT NOT
       NULL, "from_seq" {bigint} NOT NULL CHECK (from_seq >= 1), "source" VARCHAR(255) NOT NULL CHECK (source IN
       ('enrollment', 'rotation', 'replacement')), "created_at" VARCHAR(255) NOT NULL, PRIMARY KEY ("station_id",
       "kid"))""",
    """INSERT INTO "station_key" ("station_id", "kid", "jwk", "from_seq", "source", "created_at")
       SELECT "station_id", "kid", "signing_jwk", 1, 'enrollment', COALESCE("enrolled_at", "created_at")
       FROM "station" WHERE "kid" IS NOT NULL AND "signing_jwk" IS NOT NULL""",
    """CREATE TABLE "station_event" ("id" {serial} NOT NULL PRIMARY KEY, "station_id" VARCHAR(255) NOT NULL, "at"
       VARCHAR(255) NOT NULL, "by" VARCHAR(255) NOT NULL, "action" VARCHAR(255) NOT NULL, "reason" TEXT NOT NULL,
       "detail" TEXT)""",
    'CREATE INDEX "station_event_station_id" ON "station_event" ("station_id")',
    """CREATE TABLE "station_fork" ("id" {serial} NOT NULL PRIMARY KEY, "station_id" VARCHAR(255) NOT NULL, "seq"
       {bigint} NOT NULL, "reason" TEXT NOT NULL, "held_token" TEXT, "offered_token" TEXT, "detected_at"
       VARCHAR(255) NOT NULL)""",
    'CREATE INDEX "station_fork_station_id" ON "station_fork" ("station_id")',
]
POSTGRES_LIFECYCLE_TRIGGERS = [
    """CREATE TRIGGER station_event_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON station_event
       FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()""",
]
SQLITE_LIFECYCLE_TRIGGERS = [
    f"""CREATE TRIGGER station_event_no_{action.lower()} BEFORE {action} ON station_event
       BEGIN SELECT RAISE(ABORT, 'station_event rows are append-only: {action} refused'); END"""
    for action in ("UPDATE", "DELETE")
]


def _migration_5(database: Database, migrator: SchemaMigrator) -> None:
    """Device life cycle: every key of a station, its audit trail, refused forks, replacement codes."""
    types = ({"bigint": "BIGINT", "serial": "SERIAL", "boolean": "BOOLEAN", "false": "false"}
             if is_postgres(database) else {"bigint": "INTEGER", "serial": "INTEGER", "boolean": "INTEGER",
                                             "false": "0"})
    for sql in RELEASE_5_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))
    for statement in POSTGRES_LIFECYCLE_TRIGGERS if is_postgres(database) else SQLITE_LIFECYCLE_TRIGGERS:
        database.execute_sql(statement)


MIGRATIONS.append(_migration_5)


#: Release 6: real-time authorization (``sync_server.authorize``). ``{bigint}`` as before. The unique index of
#: grants leaves refusals out (a ``WHERE`` both backends know), so a refused txn may be asked again.
RELEASE_6_SCHEMA = [
    """CREATE TABLE "authorization" ("auth_id" VARCHAR(255) NOT NULL PRIMARY KEY, "station_id" VARCHAR(255) NOT
       NULL, "txn" VARCHAR(255) NOT NULL, "kind" VARCHAR(255) NOT NULL, "account_id" VARCHAR(255) NOT NULL,
       "amount_fen" {bigint} NOT NULL CHECK (amount_fen >= 0), "fee_fen" {bigint} NOT NULL CHECK (fee_fen >= 0),
       "hold_fen" {bigint} NOT NULL CHECK (hold_fen >= 0), "payee_account" VARCHAR(255), "biller" VARCHAR(255),
       "ref_txn" VARCHAR(255), "request_hash" VARCHAR(255) NOT NULL, "status" VARCHAR(255) NOT NULL CHECK (status
       IN ('active', 'used', 'expired', 'refused')), "reason" VARCHAR(255), "created_at" VARCHAR(255) NOT NULL,
       "expires_at" VARCHAR(255) NOT NULL, "execute_after" VARCHAR(255), "used_seq" {bigint})""",
    """CREATE INDEX "authorization_account_id_status_expires_at" ON "authorization" ("account_id", "status",
       "expires_at")""",
    """CREATE UNIQUE INDEX "authorization_station_id_txn" ON "authorization" ("station_id", "txn")
       WHERE ("status" != 'refused')""",
    """CREATE TABLE "authorization_nonce" ("station_id" VARCHAR(255) NOT NULL, "nonce" VARCHAR(255) NOT NULL,
       "seen_at" VARCHAR(255) NOT NULL, PRIMARY KEY ("station_id", "nonce"))""",
]


def _migration_6(database: Database, migrator: SchemaMigrator) -> None:
    """Real-time authorization: the bank's grants and refusals, and the request nonces it has seen."""
    types = {"bigint": "BIGINT"} if is_postgres(database) else {"bigint": "INTEGER"}
    for sql in RELEASE_6_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))


MIGRATIONS.append(_migration_6)


def _migration_7(database: Database, migrator: SchemaMigrator) -> None:
    """Customer birth year: sent down so the fraud warning asks to call an elderly customer's family."""
    database.execute_sql('ALTER TABLE "customer" ADD COLUMN "birth_year" INTEGER')


MIGRATIONS.append(_migration_7)


#: Release 8: downlink versions (``sync_server.downlink_versions``). ``{bigint}`` as before.
RELEASE_8_SCHEMA = [
    """CREATE TABLE "downlink_state" ("station_id" VARCHAR(255) NOT NULL PRIMARY KEY, "version" {bigint} NOT NULL
       CHECK (version >= 0), "complete_since" {bigint}, "refreshed_seq" {bigint} NOT NULL CHECK
       (refreshed_seq >= 0))""",
    """CREATE TABLE "downlink_item" ("station_id" VARCHAR(255) NOT NULL, "item" VARCHAR(255) NOT NULL, "digest"
       VARCHAR(255), "version" {bigint} NOT NULL, PRIMARY KEY ("station_id", "item"))""",
]


def _migration_8(database: Database, migrator: SchemaMigrator) -> None:
    """Downlink versions: what each station was last sent, so a downlink carries only what changed since."""
    types = {"bigint": "BIGINT"} if is_postgres(database) else {"bigint": "INTEGER"}
    for sql in RELEASE_8_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))


MIGRATIONS.append(_migration_8)
#: Release 9: the station's unsynced exposure as a running total on its row (``station.unsynced_debit_*``), filled
#: from the postings of every station as ``posting_rules`` counted them before: the settled customer debits
#: (withdrawal, transfer, bill paid from the account: the one customer leg that is a debit) after its last complete
#: sync, except those settled under a real-time authorization.
RELEASE_9_EXPOSURE = """(SELECT {aggregate} FROM "posting" AS p
    JOIN "entry" AS e ON e."station_id" = p."station_id" AND e."seq" = p."seq"
    JOIN "account" AS a ON a."account_id" = p."account_id"
    WHERE p."station_id" = "station"."station_id" AND p."seq" > "station"."synced_seq" AND p."amount_fen" > 0
    AND a."kind" = 'customer' AND e."type" IN ('withdrawal', 'transfer', 'bill_payment')
    AND p."seq" NOT IN (SELECT u."used_seq" FROM "authorization" AS u WHERE u."station_id" = "station"."station_id"
                        AND u."status" = 'used' AND u."used_seq" > "station"."synced_seq"))"""
RELEASE_9_SCHEMA = [
    """ALTER TABLE "station" ADD COLUMN "unsynced_debit_fen" {bigint} NOT NULL DEFAULT 0
       CHECK (unsynced_debit_fen >= 0)""",
    """ALTER TABLE "station" ADD COLUMN "unsynced_debit_count" {bigint} NOT NULL DEFAULT 0
       CHECK (unsynced_debit_count >= 0)""",
    'UPDATE "station" SET "unsynced_debit_fen" = '
    + RELEASE_9_EXPOSURE.format(aggregate='COALESCE(SUM(p."amount_fen"), 0)')
    + ', "unsynced_debit_count" = ' + RELEASE_9_EXPOSURE.format(aggregate="COUNT(*)"),
]


def _migration_9(database: Database, migrator: SchemaMigrator) -> None:
    """The station's unsynced exposure kept on its row: a batch no longer sums the postings since the last sync."""
    types = {"bigint": "BIGINT"} if is_postgres(database) else {"bigint": "INTEGER"}
    for sql in RELEASE_9_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))


MIGRATIONS.append(_migration_9)
#: Release 10 on PostgreSQL: the same check of an entry's legs at COMMIT, each entry summed through the primary key
#: alone (release 2's ``(station_id, seq) IN (NEW, OLD)`` with one of them NULL cost two to three times as much per
#: posting, and every deposit has four). SQLite has no such trigger (``ledger.Book.post`` holds the balance).
RELEASE_10_LEGS_BALANCE = """CREATE OR REPLACE FUNCTION entry_legs_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE entry_station varchar; entry_seq bigint; total bigint;
    BEGIN
        -- NEW is NULL for a DELETE and OLD for an INSERT: each row names the one or two entries it touched.
        FOR side IN 1..2 LOOP
            IF side = 1 THEN
                entry_station := NEW.station_id; entry_seq := NEW.seq;
            ELSE
                entry_station := OLD.station_id; entry_seq := OLD.seq;
            END IF;
            CONTINUE WHEN entry_station IS NULL;
            SELECT SUM(amount_fen) INTO total FROM posting WHERE station_id = entry_station AND seq = entry_seq;
            IF total <> 0 THEN
                RAISE EXCEPTION 'postings of %% seq %% sum to %%, not zero', entry_station, entry_seq, total
                    USING ERRCODE = 'check_violation';
            END IF;
        END LOOP;
        RETURN NULL;
    END $$"""


def _migration_10(database: Database, migrator: SchemaMigrator) -> None:
    """A cheaper deferred check that an entry's legs balance (PostgreSQL; nothing to do on SQLite)."""
    if is_postgres(database):
        database.execute_sql(RELEASE_10_LEGS_BALANCE)


MIGRATIONS.append(_migration_10)
#: Release 11 on PostgreSQL: the same check again, each kind of change by itself (a new posting has only NEW, a
#: removed one only OLD: ``posting_append_only`` refuses both before they happen, so only an INSERT gets here), so
#: the function PostgreSQL runs at COMMIT for each of a batch's thousands of postings is one lookup, not a loop.
RELEASE_11_LEGS_BALANCE = """CREATE OR REPLACE FUNCTION entry_legs_balance() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE total bigint;
    BEGIN
        IF TG_OP <> 'DELETE' THEN
            SELECT SUM(amount_fen) INTO total FROM posting WHERE station_id = NEW.station_id AND seq = NEW.seq;
            IF total <> 0 THEN
                RAISE EXCEPTION 'postings of %% seq %% sum to %%, not zero', NEW.station_id, NEW.seq, total
                    USING ERRCODE = 'check_violation';
            END IF;
        END IF;
        IF TG_OP <> 'INSERT' THEN
            SELECT SUM(amount_fen) INTO total FROM posting WHERE station_id = OLD.station_id AND seq = OLD.seq;
            IF total <> 0 THEN
                RAISE EXCEPTION 'postings of %% seq %% sum to %%, not zero', OLD.station_id, OLD.seq, total
                    USING ERRCODE = 'check_violation';
            END IF;
        END IF;
        RETURN NULL;
    END $$"""


def _migration_11(database: Database, migrator: SchemaMigrator) -> None:
    """A cheaper body for the deferred check that an entry's legs balance (PostgreSQL; nothing to do on SQLite)."""
    if is_postgres(database):
        database.execute_sql(RELEASE_11_LEGS_BALANCE)


MIGRATIONS.append(_migration_11)


#: Release 12: the follow-up trail of customer voice (``sync_server.voice``). The items themselves are the
#: ``feedback`` and ``transfer_stopped`` entries already held, so there is nothing to backfill: an item without a
#: step is open. ``{bigint}`` and ``{serial}`` as in release 4.
RELEASE_12_SCHEMA = [
    """CREATE TABLE "voice_event" ("id" {serial} NOT NULL PRIMARY KEY, "station_id" VARCHAR(255) NOT NULL, "seq"
       {bigint} NOT NULL, "n" INTEGER NOT NULL CHECK (n >= 1), "at" VARCHAR(255) NOT NULL, "by" VARCHAR(255) NOT
       NULL, "action" VARCHAR(255) NOT NULL CHECK (action IN ('resolved', 'reopened', 'noted')), "note" TEXT NOT
       NULL)""",
    'CREATE UNIQUE INDEX "voice_event_station_id_seq_n" ON "voice_event" ("station_id", "seq", "n")',
]
POSTGRES_VOICE_TRIGGERS = [
    """CREATE TRIGGER voice_event_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON voice_event
       FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()""",
]
SQLITE_VOICE_TRIGGERS = [
    f"""CREATE TRIGGER voice_event_no_{action.lower()} BEFORE {action} ON voice_event
       BEGIN SELECT RAISE(ABORT, 'voice_event rows are append-only: {action} refused'); END"""
    for action in ("UPDATE", "DELETE")
]


def _migration_12(database: Database, migrator: SchemaMigrator) -> None:
    """Customer voice followed up at the bank: the append-only trail of each item (resolved, reopened, noted)."""
    types = {"bigint": "BIGINT", "serial": "SERIAL"} if is_postgres(database) else {
        "bigint": "INTEGER", "serial": "INTEGER"}
    for sql in RELEASE_12_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))
    for statement in POSTGRES_VOICE_TRIGGERS if is_postgres(database) else SQLITE_VOICE_TRIGGERS:
        database.execute_sql(statement)


MIGRATIONS.append(_migration_12)


#: Release 13: the branch dashboard (``sync_server.dashboard``): bank-side accounts, each station's county, and the
#: cache of what the dashboard reads of each entry's token. ``{bigint}`` and ``{boolean}`` as before.
RELEASE_13_SCHEMA = [
    """CREATE TABLE "bank_user" ("name" VARCHAR(255) NOT NULL PRIMARY KEY, "password_hash" VARCHAR(255) NOT NULL,
       "role" VARCHAR(255) NOT NULL CHECK (role IN ('manager')), "disabled" {boolean} NOT NULL, "session_id"
       VARCHAR(255), "created_at" VARCHAR(255) NOT NULL, "last_login_at" VARCHAR(255))""",
    'ALTER TABLE "station" ADD COLUMN "county" VARCHAR(255)',
    """CREATE TABLE "entry_time" ("station_id" VARCHAR(255) NOT NULL, "seq" {bigint} NOT NULL, "type" VARCHAR(255)
       NOT NULL, "outcome" VARCHAR(255) NOT NULL, "reason" VARCHAR(255), "ts" VARCHAR(255), "gap_ms" {bigint},
       PRIMARY KEY ("station_id", "seq"))""",
    'CREATE INDEX "entry_time_ts" ON "entry_time" ("ts")',
    """CREATE TABLE "entry_time_mark" ("station_id" VARCHAR(255) NOT NULL PRIMARY KEY, "through_seq" {bigint} NOT
       NULL)""",
]


def _migration_13(database: Database, migrator: SchemaMigrator) -> None:
    """The branch dashboard: bank-side accounts, each station's county, the entries' times read from their tokens."""
    types = {"bigint": "BIGINT", "boolean": "BOOLEAN"} if is_postgres(database) else {
        "bigint": "INTEGER", "boolean": "INTEGER"}
    for sql in RELEASE_13_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))


MIGRATIONS.append(_migration_13)


#: Release 14: 12315 complaints for the market regulator (``sync_server.complaints``). ``{bigint}`` and ``{serial}``
#: as before. The audit trail of their statuses is append-only, like the ledger.
RELEASE_14_SCHEMA = [
    """CREATE TABLE "complaint" ("complaint_no" VARCHAR(255) NOT NULL PRIMARY KEY, "station_id" VARCHAR(255) NOT
       NULL, "seq" {bigint} NOT NULL, "entry_ts" VARCHAR(255) NOT NULL, "received_at" VARCHAR(255) NOT NULL, "agent"
       VARCHAR(255) NOT NULL, "phone" VARCHAR(255) NOT NULL, "business" VARCHAR(255) NOT NULL, "category"
       VARCHAR(255) NOT NULL, "details" TEXT NOT NULL, "status" VARCHAR(255) NOT NULL CHECK (status IN ('received',
       'accepted', 'transferred', 'resolved', 'rejected')), "status_note" TEXT NOT NULL, "answered_at" VARCHAR(255),
       "updated_at" VARCHAR(255) NOT NULL)""",
    'CREATE INDEX "complaint_received_at" ON "complaint" ("received_at")',
    'CREATE UNIQUE INDEX "complaint_station_id_seq" ON "complaint" ("station_id", "seq")',
    """CREATE TABLE "complaint_event" ("id" {serial} NOT NULL PRIMARY KEY, "complaint_no" VARCHAR(255) NOT NULL,
       "at" VARCHAR(255) NOT NULL, "by" VARCHAR(255) NOT NULL, "status" VARCHAR(255) NOT NULL CHECK (status IN
       ('received', 'accepted', 'transferred', 'resolved', 'rejected')), "note" TEXT NOT NULL, "answered_at"
       VARCHAR(255))""",
    'CREATE INDEX "complaint_event_complaint_no" ON "complaint_event" ("complaint_no")',
]
POSTGRES_COMPLAINT_TRIGGERS = [
    """CREATE TRIGGER complaint_event_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON complaint_event
       FOR EACH STATEMENT EXECUTE FUNCTION refuse_ledger_change()""",
]
SQLITE_COMPLAINT_TRIGGERS = [
    f"""CREATE TRIGGER complaint_event_no_{action.lower()} BEFORE {action} ON complaint_event
       BEGIN SELECT RAISE(ABORT, 'complaint_event rows are append-only: {action} refused'); END"""
    for action in ("UPDATE", "DELETE")
]


def _migration_14(database: Database, migrator: SchemaMigrator) -> None:
    """12315 complaints for the market regulator, with the append-only audit trail of their statuses."""
    types = {"bigint": "BIGINT", "serial": "SERIAL"} if is_postgres(database) else {
        "bigint": "INTEGER", "serial": "INTEGER"}
    for sql in RELEASE_14_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))
    for statement in POSTGRES_COMPLAINT_TRIGGERS if is_postgres(database) else SQLITE_COMPLAINT_TRIGGERS:
        database.execute_sql(statement)


MIGRATIONS.append(_migration_14)


#: Release 15: wealth-management products (``sync_server.wmp``) and the customer's risk-assessment level.
#: ``{bigint}`` as before.
RELEASE_15_SCHEMA = [
    """CREATE TABLE "wmp_product" ("code" VARCHAR(255) NOT NULL PRIMARY KEY, "name_zh" VARCHAR(255) NOT NULL,
       "name_en" VARCHAR(255) NOT NULL, "risk_level" INTEGER NOT NULL CHECK (risk_level BETWEEN 1 AND 5),
       "min_fen" {bigint} NOT NULL CHECK (min_fen > 0), "step_fen" {bigint} NOT NULL CHECK (step_fen > 0),
       "opens_on" VARCHAR(255) NOT NULL, "closes_on" VARCHAR(255) NOT NULL, "quota_fen" {bigint} NOT NULL
       CHECK (quota_fen >= 0), "description_zh" VARCHAR(255) NOT NULL, "description_en" VARCHAR(255) NOT NULL,
       "status" VARCHAR(255) NOT NULL CHECK (status IN ('open', 'closed')))""",
    'ALTER TABLE "customer" ADD COLUMN "risk_level" INTEGER CHECK (risk_level BETWEEN 1 AND 5)',
]


def _migration_15(database: Database, migrator: SchemaMigrator) -> None:
    """Wealth-management products and the customer's risk-assessment level."""
    types = {"bigint": "BIGINT"} if is_postgres(database) else {"bigint": "INTEGER"}
    for sql in RELEASE_15_SCHEMA:
        database.execute_sql(" ".join(sql.format(**types).split()))


MIGRATIONS.append(_migration_15)


def _migration_16(database: Database, migrator: SchemaMigrator) -> None:
    """Real-time authorization of wealth-product orders: the product a grant is for (its live grants hold quota)."""
    database.execute_sql('ALTER TABLE "authorization" ADD COLUMN "product" VARCHAR(255)')


MIGRATIONS.append(_migration_16)


def _migration_17(database: Database, migrator: SchemaMigrator) -> None:
    """An index on the holds' account: a batch reads every station's hold on the customers it names (the primary
    key leads with the station, so each batch scanned the whole table, one row per station and home customer)."""
    database.execute_sql('CREATE INDEX "hold_account_id" ON "hold" ("account_id")')


MIGRATIONS.append(_migration_17)


#: Release 18 on PostgreSQL: the same guarantee (when a transaction commits, the legs of every entry it wrote sum to
#: zero) for a fraction of the CPU. Release 2's row trigger ran at COMMIT once per posting (four per deposit), each
#: call a PL/pgSQL frame, a fetch of its row and an executor of its own for the sum: about a third of PostgreSQL's
#: CPU per entry. Now each INSERT statement, at its end, sums once (one set-based statement over the statement's
#: new rows) every entry it touched, over all of that entry's postings the transaction can see; an entry that does
#: not balance there is written to ``posting_legs_unbalanced``, whose row trigger, deferred to COMMIT, sums it again
#: and refuses the transaction unless it balances then (its legs may come in several statements). A balanced entry
#: can only be unbalanced by a later INSERT (``posting`` refuses UPDATE, DELETE and TRUNCATE), and that statement
#: sums it again. ``posting_legs_unbalanced`` is UNLOGGED and empty outside a transaction: each row is deleted by
#: the check that read it, or rolled back with the transaction that wrote it.
POSTGRES_LEGS_CHECK_18 = [
    "DROP TRIGGER posting_legs_balance_at_commit ON posting",
    "DROP FUNCTION entry_legs_balance()",
    """CREATE UNLOGGED TABLE posting_legs_unbalanced (station_id VARCHAR(255) NOT NULL, seq BIGINT NOT NULL)""",
    # Each entry summed through the primary key, whatever the table's size when a session first planned it (the
    # plan is kept for the session: one planned on a young bank's small table would scan the whole table later).
    """CREATE FUNCTION posting_legs_after_insert() RETURNS trigger LANGUAGE plpgsql SET enable_seqscan = off AS $$
    BEGIN
        INSERT INTO posting_legs_unbalanced (station_id, seq)
            SELECT touched.station_id, touched.seq FROM (SELECT DISTINCT station_id, seq FROM new_postings) AS touched
            WHERE (SELECT SUM(p.amount_fen) FROM posting AS p
                   WHERE p.station_id = touched.station_id AND p.seq = touched.seq) <> 0;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER posting_legs_after_insert AFTER INSERT ON posting REFERENCING NEW TABLE AS new_postings
       FOR EACH STATEMENT EXECUTE FUNCTION posting_legs_after_insert()""",
    """CREATE FUNCTION unbalanced_legs_at_commit() RETURNS trigger LANGUAGE plpgsql SET enable_seqscan = off AS $$
    DECLARE total bigint;
    BEGIN
        SELECT SUM(amount_fen) INTO total FROM posting WHERE station_id = NEW.station_id AND seq = NEW.seq;
        IF total <> 0 THEN
            RAISE EXCEPTION 'postings of %% seq %% sum to %%, not zero', NEW.station_id, NEW.seq, total
                USING ERRCODE = 'check_violation';
        END IF;
        DELETE FROM posting_legs_unbalanced WHERE station_id = NEW.station_id AND seq = NEW.seq;
        RETURN NULL;
    END $$""",
    """CREATE CONSTRAINT TRIGGER posting_legs_balance_at_commit AFTER INSERT ON posting_legs_unbalanced
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION unbalanced_legs_at_commit()""",
]


def _migration_18(database: Database, migrator: SchemaMigrator) -> None:
    """A cheaper check that an entry's legs balance at COMMIT: summed once per entry and INSERT statement, again at
    COMMIT only for an entry that did not balance then (PostgreSQL; nothing to do on SQLite)."""
    if is_postgres(database):
        for statement in POSTGRES_LEGS_CHECK_18:
            database.execute_sql(statement)


MIGRATIONS.append(_migration_18)
