"""The book: the central ledger's accounts and holds, as one batch reads and changes them.

A customer's money is held two ways: each station's offline allowance (``Hold``, one row per station and customer)
and each live real-time authorization (``Authorization`` with ``status`` active and ``expires_at`` after the book's
``now``; an expired one holds nothing, whatever its status still says). ``held`` and ``available`` count both.

Amounts of postings are debit-positive; a balance is stored on the account's normal side. Invariants and where
they are enforced:
- the legs of one entry sum to zero: ``Book.post`` refuses otherwise, before anything is written (and on
  PostgreSQL a trigger in ``db`` refuses unbalanced postings again);
- a posting is never zero, a customer's balance and a hold are never negative: ``Book.post`` and
  ``Book.set_hold`` before the write, and CHECK constraints (``db``);
- what ``Book`` changed is written once, by ``Book.flush``, in the caller's transaction; customer accounts are
  locked (PostgreSQL) in account id order, so two batches touching the same customers cannot deadlock.
Which legs an entry has, and whether a debit fits the available balance, are the posting rules' (``posting_rules``).

Accounts other than customers' are per station (``cash:ST-0001``, ``fees:ST-0001``, ``biller:CODE:ST-0001``,
see ``station_account``), so that ingest from different stations only ever contends on the customer accounts
both touch.
"""

from __future__ import annotations

from types import NoneType

from peewee import EXCEPTIONS, BigIntegerField, ExceptionWrapper, IntegerField, fn

from sync_server.db import (
    DEBIT_NORMAL,
    Account,
    Authorization,
    Customer,
    Hold,
    Posting,
    arg,
    cached_execute,
    cached_rows,
    db_proxy,
    is_postgres,
    locked,
    one_of,
)


class LedgerError(RuntimeError):
    """A posting set that would break an invariant: a bug, never a customer's fault."""


#: The id prefix of each kind of account a station has; a biller payable one per biller (``extra``).
_STATION_PREFIXES = {
    "station_cash": "cash", "float_funding": "float", "cash_variance": "variance", "agent_payable": "agent",
    "commission_expense": "commission", "fee_income": "fees", "transfer_clearing": "transfers",
    "external_clearing": "external", "biller_payable": "biller",
}
#: The kinds of account each station has one of (``station_account`` without ``extra``).
STATION_KINDS = tuple(kind for kind in _STATION_PREFIXES if kind != "biller_payable")


def station_account(kind: str, station_id: str, extra: str | None = None) -> tuple[str, str]:
    """(account id, kind) of a station's own ledger account of ``kind``."""
    prefix = _STATION_PREFIXES[kind]
    name = f"{prefix}:{extra}:{station_id}" if extra else f"{prefix}:{station_id}"
    return name, kind


