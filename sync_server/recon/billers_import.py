"""Billers' settlement files: read, validate and keep them, all or nothing, each file once.

A settlement file is what a biller says the bank paid it: one line per payment (the biller's reference, the amount
in integer fen, the value date, the bank's txn id when the biller echoes it). ``import_biller_file`` enforces:

- every line is validated before anything is written, and every bad line is reported by its line number with the
  reason (:class:`BadLines`); a file with one bad line imports nothing;
- a file is written in one transaction (``biller_file`` and its ``biller_line`` rows, both append-only);
- the same bytes (SHA-256) are imported once: a second import returns the first one's result, ``already=True``;
  the database's unique index on ``biller_file.sha256`` enforces it against concurrent imports too;
- amounts become integer fen exactly (yuan through ``parse_amount``, never a float);
- the biller exists in the ``biller`` table.

The layout is ``reference,amount_fen,value_date,bank_txn_id`` in UTF-8 (with or without BOM) or GB18030, or any
other CSV described by a mapping (:func:`load_mapping`; docs/recon.md, "Billers' settlement files").
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from peewee import IntegrityError, chunked

from station.protocol.money import AmountError, parse_amount
from station.protocol.times import utc_text
from sync_server.db import Biller, BillerFile, BillerLine, db_proxy
from sync_server.line_errors import LineError, bad_lines_message

#: The fields a line carries; ``bank_txn_id`` is the only optional one (column absent, or the cell empty).
FIELDS = ("reference", "amount_fen", "value_date", "bank_txn_id")
REQUIRED_FIELDS = ("reference", "amount_fen", "value_date")
ENCODINGS = ("utf-8", "gb18030")
AMOUNT_UNITS = ("fen", "yuan")
MAX_REFERENCE = 64
#: A bank txn id as the station writes it (a UUID), or any other id without spaces: printable ASCII.
_TXN_ID_RE = re.compile(r"[\x21-\x7e]{1,64}")
_ISO_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAPPING_KEYS = ("columns", "amount_unit", "date_format", "delimiter", "encoding")


class BillerImportError(Exception):
    """A settlement file that cannot be imported; the message says why. Nothing was written."""


class UnknownBiller(BillerImportError):
    """The biller code is not in the bank's ``biller`` table."""


class BadMapping(BillerImportError):
    """The mapping file is not a valid description of a layout."""


class BadLines(BillerImportError):
    """Some lines (or the header, line 1) are wrong: every one of them, in order; nothing was imported."""

    def __init__(self, errors: list[LineError]):
        self.errors = errors
        super().__init__(bad_lines_message(errors, "imported"))


@dataclass(frozen=True)
class Mapping:
    """How a file's layout maps to the fields: the column named for each field (``bank_txn_id`` may be None: the
    file has no such column), the unit of amounts, the ``strptime`` format of dates, the delimiter, the encoding
    (None: detect UTF-8, else GB18030); ``optional``: fields whose column the file may leave out."""

    columns: dict
    amount_unit: str = "fen"
    date_format: str = "%Y-%m-%d"
    delimiter: str = ","
    encoding: str | None = None
    optional: tuple[str, ...] = ()


#: The default layout; a file without a ``bank_txn_id`` column is matched by reference, date and amount only.
DEFAULT_MAPPING = Mapping(columns={name: name for name in FIELDS}, optional=("bank_txn_id",))


@dataclass(frozen=True)
class ImportResult:
    """What an import did: the file's id, its biller, lines, value dates, when and by whom it was imported;
    ``already``: these bytes had been imported before, and nothing was written this time."""

    file_id: int
    biller: str
    name: str
    lines: int
    first_value_date: str
    last_value_date: str
    imported_at: str
    imported_by: str
    sha256: str
    already: bool = False

    @property
    def message(self) -> str:
        lines = f"{self.lines} line{'s' if self.lines != 1 else ''} of {self.biller}, value dates " \
                f"{self.first_value_date} to {self.last_value_date}"
        if self.already:
            return (f"Already imported on {self.imported_at[:10]} as file {self.file_id} ({lines}); nothing imported "
                    "again.")
        return f"Imported file {self.file_id}: {lines}."


