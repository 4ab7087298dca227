"""12315 consumer complaints at the bank: the list, the regulator's daily file, and the statuses it answers with.

A station's ``complaint_12315`` entry that the posting rules acknowledge becomes a ``complaint`` row, ``received``
(``sync_server.posting_rules.Applier._complaint``). The bank sends the market regulator one file a day, in CSV or
JSON (``export_complaints``), and imports the regulator's answers (``import_statuses``).

The day of a complaint is the bank's local date (the stations' policy time zone) on which the bank **received** it,
not the station's entry time: a complaint taken offline on Monday and synced on Wednesday is in Wednesday's file, so
every complaint is in exactly one daily file, and a day's file, once that day has passed, never changes.

Statuses go one way: ``received`` → ``accepted`` → ``transferred`` → ``resolved`` or ``rejected`` (steps may be
skipped; the same status again may bring a new note). ``resolved`` and ``rejected`` are final. An import applies
every line or none: each bad line is reported with its line number and reason. Every change is a
``complaint_event`` row (append-only, in the database too); a line the audit trail already holds (the same
complaint, status, note and time: a file imported twice) changes nothing and is no event.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from station.protocol.complaints import CATEGORIES, mask_phone
from station.protocol.entry_types import one_line, printable, printable_text
from station.protocol.times import parse_utc, utc_text
from sync_server.db import COMPLAINT_STATUSES, Complaint, ComplaintEvent, db_proxy
from sync_server.line_errors import LineError, bad_lines_message
from sync_server.policy import server_policy, station_policy

#: The statuses the regulator's answer may set, with their rank: a status never goes to a lower rank.
_RANK = {"received": 0, "accepted": 1, "transferred": 2, "resolved": 3, "rejected": 3}
FINAL_STATUSES = ("resolved", "rejected")
ANSWER_STATUSES = tuple(status for status in COMPLAINT_STATUSES if status != "received")
#: What each status means, for docs/operations.md and ``complaints list``.
STATUS_DOCS = {
    "received": "the bank holds it (set when the station's entry arrives)",
    "accepted": "the regulator accepted it (受理)",
    "transferred": "the regulator passed it on to the authority in charge (转办)",
    "resolved": "closed with a result (办结); final",
    "rejected": "not accepted by the regulator (不予受理); final",
}
#: Each category's code and its words in the regulator's file (Chinese, as the regulator reads it).
CATEGORY_ZH = {"price": "价格", "quality": "商品质量", "false_advertising": "虚假宣传", "service": "服务",
               "food_safety": "食品安全", "other": "其他"}

#: The columns of the daily file, in order, each with what it holds (docs/operations.md lists them; a test checks).
EXPORT_COLUMNS = {
    "complaint_no": "the complaint number on the complainant's receipt (`{station}-{YYYYMMDD}-{seq}`)",
    "received_at": "when the bank received it, UTC (`2026-12-02T08:15:00.000Z`)",
    "recorded_at": "when the station recorded it, UTC, by the station's clock",
    "station_id": "the station that took it",
    "phone": "the complainant's phone in full (the regulator calls back): `13812345678` or `0571-88889999`",
    "business": "the business complained about; as typed, but in the CSV a leading = + - @ "
                "or ' has a `'` before it (\"Formula text in the CSV\")",
    "category": "the category code: " + ", ".join(f"`{code}`" for code in CATEGORIES),
    "category_zh": "the category in Chinese (价格, 商品质量, 虚假宣传, 服务, 食品安全, 其他)",
    "details": "what happened (may be empty unless the category is `other`); in the CSV as `business`",
    "consent": "always `true`: nothing is recorded without the complainant's consent to forward it",
    "status": "where it stands: " + ", ".join(f"`{status}`" for status in COMPLAINT_STATUSES),
    "status_note": "the regulator's last note (empty until it answers); in the CSV as `business`",
    "answered_at": "when the regulator answered last, UTC (empty until it answers)",
}
#: What a CSV cell may not begin with, since a spreadsheet program would run it as a formula (OWASP, "CSV
#: Injection"): = + - @, tab, carriage return, line feed, NUL, and the full-width = + - @ (which some spreadsheet
#: programs take for the same). Such a cell is written with a ``'`` before it, and so is one that begins with ``'``
#: itself, so that one rule reads every cell back (remove one leading ``'``); the JSON file holds every text as is.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")
#: The columns of a status file from the regulator (``import_statuses``).
IMPORT_COLUMNS = ("complaint_no", "status", "note", "answered_at")
MAX_NOTE = 500
#: The longest name in ``--by``.
MAX_BY = 80
#: The longest complaint number looked up (a station id of at most 64 characters, a date and a seq).
MAX_NUMBER = 100
#: The largest status file read (a day's answers are a few kilobytes).
MAX_IMPORT_BYTES = 10 * 1024 * 1024


class _Malformed(str):
    """A CSV line that could not be read as an answer: why (a JSON item that is a string is not one of these)."""


class ComplaintError(Exception):
    """A complaints command that cannot be done; the message says why. Nothing was written."""


class BadStatusFile(ComplaintError):
    """Some lines of a status file are wrong: every one of them, in order; nothing was applied."""

    def __init__(self, errors: list[LineError]):
        self.errors = errors
        super().__init__(bad_lines_message(errors, "applied"))


@dataclass(frozen=True)
class ImportResult:
    applied: int
    unchanged: int


def _shown(value, limit: int = 40) -> str:
    """Something a file said, as an error message may quote it: printable, one line, cut at ``limit``."""
    text = printable_text(" ".join(str(value).split()))
    return text if len(text) <= limit else text[:limit] + "…"


def bank_timezone() -> ZoneInfo:
    """The bank's local time zone: the stations' policy's (``timezone``)."""
    return ZoneInfo(station_policy(server_policy())["timezone"])