class Book:
    """The accounts one batch touches, loaded (and on PostgreSQL row-locked) once, changed in memory, written once.

    Customer accounts are locked in account id order so two batches touching the same customers cannot deadlock.
    """

    def __init__(self, station_id: str, customer_ids: set[str], now: str, *, station_accounts: bool = False):
        """``station_accounts``: load (and lock) the station's own accounts too, those that exist (``STATION_KINDS``),
        with the customers' in the same query, as a batch of the station's entries will post to them."""
        self.station_id = station_id
        self.now = now
        own = {station_account(kind, station_id)[0] for kind in STATION_KINDS} if station_accounts else set()
        # Each lookup's SQL is built once (``cached_rows``): the ids travel as one list, whatever their number.
        customers = sorted(customer_ids)
        self.accounts = {a.account_id: a for a in cached_rows("book accounts", lambda: locked(
            Account.select().where(one_of(Account.account_id)).order_by(Account.account_id)),
            sorted(customer_ids | own))}
        self.customers = {c.account_id: c for c in cached_rows(
            "book customers", lambda: Customer.select().where(one_of(Customer.account_id)), customers)}
        self.holds: dict[tuple[str, str], int] = {
            (hold_station, account_id): amount for hold_station, account_id, amount in cached_execute(
                "book holds", lambda: Hold.select(Hold.station_id, Hold.account_id, Hold.amount_fen).where(
                    one_of(Hold.account_id)), customers).fetchall()}
        #: auth_id -> (account, fen) of every live authorization hold on these customers, at any station.
        self.authorizations: dict[str, tuple[str, int]] = {
            auth_id: (account_id, amount) for auth_id, account_id, amount in cached_execute(
                "book authorizations", lambda: live_authorizations(arg(1), one_of(Authorization.account_id)).select(
                    Authorization.auth_id, Authorization.account_id, Authorization.hold_fen), customers,
                now).fetchall()}
        self.changed_accounts: set[str] = set()
        self.changed_holds: set[tuple[str, str]] = set()

    # -- reading ------------------------------------------------------------------------------------------
    def balance(self, account_id: str) -> int:
        """The account's balance on its normal side."""
        return self.accounts[account_id].balance_fen

    def held(self, account_id: str) -> int:
        """All holds on a customer's account: every station's offline allowance and every live authorization."""
        return (sum(amount for (_, acct), amount in self.holds.items() if acct == account_id)
                + self.authorized(account_id))

    def authorized(self, account_id: str) -> int:
        """What the live real-time authorizations hold of a customer's account, at every station."""
        return sum(amount for acct, amount in self.authorizations.values() if acct == account_id)

    def available(self, account_id: str) -> int:
        """Balance minus every hold: what may still be spent online or newly held."""
        return self.balance(account_id) - self.held(account_id)

    def hold(self, account_id: str, station_id: str | None = None) -> int:
        """The hold for this (or ``station_id``'s) offline allowance of the customer."""
        return self.holds.get((station_id or self.station_id, account_id), 0)

    # -- writing in memory --------------------------------------------------------------------------------
    def ensure_account(self, account_id: str, kind: str) -> None:
        """Create the account when missing, and load (and lock) it."""
        if account_id in self.accounts:
            return
        Account.insert(account_id=account_id, kind=kind, name=account_id).on_conflict(
            conflict_target=[Account.account_id], action="NOTHING").execute()
        self.load_account(account_id)

    def load_account(self, account_id: str) -> None:
        """Load (and on PostgreSQL lock) an existing account the batch did not name up front."""
        if account_id not in self.accounts:
            query = Account.select().where(Account.account_id == account_id)
            self.accounts[account_id] = (query.for_update() if is_postgres() else query).get()

    def add_authorization(self, auth_id: str, account_id: str, amount: int) -> None:
        """A new live authorization hold (the caller writes its row)."""
        if amount < 0:
            raise LedgerError("a hold is never negative")
        self.authorizations[auth_id] = (account_id, amount)

    def release_authorization(self, auth_id: str) -> None:
        """An authorization consumed by its entry holds nothing any more (the caller writes its row)."""
        self.authorizations.pop(auth_id, None)

    def set_hold(self, account_id: str, amount: int) -> None:
        """Set this station's hold on a customer (written by ``flush``)."""
        if amount < 0:
            raise LedgerError("a hold is never negative")
        key = (self.station_id, account_id)
        if self.holds.get(key, 0) != amount:
            self.holds[key] = amount
            self.changed_holds.add(key)

    def post(self, legs: list[tuple[str, int, str]]) -> None:
        """Apply legs ``(account_id, debit-positive fen, memo)`` to the balances; they must sum to zero."""
        if sum(amount for _, amount, _ in legs) != 0:
            raise LedgerError(f"postings do not sum to zero: {legs}")
        for account_id, amount, _ in legs:
            if amount == 0:
                raise LedgerError("a posting is never zero")
            account = self.accounts[account_id]
            kind = account.kind
            balance = account.balance_fen = account.balance_fen + (amount if kind in DEBIT_NORMAL else -amount)
            if kind == "customer" and balance < 0:
                raise LedgerError(f"{account_id} would go below zero")
            self.changed_accounts.add(account_id)

    def flush(self) -> None:
        """Write the changed balances and holds (one statement each; the accounts are locked already)."""
        update_rows(Account, [dict(account_id=account_id, balance_fen=self.accounts[account_id].balance_fen)
                              for account_id in sorted(self.changed_accounts)])
        upsert_rows(Hold, [dict(station_id=station_id, account_id=account_id, amount_fen=self.holds[(station_id,
                                                                                                     account_id)],
                                updated_at=self.now) for station_id, account_id in sorted(self.changed_holds)],
                    update=["amount_fen", "updated_at"])
        self.changed_accounts.clear()
        self.changed_holds.clear()


def live_authorizations(now: str, where=None):
    """The authorizations that hold money at ``now`` (UTC text): active and not expired, with a hold."""
    query = Authorization.select().where((Authorization.status == "active") & (Authorization.expires_at > now)
                                         & (Authorization.hold_fen > 0))
    return query.where(where) if where is not None else query


def reserved_quota(code: str, now: str) -> dict[str, int]:
    """auth_id -> amount of every live grant of a wealth-product order for product ``code``, at any station: what
    those grants hold of the product's quota until their entries arrive (``authorize.decide``, ``Applier``). Read it
    holding the product's row lock (PostgreSQL ``FOR UPDATE``), as every writer of the quota does."""
    return dict(live_authorizations(now, (Authorization.kind == "wmp_order") & (Authorization.product == code))
                .select(Authorization.auth_id, Authorization.amount_fen).tuples())


