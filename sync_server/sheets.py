"""Enrollment sheets for a batch of stations: ``sync-server station bulk-add stations.csv --out DIR``.

For each row of a CSV (``id,name,village,agent``) the station is registered and given a one-time enrollment code,
printed on one sheet (``DIR/enrollment-sheet.html`` and ``.pdf``, see ``sheet_layout``) with each station's QR
beside it as ``DIR/<station id>.png``.

- All or nothing: every row is checked first and every bad one reported by its line (``ImportFailed``); then every
  database change of a run happens in one transaction.
- Re-running is safe: a station is never registered twice. A pending station whose code is still valid keeps it
  (``--reissue`` gives it a new one and ends the older ones); an enrolled or revoked station is left alone; a
  pending station's details follow the CSV, an enrolled one's are only reported when they differ.
- The bank stores only a hash of each code, so a code can be printed again only from ``DIR``: the run keeps the
  codes it printed in ``DIR/enrollment-codes.json`` (as secret as the sheet itself) and puts a still valid code
  back on the next sheet when its hash matches; otherwise it says to run with ``--reissue``.
- Files are staged in ``DIR`` and moved into place only once the transaction has committed: a failure before
  leaves the database and ``DIR`` as they were; a failure after leaves valid codes unprinted, which the next run
  reports, never a printed code the bank does not know.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from peewee import IntegrityError

from station.protocol.enrollment_qr import NotAnEnrollmentCode, check_server_url, make_payload
from station.protocol.private_files import write_private_file
from station.protocol.times import parse_utc, utc_text
from sync_server.admin import AdminError, ImportFailed, RowError, check_station_id, station_text
from sync_server.db import EnrollmentCode, Station, StationEvent, db_proxy
from sync_server.policy import server_policy, station_policy
from sync_server.service import code_hash, new_enrollment_code
from sync_server.sheet_layout import Card, Sheet, qr_png, sheet_html, sheet_pdf

COLUMNS = ("id", "name", "village", "agent")
DETAILS = ("name", "village", "agent")
SHEET_HTML = "enrollment-sheet.html"
SHEET_PDF = "enrollment-sheet.pdf"
CODES_FILE = "enrollment-codes.json"

# What happened to each station (the summary's status column).
CREATED = "created"
NEW_CODE = "new code"
STILL_VALID = "code still valid"
ENROLLED = "already enrolled"
REVOKED = "revoked"


@dataclass(frozen=True)
class StationRow:
    """One checked row of the CSV."""

    line: int
    station_id: str
    name: str
    village: str
    agent: str


@dataclass(frozen=True)
class Outcome:
    """What a run did for one station; ``valid_until`` is the expiry of the code it holds, if any."""

    station_id: str
    status: str
    valid_until: datetime | None = None
    notes: tuple[str, ...] = ()
    on_sheet: bool = False


@dataclass(frozen=True)
class BulkAddResult:
    """A run's outcome per station (in the CSV's order) and the files it wrote."""

    outcomes: list[Outcome]
    out_dir: Path
    files: list[Path]
    timezone: ZoneInfo
    #: What the operator should know about the run as a whole (the sheet not written, an earlier one kept).
    messages: list[str] = field(default_factory=list)

    def local(self, moment: datetime | None) -> str:
        return local_time(moment, self.timezone) if moment else "-"


# -- reading the CSV ----------------------------------------------------------------------------------------
def decode_csv(data: bytes) -> tuple[str, str]:
    """The CSV's text and the encoding it was read in: UTF-8 (with or without a BOM), else GB18030."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data:
        raise ImportFailed([RowError(1, "the file is UTF-16 or not text at all: save it from the spreadsheet "
                                        "as \"CSV UTF-8\"")])
    try:
        return data.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError as not_utf8:
        try:
            return data.decode("gb18030"), "GB18030"
        except UnicodeDecodeError:
            line = data[:not_utf8.start].count(b"\n") + 1
            bad = data[not_utf8.start:not_utf8.start + 1].hex().upper()
            raise ImportFailed([RowError(line, f"the file is neither UTF-8 nor GB18030 (byte 0x{bad} cannot be "
                                               "read): save it from the spreadsheet as \"CSV UTF-8\"")]) from None