def _day_bounds(day: date) -> tuple[str, str]:
    """The UTC texts [start, end) of the bank's local ``day`` (``utc_text`` sorts as time)."""
    zone = bank_timezone()
    try:
        start = datetime.combine(day, time(), zone)
        return utc_text(start), utc_text(datetime.combine(day + timedelta(days=1), time(), zone))
    except OverflowError as exc:  # 0001-01-01 or 9999-12-31: a bound past the first or last UTC moment Python holds
        raise ComplaintError(f"{day} is out of range: give a date like 2026-12-02.") from exc


def _query(day: date | None, status: str | None):
    query = Complaint.select().order_by(Complaint.received_at, Complaint.complaint_no)
    if day is not None:
        start, end = _day_bounds(day)
        query = query.where((Complaint.received_at >= start) & (Complaint.received_at < end))
    if status is not None:
        if status not in COMPLAINT_STATUSES:
            raise ComplaintError(f"Unknown status {status!r}: one of {', '.join(COMPLAINT_STATUSES)}.")
        query = query.where(Complaint.status == status)
    return query


def list_complaints(day: date | None = None, status: str | None = None) -> list[dict]:
    """The complaints the bank received on local ``day`` (all days: None), of ``status`` (any: None), oldest first;
    the phone masked (the full number is for the regulator's file only)."""
    return [dict(complaint_no=row.complaint_no, received_at=row.received_at, station_id=row.station_id,
                 phone=mask_phone(row.phone), category=row.category, business=row.business, status=row.status,
                 answered_at=row.answered_at, status_note=row.status_note) for row in _query(day, status)]


def export_rows(day: date) -> list[dict]:
    """The regulator's file of ``day``: one dict per complaint, the ``EXPORT_COLUMNS`` in order."""
    return [dict(complaint_no=row.complaint_no, received_at=row.received_at, recorded_at=row.entry_ts,
                 station_id=row.station_id, phone=row.phone, business=row.business, category=row.category,
                 category_zh=CATEGORY_ZH.get(row.category, row.category), details=row.details, consent=True,
                 status=row.status, status_note=row.status_note, answered_at=row.answered_at)
            for row in _query(day, None)]


def csv_cell(value) -> str:
    """A value as a cell of the CSV file: ``true`` for True, empty for None, and a text that a spreadsheet program
    would take for a formula (``FORMULA_STARTS``), or that begins with ``'``, with a ``'`` before it."""
    if value is True:
        return "true"
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith((*FORMULA_STARTS, "'")) else text


def export_complaints(day: date, file_format: str, out: str | Path) -> int:
    """Write the regulator's file of ``day`` to ``out`` in ``csv`` (UTF-8 with a BOM, so spreadsheet programs read
    the Chinese; every field quoted, each cell through ``csv_cell``) or ``json`` (UTF-8, the values as stored);
    returns how many complaints it holds.

    Written to a temporary file beside ``out`` (mode 0600: it holds the complainants' phones) and renamed over it: a
    reader never sees half a file.
    """
    if file_format not in ("csv", "json"):
        raise ComplaintError(f"Unknown format {file_format!r}: csv or json.")
    rows = export_rows(day)
    if file_format == "json":
        text = json.dumps({"date": day.isoformat(), "timezone": bank_timezone().key, "count": len(rows),
                           "columns": list(EXPORT_COLUMNS), "complaints": rows}, ensure_ascii=False, indent=2) + "\n"
        data = text.encode("utf-8")
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(EXPORT_COLUMNS), lineterminator="\r\n",
                                quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: csv_cell(value) for key, value in row.items()})
        data = buffer.getvalue().encode("utf-8-sig")
    out = Path(out)
    if out.is_dir():
        raise ComplaintError(f"{out} is a folder: give the file to write, e.g. {out / f'12315-{day}.{file_format}'}.")
    if not out.parent.is_dir():
        raise ComplaintError(f"No folder {out.parent}: create it first.")
    try:
        handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    except OSError as exc:
        raise ComplaintError(f"Cannot write in {out.parent}: {exc.strerror}.") from exc
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, out)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ComplaintError(f"Cannot write {out}: {exc.strerror}; nothing was written.") from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(rows)