def expire_authorizations(station_id: str, now: str) -> int:
    """Mark the station's authorizations whose time (``now``, UTC text) has passed ``expired``; how many. They held
    nothing already (every reader counts only ``live_authorizations``): the sweep keeps the status true. Call it
    holding the station's row lock, as every writer of a station's authorizations does. Its SQL is built once
    (``cached_execute``): every batch runs it."""
    return cached_execute("expire authorizations", lambda: Authorization.update(status="expired").where(
        (Authorization.station_id == arg(0)) & (Authorization.status == "active")
        & (Authorization.expires_at <= arg(1))), station_id, now).rowcount


#: The database driver's errors raised as peewee's (``IntegrityError`` ...), as peewee raises them for the statements it
#: runs itself: ``_insert_rows`` uses the driver's cursor directly.
_AS_PEEWEE_ERRORS = ExceptionWrapper(EXCEPTIONS)


def insert_new_rows(model, rows: list[dict]) -> int:
    """``INSERT ... ON CONFLICT (<primary key>) DO NOTHING`` for many rows; returns how many were inserted."""
    return _insert_rows(model, rows, "DO NOTHING")


def insert_rows(model, rows: list[dict]) -> int:
    """``INSERT`` many rows that must all be new: one whose key is taken raises peewee's ``IntegrityError`` and
    nothing of the statement is written (the caller's transaction is then rolled back and run again, as
    ``service.once_more_on_conflict`` does). For a batch's own rows, new by construction under the station's lock:
    ``ON CONFLICT DO NOTHING`` would cost PostgreSQL a speculative insertion per row (an index probe before it and a
    confirmation after), about a third more CPU for a batch's postings, only to be told the same thing."""
    return _insert_rows(model, rows, None)


def upsert_rows(model, rows: list[dict], *, update: list[str]) -> int:
    """``INSERT ... ON CONFLICT (<primary key>) DO UPDATE`` the ``update`` columns, for many rows."""
    assignments = ", ".join(f'"{model._meta.fields[c].column_name}" = EXCLUDED."{model._meta.fields[c].column_name}"'
                            for c in update)
    return _insert_rows(model, rows, f"DO UPDATE SET {assignments}")


def update_rows(model, rows: list[dict]) -> int:
    """``UPDATE`` many rows, each found by its primary key (in each row) and given the row's other values."""
    if not rows:
        return 0
    meta = model._meta
    keys = [key.name for key in meta.get_primary_keys()]
    values = [c for c in rows[0] if c not in keys]
    cursor = db_proxy.cursor()
    if is_postgres():
        # The new values as a table v (one array per column), joined to the rows by primary key.
        columns = [*keys, *values]
        assignments = ", ".join(f'"{meta.fields[c].column_name}" = v."{c}"' for c in values)
        aliases = ", ".join(f'"{c}"' for c in columns)
        match = " AND ".join(f'"{meta.table_name}"."{meta.fields[c].column_name}" = v."{c}"' for c in keys)
        arrays, params = _column_arrays(meta, columns, rows)
        cursor.execute(f'UPDATE "{meta.table_name}" SET {assignments} FROM unnest({arrays}) '
                       f"AS v({aliases}) WHERE {match}", params)
        return cursor.rowcount
    param = db_proxy.obj.param
    cursor.executemany(
        f'UPDATE "{meta.table_name}" SET ' + ", ".join(f'"{meta.fields[c].column_name}" = {param}' for c in values)
        + " WHERE " + " AND ".join(f'"{meta.fields[c].column_name}" = {param}' for c in keys),
        [tuple(row[c] for c in (*values, *keys)) for row in rows])
    return cursor.rowcount


#: Between the values of a column joined into one text parameter (``_column_arrays``), and standing for NULL: two
#: control characters that no value the server writes holds (a value that does is sent as a binary array).
_SEPARATOR = "\x1f"
_NULL = "\x1e"


def _is_integer_column(meta, column: str) -> bool:
    return isinstance(meta.fields[column], BigIntegerField | IntegerField)