def parse_stations_csv(data: bytes) -> tuple[list[StationRow], str]:
    """Check every row of a stations CSV; return the rows and the encoding, or raise ``ImportFailed`` with every
    bad line. Blank lines are skipped; a station id is compared without regard to case (NFKC first, so a
    full-width ``ＳＴ－０００１`` is ``ST-0001``)."""
    text, encoding = decode_csv(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    errors: list[RowError] = []
    rows: list[StationRow] = []
    header: list[str] | None = None
    seen: dict[str, int] = {}
    line = 1
    try:
        for record in reader:
            cells = list(record)
            while cells and not cells[-1].strip():
                cells.pop()  # spreadsheets add empty columns at the end
            if header is None:
                header = [cell.strip().lower() for cell in cells]
                if sorted(header) != sorted(COLUMNS):
                    raise ImportFailed([RowError(line, f"the first line must be the header {','.join(COLUMNS)} "
                                                       f"(found {','.join(cells) or 'nothing'})")])
            elif cells:
                row = _check_row(line, dict(zip(header, cells, strict=False)), len(cells) - len(header), seen,
                                 errors)
                if row:
                    rows.append(row)
            line = reader.line_num + 1
    except csv.Error as exc:
        errors.append(RowError(reader.line_num, f"the CSV is damaged here ({exc})"))
    if header is None:
        raise ImportFailed([RowError(1, f"the file is empty: the first line must be the header {','.join(COLUMNS)}")])
    if errors:
        raise ImportFailed(errors)
    if not rows:
        raise ImportFailed([RowError(2, "no stations: the file has only its header")])
    return rows, encoding


def _check_row(line: int, cells: dict[str, str], extra: int, seen: dict[str, int],
               errors: list[RowError]) -> StationRow | None:
    problems = []
    if extra > 0:
        problems.append(f"{extra} more value(s) than the header has columns")
    station_id = unicodedata.normalize("NFKC", cells.get("id", "")).strip()
    problem = check_station_id(station_id)
    if problem:
        problems.append(f"id {station_id!r}: {problem}" if station_id else "id is empty")
    elif station_id.upper() in seen:
        problems.append(f"station {station_id} is already on line {seen[station_id.upper()]}")
    else:
        seen[station_id.upper()] = line
    details = {}
    for column in DETAILS:
        details[column], problem = station_text(column, cells.get(column, ""))
        if problem:
            problems.append(problem)
    if problems:
        errors.append(RowError(line, "; ".join(problems)))
        return None
    return StationRow(line, station_id, **details)


# -- the run ------------------------------------------------------------------------------------------------
def local_time(moment: datetime, timezone: ZoneInfo) -> str:
    """``2026-12-05 16:30 (UTC+08:00)``: a moment in the bank's timezone, with its offset."""
    local = moment.astimezone(timezone)
    return f"{local:%Y-%m-%d %H:%M} (UTC{local.isoformat()[-6:]})"


def _earlier_codes(out_dir: Path) -> tuple[dict[str, str], list[str]]:
    path = out_dir / CODES_FILE
    if not path.exists():
        return {}, []
    try:
        codes = json.loads(path.read_text(encoding="utf-8"))["codes"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in codes.items()):
            raise ValueError("not a map of station ids to codes")
        return codes, []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return {}, [f"{path} could not be read ({exc}): the codes printed earlier cannot be put on this sheet"]


class _Run:
    """One bulk-add inside its transaction: the decision for each station, and the codes to print."""

    def __init__(self, out_dir: Path, earlier: dict[str, str], reissue: bool, by: str, now: datetime):
        self.out_dir = out_dir
        self.earlier = earlier
        self.reissue = reissue
        self.by = by
        self.now = now
        self.printed: dict[str, tuple[str, datetime]] = {}  # station id -> (code, expiry)

    def event(self, station_id: str, action: str, detail: dict | None = None) -> None:
        StationEvent.create(station_id=station_id, at=utc_text(self.now), by=self.by, action=action,
                            reason="station bulk-add", detail=detail)

    def issue(self, station_id: str) -> datetime:
        code = new_enrollment_code(station_id, self.now)
        expiry = parse_utc(EnrollmentCode.get_by_id(code_hash(code)).expires_at)
        self.printed[station_id] = (code, expiry)
        self.event(station_id, "enrollment-code-issued", {"expires_at": utc_text(expiry)})
        return expiry

    def settle(self, row: StationRow) -> Outcome:
        station = Station.get_or_none(Station.station_id == row.station_id)
        wanted = {column: getattr(row, column) or None for column in DETAILS}
        if station is None:
            Station.create(station_id=row.station_id, created_at=utc_text(self.now), **wanted)
            self.event(row.station_id, "registered", wanted)
            return Outcome(row.station_id, CREATED, self.issue(row.station_id), on_sheet=True)
        differs = [column for column in DETAILS if getattr(station, column) != wanted[column]]
        if station.status != "pending":
            status = ENROLLED if station.status == "active" else REVOKED
            notes = (f"the CSV differs from the bank's record in {', '.join(differs)}: not changed (only a "
                     "pending station's details follow the CSV)",) if differs else ()
            return Outcome(row.station_id, status, notes=notes)
        notes = []
        if differs:
            Station.update(**wanted).where(Station.station_id == row.station_id).execute()
            self.event(row.station_id, "details-updated",
                       {column: [getattr(station, column), wanted[column]] for column in differs})
            notes.append(f"{', '.join(differs)} updated")
        valid = {code.code_hash: parse_utc(code.expires_at) for code in EnrollmentCode.select().where(
            (EnrollmentCode.station_id == row.station_id) & EnrollmentCode.used_at.is_null())
            if parse_utc(code.expires_at) > self.now}
        if self.reissue or not valid:
            if valid:
                EnrollmentCode.update(expires_at=utc_text(self.now)).where(
                    EnrollmentCode.code_hash.in_(list(valid))).execute()
                self.event(row.station_id, "enrollment-codes-invalidated", {"count": len(valid)})
                notes.append(f"{len(valid)} older code(s) no longer valid")
            else:
                notes.append("no valid code left (the last one expired)")
            return Outcome(row.station_id, NEW_CODE, self.issue(row.station_id), tuple(notes), on_sheet=True)
        earlier = self.earlier.get(row.station_id)
        if earlier and code_hash(earlier) in valid:
            expiry = valid[code_hash(earlier)]
            self.printed[row.station_id] = (earlier, expiry)
            notes.append(f"printed again from {self.out_dir / CODES_FILE}")
            return Outcome(row.station_id, STILL_VALID, expiry, tuple(notes), on_sheet=True)
        png = self.out_dir / f"{row.station_id}.png"
        notes.append("the bank keeps only a hash of the code, so it cannot be printed again: "
                     + (f"use {png} from the earlier run, or run with --reissue" if png.exists()
                        else f"{png} is missing: run with --reissue for a new code"))
        return Outcome(row.station_id, STILL_VALID, max(valid.values()), tuple(notes))


def bulk_add(rows: list[StationRow], server_url: str, out_dir: Path, *, reissue: bool = False, by: str,
             now: datetime | None = None, county: str | None = None) -> BulkAddResult:
    """Register the CSV's stations, issue their codes and write the sheet, its PDF and the QR images to
    ``out_dir`` (see the module's docstring for re-runs); raise ``AdminError`` with the reason. With ``county``
    every station of the CSV (enrolled ones too) is put in that county (the branch dashboard groups by it)."""
    try:
        server = check_server_url(server_url)
    except NotAnEnrollmentCode as exc:
        raise AdminError(f"--server-url: {exc}") from exc
    if county is not None:
        county, problem = station_text("county", county)
        if problem:
            raise AdminError(f"--county: {problem}")
    by = " ".join((by or "").split())
    if not by or not by.isprintable() or len(by) > 64:
        raise AdminError("--by: who runs this, as printable text of at most 64 characters")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".bulk-add-", dir=out_dir))
    except OSError as exc:
        raise AdminError(f"--out {out_dir}: cannot write there ({exc.strerror})") from exc
    now = now or datetime.now(UTC)
    earlier, messages = _earlier_codes(out_dir)
    run = _Run(out_dir, earlier, reissue, by, now)
    try:
        try:
            with db_proxy.atomic():
                timezone = ZoneInfo(station_policy(server_policy())["timezone"])
                outcomes = [run.settle(row) for row in rows]
                if county:
                    Station.update(county=county).where(
                        Station.station_id.in_([row.station_id for row in rows])).execute()
                staged = _stage(staging, rows, run.printed, earlier, server, now, timezone)
        except IntegrityError as exc:  # outside atomic(): PostgreSQL's transaction is rolled back by then
            raise AdminError("another bulk-add or station add registered one of these stations at the same "
                             "time: nothing was done, run this again") from exc
        except OSError as exc:
            raise AdminError(f"--out {out_dir}: cannot write there ({exc.strerror}); nothing was done") from exc
        keep_as = None
        if SHEET_HTML not in staged:
            messages.append(f"No station needs a card: no sheet written ({out_dir}'s earlier sheet, if any, is "
                            "left as it was).")
        elif any(o.status == STILL_VALID and not o.on_sheet for o in outcomes) and (out_dir / SHEET_HTML).exists():
            # The earlier sheet holds codes still valid that this one cannot carry: replacing it would lose them.
            keep_as = f"enrollment-sheet-before-{now:%Y%m%dT%H%M%SZ}"
            messages.append(f"The earlier sheet holds codes that cannot be printed again: kept as "
                            f"{out_dir / keep_as}.html and .pdf.")
        files = _publish(staging, staged, out_dir, keep_as)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BulkAddResult(outcomes, out_dir, files, timezone, messages)


