"""The facts recon checks, read from the signed tokens themselves: the temporary table ``recon_fact``.

Recon trusts no column the tokens can contradict. ``extract_facts`` streams every stored entry of the stations in
scope (``entry.token``, with the bank's outcome), and writes one row per entry with what its token says: the
payload's seq, station, type, txn, account, amounts, references, a clock correction's ``behind_ms``, a person's
``reason`` (``note``), its ``prev``, the SHA-256 chain value of the
token itself, its header's ``kid`` and its local business day (``ts`` in the policy's time zone). It verifies no
signature: the chain of hashes is compared in SQL (``integrity``), and only the heads of chained runs are verified.

The rows travel in chunks (constant memory): PostgreSQL reads through a server-side cursor and writes with COPY;
SQLite iterates its cursor and inserts with ``executemany``.
"""

from __future__ import annotations

import hashlib
import json

from station.protocol.times import parse_utc
from station.protocol.tokens import b64url, b64url_decode, genesis_prev, is_integer

#: Columns of ``recon_fact`` in order: (name, SQL type).
FACT_COLUMNS = (
    ("station_id", "TEXT"), ("seq", "BIGINT"), ("outcome", "TEXT"), ("reason", "TEXT"),
    ("readable", "INTEGER"),  # 1: the token splits in three, its header and payload decode to JSON objects
    ("kid", "TEXT"), ("pseq", "BIGINT"), ("pstation", "TEXT"), ("prev", "TEXT"), ("hash", "TEXT"),
    ("genesis", "TEXT"),  # the genesis value, on seq 1 only
    ("type", "TEXT"), ("txn", "TEXT"), ("account", "TEXT"), ("amount", "BIGINT"), ("fee", "BIGINT"),
    ("biller", "TEXT"), ("ref", "TEXT"), ("funding", "TEXT"), ("ref_txn", "TEXT"), ("ref_seq", "BIGINT"),
    ("expected", "BIGINT"),
    ("behind_ms", "BIGINT"),  # a clock correction's: how far the clock read behind the floor
    ("note", "TEXT"),  # a person's words: the payload's ``reason`` (a clock correction, a reversal, a day close)
    ("ts", "TEXT"), ("day", "TEXT"), ("received_at", "TEXT"),
    ("booked_day", "TEXT"),  # the bank's local date of received_at: the value date of what it pays on
)
_NAMES = [name for name, _ in FACT_COLUMNS]
CHUNK = 5_000


#: The integers a payload may hold (docs/protocol.md, "JSON types"); anything beyond is not a fact (None).
MAX_INTEGER = 2**53 - 1


def _text(value) -> str | None:
    """Text as a database column can hold it: no NUL, no lone surrogate (a signed payload may carry either)."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return value


def _int(value) -> int | None:
    return value if is_integer(value) and -MAX_INTEGER <= value <= MAX_INTEGER else None


class _Days:
    """Local dates of ``ts`` values, cached by the minute (a time zone's offset never changes within one)."""

    def __init__(self, timezone):
        self.timezone = timezone
        self.cache: dict[str, str | None] = {}

    def __call__(self, ts) -> str | None:
        if not isinstance(ts, str):
            return None
        # utc_text's form (``2026-11-02T23:40:00.000Z``) is cached by its minute; any other form is parsed whole.
        key = ts[:16] if len(ts) == 24 and ts.endswith("Z") else ts
        if key not in self.cache:
            if len(self.cache) > 100_000:
                self.cache.clear()
            try:
                self.cache[key] = parse_utc(ts).astimezone(self.timezone).date().isoformat()
            except ValueError:
                self.cache[key] = None
        return self.cache[key]


def fact_row(station_id: str, seq: int, token: str, outcome: str, reason: str | None, received_at: str,
             headers: dict, days: _Days) -> tuple:
    """One ``recon_fact`` row from a stored entry (``headers`` caches decoded headers by their base64url)."""
    raw = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else b""
    chain = b64url(hashlib.sha256(raw).digest())
    genesis = genesis_prev(station_id) if seq == 1 else None
    parts = token.split(".") if isinstance(token, str) else []
    header = payload = None
    if len(parts) == 3:
        if parts[0] not in headers:
            try:
                headers[parts[0]] = json.loads(b64url_decode(parts[0]))
            except (ValueError, RecursionError):
                headers[parts[0]] = None
        header = headers[parts[0]]
        try:
            payload = json.loads(b64url_decode(parts[1]))
        except (ValueError, RecursionError):
            payload = None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        # Nothing readable: no fact from the payload (``type`` to ``day``: 15 columns).
        return (station_id, seq, outcome, reason, 0, None, None, None, None, chain, genesis,
                *([None] * 15), received_at, days(received_at))
    p = payload.get
    return (station_id, seq, outcome, reason, 1, _text(header.get("kid")), _int(p("seq")), _text(p("station")),
            _text(p("prev")), chain, genesis, _text(p("type")), _text(p("txn")), _text(p("account")),
            _int(p("amount")), _int(p("fee")), _text(p("biller")), _text(p("ref")), _text(p("funding")),
            _text(p("ref_txn")), _int(p("ref_seq")), _int(p("expected")), _int(p("behind_ms")), _text(p("reason")),
            _text(p("ts")), days(p("ts")), received_at, days(received_at))


def create_fact_table(context) -> None:
    columns = ", ".join(f'"{name}" {kind}' for name, kind in FACT_COLUMNS)
    context.database.execute_sql("DROP TABLE IF EXISTS recon_fact")
    context.database.execute_sql(f"CREATE TEMPORARY TABLE recon_fact ({columns}, PRIMARY KEY (station_id, seq))")


def extract_facts(context, progress=None) -> int:
    """Fill ``recon_fact`` for the stations in scope; returns how many entries were read."""
    create_fact_table(context)
    headers: dict = {}
    days = _Days(context.timezone)
    count = 0
    chunk: list[tuple] = []
    where, params = context.station_filter()
    stored = context.stream("SELECT station_id, seq, token, outcome, reason, received_at FROM entry WHERE 1 = 1"
                            + where, params, name="recon_entries", size=CHUNK)
    for station_id, seq, token, outcome, reason, received_at in stored:
        chunk.append(fact_row(station_id, seq, token, outcome, reason, received_at, headers, days))
        if len(chunk) >= CHUNK:
            count += _write(context, chunk, progress)
            chunk = []
    count += _write(context, chunk, progress)
    context.database.execute_sql("CREATE INDEX recon_fact_txn ON recon_fact (station_id, txn)")
    # Reversals and cancellations look up the others of their original (``risk.reversal_mismatches``): without
    # it, a range scan of the station's entries per undoing entry (1M entries: 3 of that check's 4.5 seconds).
    context.database.execute_sql(
        "CREATE INDEX recon_fact_ref ON recon_fact (station_id, ref_txn) WHERE ref_txn IS NOT NULL")
    context.database.execute_sql("ANALYZE recon_fact")
    return count


def _write(context, rows: list[tuple], progress) -> int:
    """Write one chunk: a COPY on PostgreSQL (between two fetches of the server-side cursor), else executemany."""
    if not rows:
        return 0
    cursor = context.database.cursor()
    if context.postgres:
        columns = ", ".join(f'"{name}"' for name in _NAMES)
        with cursor.copy(f"COPY recon_fact ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        cursor.executemany(f"INSERT INTO recon_fact VALUES ({', '.join(['?'] * len(_NAMES))})", rows)
    if progress:
        progress(len(rows))
    return len(rows)