def _column_arrays(meta, columns: list[str], rows: list[dict]) -> tuple[str, list]:
    """The SQL of one array per column, typed as the column is (integers or text), and its parameters.

    Each column travels as one text parameter, its values joined, and PostgreSQL splits it (``string_to_array``):
    psycopg dumps a list element by element in Python, three times the CPU per value, and quotes each element of a
    text-format array with a regular expression. A column of one row, or with a value that holds the separator
    or the NULL mark, goes as a binary array (``%b``) instead: ``string_to_array('')`` is an empty array, not one
    empty string, and a value must never be split or read as NULL."""
    sql, params = [], []
    for column in columns:
        values = [row[column] for row in rows]
        kind = "bigint" if _is_integer_column(meta, column) else "text"
        # The types of a column's values, found in C (a generator testing each value cost more than the join).
        types = set(map(type, values)) if len(values) > 1 else None
        nulls = values.count(None) if types is not None and NoneType in types else 0
        if kind == "bigint":
            if types is not None and types <= _INTEGER_TYPES:
                sql.append(f"string_to_array(%s, ',', '')::{kind}[]")
                params.append(",".join(map(str, values)) if not nulls
                              else ",".join("" if value is None else str(value) for value in values))
                continue
        elif types is not None and types <= _TEXT_TYPES:
            joined = _SEPARATOR.join(values if not nulls else [_NULL if value is None else value for value in values])
            if joined.count(_SEPARATOR) == len(values) - 1 and joined.count(_NULL) == nulls:
                sql.append(f"string_to_array(%s, E'\\x1f', E'\\x1e')::{kind}[]")
                params.append(joined)
                continue
        sql.append(f"%b::{kind}[]")
        params.append(values)
    return ", ".join(sql), params


#: The value types a column may hold to travel as one joined text (``_column_arrays``): exactly int (a bool would
#: be written True) or exactly str, and None.
_INTEGER_TYPES = frozenset({int, NoneType})
_TEXT_TYPES = frozenset({str, NoneType})


def _insert_rows(model, rows: list[dict], on_conflict: str | None) -> int:
    """``INSERT ... ON CONFLICT (<primary key>) <on_conflict>`` for many rows (no ``ON CONFLICT`` clause when
    ``on_conflict`` is None); returns how many were written. The driver's errors are raised as peewee's.

    On PostgreSQL one statement for the whole batch, each column one array; on SQLite one prepared statement run
    with ``executemany``. Peewee's query builder would cost more than the database for thousands of rows. The
    columns are plain text and integers, passed as they are.
    """
    if not rows:
        return 0
    meta = model._meta
    columns = list(rows[0])
    target = ", ".join(f'"{key.column_name}"' for key in meta.get_primary_keys())
    conflict = f" ON CONFLICT ({target}) {on_conflict}" if on_conflict else ""
    names = ", ".join(f'"{meta.fields[c].column_name}"' for c in columns)
    cursor = db_proxy.cursor()
    with _AS_PEEWEE_ERRORS:
        if is_postgres():
            arrays, params = _column_arrays(meta, columns, rows)
            cursor.execute(f'INSERT INTO "{meta.table_name}" ({names}) SELECT * FROM unnest({arrays}){conflict}',
                           params)
            return cursor.rowcount
        placeholders = ", ".join([db_proxy.obj.param] * len(columns))
        cursor.executemany(f'INSERT INTO "{meta.table_name}" ({names}) VALUES ({placeholders}){conflict}',
                           [tuple(row[c] for c in columns) for row in rows])
        return cursor.rowcount


def present_values(field, values) -> set[str]:
    """Which of ``values`` the text column ``field`` (of its model's table) holds, read at once: on PostgreSQL one
    statement with the values as one array (peewee would build, and psycopg adapt, one placeholder per value); on
    SQLite ``IN`` lists of at most 1,000."""
    values = sorted(set(values))
    table, column = field.model._meta.table_name, field.column_name
    if is_postgres():
        if not values:
            return set()
        arrays, params = _column_arrays(field.model._meta, [field.name], [{field.name: value} for value in values])
        # One index probe per value, whatever PostgreSQL believes of the table's size: not ``= ANY(...)`` (the plan
        # psycopg prepares after five runs cannot see the list's length, and for ``ANY`` over a split text it scans
        # the whole table), nor a plain join (with statistics older than the table's growth, e.g. between two runs
        # of autovacuum, it hashes the whole table for each batch: the cost then grows with every txn the bank
        # holds). The LIMIT keeps the subquery a nested loop of its own.
        cursor = db_proxy.execute_sql(f'SELECT v.value FROM unnest({arrays}) AS v(value) CROSS JOIN LATERAL '
                                      f'(SELECT 1 FROM "{table}" AS t WHERE t."{column}" = v.value LIMIT 1) AS hit',
                                      params)
        return {value for (value,) in cursor.fetchall()}
    found = set()
    for start in range(0, len(values), 1000):
        chunk = values[start:start + 1000]
        found.update(value for (value,) in field.model.select(field).where(field.in_(chunk)).tuples())
    return found


def ledger_totals() -> dict[str, int]:
    """Sum of postings per account (debit-positive): for checks and reconciliation."""
    return dict(Posting.select(Posting.account_id, fn.SUM(Posting.amount_fen)).group_by(Posting.account_id).tuples())