# -- the mapping ----------------------------------------------------------------------------------------------
def load_mapping(source: str | Path | dict | None) -> Mapping:
    """A :class:`Mapping` from a JSON file's path or an already parsed dict (None: the default layout).

    Keys: ``columns`` (required: the file's column name for ``reference``, ``amount_fen``, ``value_date``, and
    optionally ``bank_txn_id``), ``amount_unit`` (``fen`` or ``yuan``), ``date_format`` (a ``strptime`` format),
    ``delimiter`` (one character), ``encoding`` (``utf-8`` or ``gb18030``). Anything else is refused.
    """
    if source is None:
        return DEFAULT_MAPPING
    if isinstance(source, dict):
        data, where = source, "the mapping"
    else:
        where = f"mapping {Path(source).name}"
        try:
            data = json.loads(Path(source).read_bytes().decode("utf-8-sig"))
        except OSError as exc:
            raise BadMapping(f"Cannot read {where}: {exc.strerror}.") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadMapping(f"{where} is not UTF-8 JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise BadMapping(f"{where} must be a JSON object.")
    unknown = sorted(set(data) - set(_MAPPING_KEYS))
    if unknown:
        raise BadMapping(f"{where}: unknown keys {', '.join(unknown)} (allowed: {', '.join(_MAPPING_KEYS)}).")
    columns = data.get("columns")
    if not isinstance(columns, dict):
        raise BadMapping(f"{where}: \"columns\" must be an object naming the file's column for each of "
                         f"{', '.join(FIELDS)}.")
    unknown = sorted(set(columns) - set(FIELDS))
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if unknown or missing:
        raise BadMapping(f"{where}: \"columns\" must name {', '.join(REQUIRED_FIELDS)} (and may name "
                         f"bank_txn_id); " + "; ".join(
                             ([f"missing {', '.join(missing)}"] if missing else [])
                             + ([f"unknown {', '.join(unknown)}"] if unknown else [])) + ".")
    named = {}
    for name in FIELDS:
        column = columns.get(name)
        if column is None and name == "bank_txn_id":
            named[name] = None
            continue
        if not isinstance(column, str) or not column.strip() or not column.isprintable():
            raise BadMapping(f"{where}: the column for {name} must be a printable, non-empty name.")
        named[name] = column.strip()
    taken = [column for column in named.values() if column is not None]
    if len(set(taken)) != len(taken):
        raise BadMapping(f"{where}: two fields are mapped to the same column.")
    unit = data.get("amount_unit", "fen")
    if unit not in AMOUNT_UNITS:
        raise BadMapping(f"{where}: \"amount_unit\" must be \"fen\" or \"yuan\".")
    date_format = data.get("date_format", DEFAULT_MAPPING.date_format)
    if not isinstance(date_format, str) or "%" not in date_format or not date_format.isprintable():
        raise BadMapping(f"{where}: \"date_format\" must be a strptime format such as \"%Y%m%d\".")
    try:
        datetime.strptime(date(2026, 11, 2).strftime(date_format), date_format)
    except ValueError as exc:
        raise BadMapping(f"{where}: \"date_format\" {date_format!r} cannot read the dates it writes.") from exc
    delimiter = data.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n" or delimiter.isalnum():
        raise BadMapping(f"{where}: \"delimiter\" must be one character such as \",\", \";\" or a tab.")
    encoding = data.get("encoding")
    if encoding is not None:
        if not isinstance(encoding, str) or encoding.lower().replace("_", "-") not in ("utf-8", "utf8", "gb18030"):
            raise BadMapping(f"{where}: \"encoding\" must be \"utf-8\" or \"gb18030\" (or be left out to detect it).")
        encoding = codecs.lookup(encoding).name.replace("_", "-")
    return Mapping(named, unit, date_format, delimiter, encoding)


# -- reading a file -------------------------------------------------------------------------------------------
def decode(raw: bytes, encoding: str | None) -> str:
    """The file's text: UTF-8 (a BOM dropped) when it decodes as such, else GB18030; or the mapping's encoding."""
    tried = [encoding] if encoding else list(ENCODINGS)
    for name in tried:
        try:
            text = raw.decode("utf-8-sig" if name == "utf-8" else name)
        except UnicodeDecodeError:
            continue
        return text.removeprefix("\ufeff")  # GB18030 has its own encoding of the BOM
    raise BadLines([LineError(1, f"the file is not {' or '.join(n.upper() for n in tried)} text")])


def _amount(text: str, unit: str) -> int:
    """Integer fen from a cell: whole fen, or yuan with at most two decimals (exact; never a float)."""
    if unit == "yuan":
        return parse_amount(text)
    if not re.fullmatch(r"[0-9]{1,15}", text):
        raise AmountError("amount_format", "the amount must be a whole number of fen, digits only")
    return parse_amount(int(text))


def _value_date(text: str, date_format: str) -> str:
    if date_format == DEFAULT_MAPPING.date_format and not _ISO_DATE_RE.fullmatch(text):
        raise ValueError
    return datetime.strptime(text, date_format).date().isoformat()


def parse_lines(text: str, mapping: Mapping) -> list[dict]:
    """Every line of ``text`` as a row of ``biller_line`` fields (line_no, reference, amount_fen, value_date,
    bank_txn_id), or :class:`BadLines` naming every bad line; empty lines are skipped, other columns ignored."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise BadLines([LineError(1, f"the header cannot be read as CSV ({exc})")]) from exc
    if not header:
        raise BadLines([LineError(1, "the file is empty; its first line must name the columns")])
    header = [name.strip() for name in header]
    wanted = {field: column for field, column in mapping.columns.items()
              if column is not None and (column in header or field not in mapping.optional)}
    missing = [column for column in wanted.values() if column not in header]
    if missing:
        raise BadLines([LineError(1, f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                     f"(the header has: {', '.join(header)})")])
    repeated = sorted({column for column in wanted.values() if header.count(column) > 1})
    if repeated:
        raise BadLines([LineError(1, f"the header names {', '.join(repeated)} more than once")])
    index = {field: header.index(column) for field, column in wanted.items()}
    rows, errors = [], []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader starts afresh on the next line, so every broken line is reported, not just the first.
            if errors and errors[-1].line == reader.line_num:
                break
            errors.append(LineError(reader.line_num, f"not valid CSV ({exc})"))
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or a spreadsheet's empty row (",,,")
        if len(cells) != len(header):
            errors.append(LineError(line, f"{len(cells)} fields, but the header has {len(header)}"))
            continue
        row, problems = _parse_line(line, {field: cells[i].strip() for field, i in index.items()}, mapping)
        if problems:
            errors.append(LineError(line, "; ".join(problems)))
        else:
            rows.append(row)
    if errors:
        raise BadLines(errors)
    if not rows:
        raise BadLines([LineError(1, "the file has no lines after its header (nothing to import)")])
    return rows


def _parse_line(line: int, cells: dict, mapping: Mapping) -> tuple[dict, list[str]]:
    problems = []
    reference = cells["reference"]
    if not reference:
        problems.append("reference is empty")
    elif len(reference) > MAX_REFERENCE or not reference.isprintable():
        problems.append(f"reference must be printable text of at most {MAX_REFERENCE} characters")
    amount = None
    try:
        amount = _amount(cells["amount_fen"], mapping.amount_unit)
    except AmountError as exc:
        unit = "yuan" if mapping.amount_unit == "yuan" else "fen"
        reason = exc.message.rstrip(".")
        problems.append(f"amount {cells['amount_fen']!r} ({unit}): {reason[0].lower()}{reason[1:]}"
                        if cells["amount_fen"] else "amount is empty")
    value_date = None
    try:
        value_date = _value_date(cells["value_date"], mapping.date_format)
    except ValueError:
        shown = "YYYY-MM-DD" if mapping.date_format == DEFAULT_MAPPING.date_format else mapping.date_format
        problems.append(f"value_date {cells['value_date']!r} is not a real date in the form {shown}")
    txn = cells.get("bank_txn_id") or None
    if txn is not None and not _TXN_ID_RE.fullmatch(txn):
        problems.append("bank_txn_id must be empty or an id of at most 64 printable characters without spaces")
    return dict(line_no=line, reference=reference, amount_fen=amount, value_date=value_date,
                bank_txn_id=txn), problems


# -- importing ------------------------------------------------------------------------------------------------
def _result(row: BillerFile, already: bool) -> ImportResult:
    return ImportResult(row.id, row.biller, row.name, row.lines, row.first_value_date, row.last_value_date,
                        row.imported_at, row.imported_by, row.sha256, already)


def _already(sha256: str, biller_code: str) -> ImportResult | None:
    row = BillerFile.get_or_none(BillerFile.sha256 == sha256)
    if row is None:
        return None
    if row.biller != biller_code:
        raise BillerImportError(f"This file was imported on {row.imported_at[:10]} as file {row.id} for biller "
                                f"{row.biller}, not {biller_code}; nothing imported.")
    return _result(row, already=True)


def import_biller_file(path: str | Path, biller_code: str, mapping: str | Path | dict | None = None, by: str = "",
                       *, now: datetime | None = None) -> ImportResult:
    """Import a biller's settlement file at ``path`` for ``biller_code`` (all or nothing, each file once).

    Raises :class:`UnknownBiller`, :class:`BadMapping`, :class:`BadLines` (every bad line) or
    :class:`BillerImportError` (unreadable file, or these bytes already imported for another biller).
    """
    path = Path(path)
    layout = load_mapping(mapping)
    by = by.strip()
    if not by.isprintable() or len(by) > 64:
        raise BillerImportError("The importer's name must be printable text of at most 64 characters.")
    if Biller.get_or_none(Biller.code == biller_code) is None:
        raise UnknownBiller(f"No biller {biller_code!r}: the code must be one of the bank's billers "
                            f"({', '.join(b.code for b in Biller.select().order_by(Biller.code)) or 'none yet'}).")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BillerImportError(f"Cannot read {path}: {exc.strerror}.") from exc
    sha256 = hashlib.sha256(raw).hexdigest()
    found = _already(sha256, biller_code)
    if found:
        return found
    rows = parse_lines(decode(raw, layout.encoding), layout)
    dates = [row["value_date"] for row in rows]
    imported_at = utc_text(now or datetime.now(UTC))
    try:
        with db_proxy.atomic():
            file = BillerFile.create(biller=biller_code, sha256=sha256, name=path.name[:255], lines=len(rows),
                                     first_value_date=min(dates), last_value_date=max(dates),
                                     imported_at=imported_at, imported_by=by)
            for batch in chunked(rows, 100):
                BillerLine.insert_many([{**row, "file_id": file.id, "biller": biller_code} for row in batch]
                                       ).execute()
    except IntegrityError:
        # Another import of the same bytes committed first (the unique index on sha256): that one stands.
        found = _already(sha256, biller_code)
        if found:
            return found
        raise
    return _result(file, already=False)