# -- the regulator's answers ------------------------------------------------------------------------------
def _read_lines(path: Path) -> list[tuple[int, object]]:
    """(line number, row) of a status file: a CSV with a header (data from line 2), or JSON (a list of objects or
    ``{"complaints": [...]}``: its n-th object is "line" n)."""
    too_large = ComplaintError(f"{path} is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB: not a status file.")
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # /dev/zero or a pipe would be read for ever
            raise ComplaintError(f"{path} is not a regular file: give the file the regulator sent.")
        if info.st_size > MAX_IMPORT_BYTES:
            raise too_large
        with path.open("rb") as file:
            data = file.read(MAX_IMPORT_BYTES + 1)  # a file growing meanwhile is still read to the limit only
        if len(data) > MAX_IMPORT_BYTES:
            raise too_large
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ComplaintError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8.") from exc
    except OSError as exc:
        raise ComplaintError(f"Cannot read {path}: {exc.strerror}.") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ComplaintError(f"{path} is not valid JSON: {exc}.") from exc
        if isinstance(data, dict):
            data = data.get("complaints")
        if not isinstance(data, list):
            raise ComplaintError(f"{path}: JSON must be a list of answers, or an object with a list 'complaints'.")
        return list(enumerate(data, start=1))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ComplaintError(f"{path} is empty.")
        names = [name.strip() for name in header]
        missing = [column for column in IMPORT_COLUMNS if column not in names]
        unknown = [_shown(name) for name in names if name not in IMPORT_COLUMNS]
        if missing or unknown or len(set(names)) != len(names):
            what = (f"lacks {', '.join(missing)}" if missing else
                    f"has unknown columns {', '.join(unknown)}" if unknown else "names a column twice")
            raise BadStatusFile([LineError(1, f"the header {what} (columns: {', '.join(IMPORT_COLUMNS)})")])
        rows = []
        for values in reader:
            if not any(value.strip() for value in values):
                continue  # a blank line, e.g. the last one
            rows.append((reader.line_num, dict(zip(names, values, strict=False)) if len(values) == len(names)
                         else _Malformed(f"{len(values)} fields, the header has {len(names)}")))
        return rows
    except csv.Error as exc:
        raise BadStatusFile([LineError(reader.line_num, f"not CSV: {exc}")]) from exc


def _answered_at(value, zone: ZoneInfo) -> str:
    """An answer time as UTC text: ISO 8601 with an offset, or a local ``YYYY-MM-DD HH:MM[:SS]`` in the bank's time
    zone; ValueError with the reason."""
    if not isinstance(value, str):
        raise ValueError("answered_at is not text like 2026-12-03 10:30")
    if not value.strip():
        raise ValueError("answered_at is empty")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"answered_at {_shown(value)!r} is not a time like 2026-12-03 10:30 or "
                         "2026-12-03T02:30:00Z") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    try:
        return utc_text(moment)
    except OverflowError as exc:  # e.g. 0001-01-01 00:00 in Beijing: before the first UTC moment Python holds
        raise ValueError(f"answered_at {_shown(value)!r} is out of range") from exc