def _stage(staging: Path, rows: list[StationRow], printed: dict[str, tuple[str, datetime]],
           earlier: dict[str, str], server: str, now: datetime, timezone: ZoneInfo) -> list[str]:
    """Write the run's files into ``staging`` (the sheet only when it has a card); return their names."""
    cards = []
    names = []
    for row in rows:
        if row.station_id not in printed:
            continue
        code, expiry = printed[row.station_id]
        payload = make_payload(server, row.station_id, code)
        cards.append(Card(row.station_id, row.name, row.village, row.agent, code, payload,
                          local_time(expiry, timezone)))
        write_private_file(staging / f"{row.station_id}.png", qr_png(payload))
        names.append(f"{row.station_id}.png")
    if cards:
        sheet = Sheet(server, local_time(now, timezone), tuple(cards))
        write_private_file(staging / SHEET_HTML, sheet_html(sheet))
        write_private_file(staging / SHEET_PDF, sheet_pdf(sheet))
        names += [SHEET_HTML, SHEET_PDF]
    # Stations of this CSV no longer printable (enrolled, revoked, codes ended) are dropped; others' are kept.
    in_csv = {row.station_id for row in rows}
    codes = {**{k: v for k, v in earlier.items() if k not in in_csv},
             **{station_id: code for station_id, (code, _) in printed.items()}}
    write_private_file(staging / CODES_FILE, json.dumps({"codes": codes}, indent=1, sort_keys=True) + "\n")
    return [*names, CODES_FILE]


def _publish(staging: Path, names: list[str], out_dir: Path, keep_earlier_as: str | None) -> list[Path]:
    """Move the staged files into ``out_dir`` (after the commit: see the module's docstring), first renaming the
    earlier sheet to ``keep_earlier_as`` (.html, .pdf) when given."""
    try:
        if keep_earlier_as:
            for name, suffix in ((SHEET_HTML, ".html"), (SHEET_PDF, ".pdf")):
                if (out_dir / name).exists():
                    os.replace(out_dir / name, out_dir / f"{keep_earlier_as}{suffix}")
        for name in names:
            os.replace(staging / name, out_dir / name)
        folder = os.open(out_dir, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        raise AdminError(f"the codes were issued but {out_dir} could not take the sheet ({exc.strerror}): run "
                         "again with --reissue once it can") from exc
    return [out_dir / name for name in names]
