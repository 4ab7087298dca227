"""The station's business rows against the journal entries they were written with (``station verify-journal``).

Every customer operation writes its ``operation`` row in the same transaction as its entry, and a day open and a
day close write their ``business_day`` row with theirs (``station.writepath``, ``station.business_day``), so the
rows must say what the signed entries say. A row changed since, by hand or by damage the file's own checks cannot
see (a flipped bit inside a record passes ``PRAGMA integrity_check``), is reported by the seq of its entry: the
entries, signed and chained, are the truth, and the rows are what limits, allowances and the drawer are checked
against.

Checked, after the chain has verified (``station.journal.audit_journal``):

- each ``journal_entry`` row's ``type`` and ``txn`` columns are its token's;
- one ``operation`` row per customer-operation entry and none without one, with the entry's txn, type, agent,
  account, amount, fee, debit, ref_txn, auth, time, cash effect and details, in the business day then open;
- an operation is ``reversed`` or ``cancelled`` exactly when a later reversal or cancellation names it;
- one ``business_day`` row per ``day_open`` entry, in order, with its float, counts and opener; once closed, with
  the close's counted cash, variance, counts, closer and business date; and drawer cash as the entries leave it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from station.context import Station
from station.protocol.entry_types import Effect, EntryType, OperationState, spec_of
from station.protocol.journal_checks import JournalProblem, cash_effect
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import is_integer, unverified_payload

#: The operation row's columns (text read as bytes: a damaged one must not stop the check), in SELECT order.
_OPERATION_COLUMNS = ("seq", "txn", "type", "agent_id", "account", "amount_fen", "fee_fen", "debit_fen", "cash_fen",
                      "status", "ref_txn", "auth_id", "created_at", "details", "day_id")
_OPERATIONS = (
    "SELECT o.seq, CAST(o.txn AS BLOB), CAST(o.type AS BLOB), CAST(o.agent_id AS BLOB),"
    " CAST(c.account_id AS BLOB), o.amount_fen, o.fee_fen, o.debit_fen, o.cash_fen, CAST(o.status AS BLOB),"
    " CAST(o.ref_txn AS BLOB), CAST(o.auth_id AS BLOB), CAST(o.created_at AS BLOB), CAST(o.details AS BLOB), o.day_id"
    " FROM operation o LEFT JOIN customer c ON c.id = o.customer_id ORDER BY o.seq"
)
_DAY_COLUMNS = ("id", "business_date", "opened_by", "float_fen", "open_counts", "cash_fen", "closed_at", "closed_by",
                "counted_fen", "variance_fen", "close_counts")
_DAYS = (
    "SELECT id, CAST(business_date AS BLOB), CAST(opened_by AS BLOB), float_fen, CAST(open_counts AS BLOB), cash_fen,"
    " CAST(closed_at AS BLOB), CAST(closed_by AS BLOB), counted_fen, variance_fen, CAST(close_counts AS BLOB)"
    " FROM business_day ORDER BY id"
)
_UNDONE_STATUS = {EntryType.REVERSAL: OperationState.REVERSED.value,
                  EntryType.TRANSFER_CANCEL: OperationState.CANCELLED.value}


def _text(value: Any) -> Any:
    """A text column read as bytes, decoded; bytes that are not UTF-8 come out with U+FFFD (and then differ)."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _time(value: Any) -> Any:
    """A time column as ``utc_text`` writes it (release 1 stored microseconds and ``+00:00``), or as it is."""
    try:
        return utc_text(parse_utc(value))
    except (TypeError, ValueError):
        return value


def _json(value: Any) -> Any:
    """A JSON column's value, or a marker string that matches nothing when it does not parse."""
    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        return "<not JSON>"


def _rows(st: Station, sql: str, columns: tuple[str, ...]) -> Iterator[dict]:
    """The rows of ``sql`` as dicts by ``columns``, text decoded (``_text``)."""
    for row in st.db.execute_sql(sql):
        yield dict(zip(columns, (_text(value) for value in row), strict=True))


def _entries(st: Station) -> Iterator[tuple[int, Any, Any, dict]]:
    """(seq, type column, txn column, payload) of every entry; called only once the chain has verified."""
    sql = "SELECT seq, CAST(type AS BLOB), CAST(txn AS BLOB), token FROM journal_entry ORDER BY seq"
    for row in _rows(st, sql, ("seq", "type", "txn", "token")):
        yield row["seq"], row["type"], row["txn"], unverified_payload(row["token"])


def _debit(spec, payload: dict) -> Any:
    """What the operation takes from the customer's account: amount and fee of a debit (a bill only when paid from
    the account), else nothing."""
    if spec.customer_effect != Effect.DEBIT or payload.get("funding", "account") != "account":
        return 0
    amount, fee = payload.get("amount"), payload.get("fee", 0)
    return amount + fee if is_integer(amount) and is_integer(fee) else amount


def _differences(row: dict, expected: dict) -> list[str]:
    return [f"{column} is {row[column]!r}, the entry says {value!r}"
            for column, value in expected.items() if row[column] != value]