def _check_line(row, state: dict[str, tuple], applied: set[tuple], now: datetime,
                zone: ZoneInfo) -> tuple[str, str, str, str] | str:
    """(complaint_no, status, note, answered_at UTC) of one answer, or why it is refused. ``state``: each complaint's
    (status, note, answered_at, received_at) as the lines before left it; ``applied``: the (complaint_no, status,
    note, answered_at) the audit trail holds already."""
    if isinstance(row, _Malformed):
        return str(row)
    if not isinstance(row, dict):
        return "not an object with complaint_no, status, note, answered_at"
    unknown = sorted(_shown(key) for key in row if key not in IMPORT_COLUMNS)
    if unknown:
        return f"unknown field {', '.join(unknown)}"
    number, status, note = row.get("complaint_no"), row.get("status"), row.get("note", "")
    if not isinstance(number, str):
        return "complaint_no is not text like ST-0001-20261202-000042"
    if not number.strip():
        return "complaint_no is empty"
    number = number.strip()
    if number not in state:
        return f"no complaint {_shown(number, 64)} at the bank"
    if not isinstance(status, str) or status.strip() not in ANSWER_STATUSES:
        return f"status {_shown(status)!r} is not one of {', '.join(ANSWER_STATUSES)}"
    status = status.strip()
    if note is None:
        note = ""
    if not isinstance(note, str) or (note.strip() and one_line(note, MAX_NOTE) is None):
        return f"note is not one line of printable text of at most {MAX_NOTE} characters"
    note = one_line(note, MAX_NOTE) or ""
    try:
        answered_at = _answered_at(row.get("answered_at"), zone)
    except ValueError as exc:
        return str(exc)
    current, current_note, current_answered, received_at = state[number]
    if parse_utc(answered_at) > now + timedelta(days=1):
        return f"answered_at {answered_at} is in the future"
    if answered_at < received_at:
        return f"answered_at {answered_at} is before the bank received the complaint ({received_at})"
    if (status, note, answered_at) == (current, current_note, current_answered) or (
            (number, status, note, answered_at) in applied):
        return number, status, note, answered_at  # an answer the bank already applied: changes nothing
    if current in FINAL_STATUSES:
        return f"{number} is already {current}, a final status"
    if _RANK[status] < _RANK[current]:
        return f"{number} is {current}: its status cannot go back to {status}"
    return number, status, note, answered_at


def import_statuses(path: str | Path, by: str, now: datetime | None = None) -> ImportResult:
    """Apply the regulator's answers in ``path`` (columns ``IMPORT_COLUMNS``), every line or none.

    Each line sets a complaint's status, note and answer time and adds a ``complaint_event`` (``by`` and the file's
    name in it). A line the audit trail already holds changes nothing (``unchanged``), so importing a file again is
    harmless. Raises ``BadStatusFile`` listing every bad line, ``ComplaintError`` for a file that
    cannot be read at all.
    """
    path = Path(path)
    who = one_line(by, MAX_BY)
    if who is None:
        raise ComplaintError(f"--by is your name for the audit trail: one line of printable text, at most {MAX_BY} "
                             "characters.")
    now = now or datetime.now(UTC)
    zone = bank_timezone()
    lines = _read_lines(path)
    if not lines:
        raise ComplaintError(f"{path} holds no answers.")
    # Only what could be a complaint number is looked up (PostgreSQL refuses a text holding NUL outright).
    numbers = sorted({number for number in (row["complaint_no"].strip() for _, row in lines
                                            if isinstance(row, dict) and isinstance(row.get("complaint_no"), str))
                      if len(number) <= MAX_NUMBER and printable(number)})
    with db_proxy.atomic():
        state = {}
        for start in range(0, len(numbers), 500):
            state.update({row.complaint_no: (row.status, row.status_note, row.answered_at, row.received_at)
                          for row in Complaint.select().where(Complaint.complaint_no.in_(numbers[start:start + 500]))})
        applied = set()
        for start in range(0, len(numbers), 500):
            applied.update(ComplaintEvent.select(ComplaintEvent.complaint_no, ComplaintEvent.status,
                                                 ComplaintEvent.note, ComplaintEvent.answered_at)
                           .where(ComplaintEvent.complaint_no.in_(numbers[start:start + 500])).tuples())
        errors, changes, unchanged = [], [], 0
        for line, row in lines:
            checked = _check_line(row, state, applied, now, zone)
            if isinstance(checked, str):
                errors.append(LineError(line, checked))
                continue
            number, status, note, answered_at = checked
            if state[number][:3] == (status, note, answered_at) or checked in applied:
                unchanged += 1
                continue
            state[number] = (status, note, answered_at, state[number][3])
            changes.append(checked)
        if errors:
            raise BadStatusFile(errors)
        stamp = utc_text(now)
        for number, status, note, answered_at in changes:
            Complaint.update(status=status, status_note=note, answered_at=answered_at, updated_at=stamp).where(
                Complaint.complaint_no == number).execute()
        if changes:
            by = f"{who} ({_shown(path.name, 80)})"  # a file's name may hold a line break or an escape
            ComplaintEvent.insert_many([dict(complaint_no=number, at=stamp, by=by, status=status, note=note,
                                             answered_at=answered_at)
                                        for number, status, note, answered_at in changes]).execute()
    return ImportResult(applied=len(changes), unchanged=unchanged)


def complaint_history(number: str) -> list[dict]:
    """The audit trail of one complaint, oldest first."""
    if Complaint.get_or_none(Complaint.complaint_no == number) is None:
        raise ComplaintError(f"No complaint {number} at the bank.")
    return [dict(at=event.at, by=event.by, status=event.status, note=event.note, answered_at=event.answered_at)
            for event in ComplaintEvent.select().where(ComplaintEvent.complaint_no == number)
            .order_by(ComplaintEvent.id)]