class _Days:
    """The ``business_day`` rows, taken in order as the entries open days, with the drawer replayed."""

    def __init__(self, st: Station, report):
        self.rows = list(_rows(st, _DAYS, _DAY_COLUMNS))
        self.taken = 0
        self.open: dict | None = None
        self.opened_seq: int | None = None
        self.drawer = 0
        self.report = report

    def opened(self, seq: int, payload: dict) -> None:
        self.close_open(seq)
        if self.taken == len(self.rows):
            self.report(seq, "a day is opened, but no business_day row is left for it")
            self.open = None
            return
        row = self.rows[self.taken]
        self.taken += 1
        self.open, self.opened_seq, self.drawer = row, seq, payload.get("amount")
        for problem in _differences({**row, "open_counts": _json(row["open_counts"])}, {
                "float_fen": payload.get("amount"), "opened_by": payload.get("agent"),
                "open_counts": payload.get("counts")}):
            self.report(seq, f"business_day {row['id']}: {problem}")

    def closed(self, seq: int, payload: dict) -> None:
        row = self.open
        if row is None:
            return  # a close without an open day: check_journal_semantics reports it
        self.open = None
        found = {**row, "close_counts": _json(row["close_counts"])}
        for problem in _differences(found, {
                "counted_fen": payload.get("amount"), "variance_fen": payload.get("variance"),
                "closed_by": payload.get("agent"), "close_counts": payload.get("counts"),
                "business_date": payload.get("business_date"),
                "cash_fen": payload.get("expected")}):
            self.report(seq, f"business_day {row['id']}: {problem}")
        if row["closed_at"] is None:
            self.report(seq, f"business_day {row['id']}: not closed, the entry closes it")

    def close_open(self, seq: int) -> None:
        """At the end of the journal (or a second open): the open day's row holds the replayed drawer, unclosed."""
        row = self.open
        if row is None:
            return
        if row["closed_at"] is not None:
            self.report(self.opened_seq, f"business_day {row['id']}: closed, but no entry closes it")
        if row["cash_fen"] != self.drawer:
            self.report(seq, f"business_day {row['id']}: cash_fen is {row['cash_fen']!r}, the entries leave "
                             f"{self.drawer!r} fen in the drawer")

    def finish(self, last_seq: int) -> None:
        self.close_open(last_seq)
        for row in self.rows[self.taken:]:
            self.report(last_seq, f"business_day {row['id']}: no day_open entry opened it")


def row_problems(st: Station) -> list[JournalProblem]:
    """Every difference between the station's rows and its (verified) journal entries, by the entry's seq."""
    problems: list[JournalProblem] = []

    def report(seq, reason: str) -> None:
        problems.append(JournalProblem(seq, reason))

    operations = _rows(st, _OPERATIONS, _OPERATION_COLUMNS)
    pending = next(operations, None)
    days = _Days(st, report)
    cash_by_txn: dict[Any, int] = {}
    undone: dict[Any, tuple[int, str]] = {}  # original txn -> (its seq, the status it must have)
    marked: dict[Any, tuple[int, str]] = {}  # txn -> (seq, status) of rows marked reversed or cancelled
    last_seq = 0
    for seq, type_column, txn_column, payload in _entries(st):
        last_seq = seq
        entry_type, txn = payload.get("type"), payload.get("txn")
        if (type_column, txn_column) != (entry_type, txn):
            report(seq, f"journal_entry row says type {type_column!r}, txn {txn_column!r}; its token says type "
                        f"{entry_type!r}, txn {txn!r}")
        while pending is not None and (not isinstance(pending["seq"], int) or pending["seq"] < seq):
            report(seq, f"operation {pending['txn']!r} at seq {pending['seq']!r} has no journal entry of its own")
            pending = next(operations, None)
        if entry_type == EntryType.DAY_OPEN:
            days.opened(seq, payload)
        elif entry_type == EntryType.DAY_CLOSE:
            days.closed(seq, payload)
        spec = spec_of(entry_type)
        if spec is None or not spec.customer_operation:
            continue
        if pending is None or pending["seq"] != seq:
            report(seq, f"the {entry_type} entry (txn {txn}) has no operation row")
            continue
        row, pending = pending, next(operations, None)
        cash = cash_effect(payload, cash_by_txn.get(payload.get("ref_txn"), 0))
        if spec.moves_cash:
            cash_by_txn[txn] = cash
            if days.open is not None and isinstance(days.drawer, int):
                days.drawer += cash
        if entry_type in _UNDONE_STATUS:
            ref_seq = payload.get("ref_seq")
            undone[payload.get("ref_txn")] = (ref_seq if is_integer(ref_seq) else seq, _UNDONE_STATUS[entry_type])
        if row["status"] in _UNDONE_STATUS.values():
            marked[row["txn"]] = (seq, row["status"])
        expected = {"txn": txn, "type": entry_type, "agent_id": payload.get("agent"),
                    "account": payload.get("account"), "amount_fen": payload.get("amount"),
                    "fee_fen": payload.get("fee", 0), "debit_fen": _debit(spec, payload), "cash_fen": cash,
                    "ref_txn": payload.get("ref_txn"), "auth_id": payload.get("auth"), "created_at": payload.get("ts"),
                    "day_id": days.open["id"] if days.open is not None else None}
        for problem in _differences({**row, "created_at": _time(row["created_at"])}, expected):
            report(seq, f"operation row: {problem}")
        details = _json(row["details"])
        if not isinstance(details, dict):
            report(seq, f"operation row: details are {row['details']!r}, not an object")
        else:
            for key, value in details.items():
                if payload.get(key) != value:
                    report(seq, f"operation row: details hold {key}={value!r}, the entry says "
                                f"{payload.get(key)!r}")
    while pending is not None:
        report(last_seq, f"operation {pending['txn']!r} at seq {pending['seq']!r} has no journal entry of its own")
        pending = next(operations, None)
    days.finish(last_seq)
    for txn in marked.keys() | undone.keys():
        if marked.get(txn, (None, None))[1] != undone.get(txn, (None, None))[1]:
            seq = (marked.get(txn) or undone.get(txn))[0]
            found = marked[txn][1] if txn in marked else "standing"
            should = undone[txn][1] if txn in undone else "standing (nothing undid it)"
            report(seq, f"operation {txn}: status is {found}, the journal says {should}")
    return sorted(problems, key=lambda problem: problem.seq)
