"""12315 complaints against hostile text and hostile files, on SQLite and PostgreSQL: what a complainant typed that
a spreadsheet would run as a formula is text in the regulator's CSV (OWASP "CSV Injection") and unchanged in its
JSON; a status file in the wrong encoding, too large, not a file at all, or with lines the bank must refuse changes
nothing and says so in one line per bad line, never a traceback; forged entries with fields of the wrong type or
holding control characters are rejected with a reason, and the sync goes on."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sync_support import append_forged_entry, enrolled_station, open_counter, server_db

from station import complaints, receipts
from station.db import JournalEntry
from station.protocol.tokens import unverified_payload
from station.sync import sync_once
from sync_server.cli import cli
from sync_server.complaints import EXPORT_COLUMNS, FORMULA_STARTS, MAX_IMPORT_BYTES, bank_timezone, csv_cell
from sync_server.db import Complaint, ComplaintEvent

#: What a complainant may type (printable, one line) that a spreadsheet program would run.
FORMULAS = {
    "business": ["=HYPERLINK(\"http://evil.example\",\"点我\")", "+86超市", "-5元店", "@SUM(1+1)*cmd|' /C calc'!A0",
                 "＝1+1 全角"],
    "details": ["=1+2\";=1+2", "+1", "-1", "@x", "'=already quoted"],
}


def run(server, *args):
    return CliRunner().invoke(cli, [*args[:2], "--database-url", server.database_url, *args[2:]])


@pytest.mark.parametrize("value, cell", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("\n=1", "'\n=1"), ("\0", "'\0"), ("＝1", "'＝1"), ("＋1", "'＋1"), ("－1", "'－1"), ("＠1", "'＠1"),
    ("a=1", "a=1"), ("'=1", "''=1"), ("'", "''"), ("a'", "a'"),
    ("0571-88889999", "0571-88889999"), ("", ""), (None, ""), (True, "true"),
    ("2026-12-02T08:15:00.000Z", "2026-12-02T08:15:00.000Z"),
])
def test_a_cell_a_spreadsheet_would_run_is_written_as_text(value, cell):
    assert csv_cell(value) == cell
    assert {start for start in FORMULA_STARTS if csv_cell(start + "x") == start + "x"} == set()


def test_formula_text_is_text_in_the_regulators_csv_and_unchanged_in_its_json(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    agent, _ = open_counter(st)
    typed = {}
    with st.bound():
        for business, details in zip(FORMULAS["business"], FORMULAS["details"], strict=True):
            receipt = complaints.record_complaint(st, agent, "13812345678", business, "price", details, True,
                                                  receipts.new_txn_id())
            typed[unverified_payload(JournalEntry.get(JournalEntry.seq == receipt.seq).token)["complaint_no"]] = (
                business, details)
    assert sync_once(st).rejected == {}
    server_db()
    number = next(iter(typed))
    received = Complaint.get_by_id(number).received_at
    day = datetime.fromisoformat(received).astimezone(bank_timezone()).date().isoformat()
    answered = (datetime.fromisoformat(received) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps([{"complaint_no": number, "status": "accepted", "note": "=WEBSERVICE(\"x\")",
                                    "answered_at": answered}]), encoding="utf-8")
    applied = run(server, "complaints", "import-status", str(answers))
    assert applied.exit_code == 0, applied.output

    out_csv, out_json = tmp_path / "day.csv", tmp_path / "day.json"
    for out, fmt in ((out_csv, "csv"), (out_json, "json")):
        done = run(server, "complaints", "export", "--date", day, "--format", fmt, "--out", str(out))
        assert done.exit_code == 0, done.output
    raw = out_csv.read_bytes()
    assert raw.startswith(b'\xef\xbb\xbf"complaint_no","received_at",')  # every field quoted (RFC 4180)
    rows = {row["complaint_no"]: row for row in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))}
    document = {row["complaint_no"]: row for row in json.loads(out_json.read_text(encoding="utf-8"))["complaints"]}
    assert set(rows) == set(document) == set(typed)
    for complaint_no, (business, details) in typed.items():
        for column, text in (("business", business), ("details", details)):
            cell = rows[complaint_no][column]
            assert not cell.startswith(FORMULA_STARTS), (column, cell)
            assert cell == ("'" + text if text.startswith((*FORMULA_STARTS, "'")) else text)
            assert (cell[1:] if cell.startswith("'") else cell) == text  # the one rule that reads it back
            assert document[complaint_no][column] == text  # the JSON file: as the complainant typed it
    assert rows[number]["status_note"] == "'=WEBSERVICE(\"x\")"
    assert document[number]["status_note"] == "=WEBSERVICE(\"x\")"
    st.close()


@pytest.fixture
def one_complaint(server):
    """A complaint the bank received an hour ago, straight in the table: (its number, an answer time after it)."""
    server_db()
    received = datetime.now(UTC) - timedelta(hours=1)
    stamp = received.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    Complaint.create(complaint_no="ST-0001-20261202-000007", station_id="ST-0001", seq=7, entry_ts=stamp,
                     received_at=stamp, agent="A01", phone="13812345678", business="好又多超市", category="price",
                     details="", updated_at=stamp)
    ComplaintEvent.create(complaint_no="ST-0001-20261202-000007", at=stamp, by="ST-0001", status="received")
    return "ST-0001-20261202-000007", (received + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


def unchanged(number):
    server_db()
    row = Complaint.get_by_id(number)
    return (row.status, row.status_note, row.answered_at,
            ComplaintEvent.select().where(ComplaintEvent.complaint_no == number).count()) == ("received", "", None, 1)


def answers_csv(number, answered, *lines, newline="\n"):
    return newline.join(["complaint_no,status,note,answered_at", *(line.format(n=number, t=answered)
                                                                   for line in lines)]) + newline


#: Whole files the bank cannot read: (bytes or a callable making the file, one line it answers with).
UNREADABLE = [
    (lambda n, t: answers_csv(n, t, "{n},accepted,已受理,{t}").encode("gbk"), "is not UTF-8 text"),
    (lambda n, t: answers_csv(n, t, "{n},accepted,已受理,{t}").encode("utf-16"), "is not UTF-8 text"),
    (lambda n, t: answers_csv(n, t, "{n},accepted,ok,{t}").encode("utf-16-le"), "line 1: the header"),
    (lambda n, t: b"[" * 100_000, "is not valid JSON"),
    (lambda n, t: b"[" + b"1" * 5000 + b"]", "is not valid JSON"),  # an integer past int()'s 4300 digits
    (lambda n, t: json.dumps({"complaints": {"a": 1}}).encode(), "JSON must be a list"),
    # A second BOM: the first column's name is not complaint_no.
    (lambda n, t: b"\xef\xbb\xbf\xef\xbb\xbfcomplaint_no,status,note,answered_at\n",
     "line 1: the header lacks complaint_no"),
    (lambda n, t: b"complaint_no;status;note;answered_at\n" + f"{n};accepted;;{t}\n".encode(), "line 1: the header"),
]


@pytest.mark.parametrize("content, message", UNREADABLE)
def test_files_that_cannot_be_read_change_nothing(server, tmp_path, one_complaint, content, message):
    number, answered = one_complaint
    path = tmp_path / "answers.txt"
    path.write_bytes(content(number, answered))
    result = run(server, "complaints", "import-status", str(path))
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output and "unexpected error" not in result.output
    assert unchanged(number)


def test_a_file_too_large_or_not_a_file_is_refused_before_reading(server, tmp_path, one_complaint):
    number, _ = one_complaint
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as file:
        file.truncate(MAX_IMPORT_BYTES + 1)  # sparse: no disk used
    result = run(server, "complaints", "import-status", str(huge))
    assert result.exit_code == 1 and "is larger than 10 MB" in result.output, result.output
    # /dev/zero would be read for ever (its size says 0).
    result = run(server, "complaints", "import-status", "/dev/zero")
    assert result.exit_code == 1 and "is not a regular file" in result.output, result.output
    assert unchanged(number)


def test_every_bad_line_is_named_and_nothing_applies(server, tmp_path, one_complaint):
    number, answered = one_complaint
    path = tmp_path / "answers.csv"
    path.write_bytes(b"\xef\xbb\xbf" + answers_csv(
        number, answered,
        "{n},accepted,=cmd|' /C calc'!A0,{t}",             # 2: good (formula text is a note like any other)
        "{n},accepted,=cmd|' /C calc'!A0,{t}",             # 3: the same line again: changes nothing more
        "ST-0009-20261202-000001,accepted,,{t}",           # 4: no such complaint
        "{n}\x00,accepted,,{t}",                           # 5: NUL (PostgreSQL refuses it in a query)
        "{n},ACCEPTED,,{t}",                               # 6: not a status (case matters)
        "{n},received,,{t}",                               # 7: the bank's status, not an answer
        "{n},accepted,\"tab\there\",{t}",                  # 8: a control character in the note
        "{n},accepted,\"two\r\nlines\",{t}",               # 9-10: a line break in the note
        "{n},accepted,,0001-01-01 00:00",                  # 11: before the first UTC moment Python holds
        "{n},accepted,,9999-12-31T23:59:59-23:59",         # 12: after the last
        "{n},accepted,,{t},extra",                         # 13: a field too many
        "=1+1,accepted,,{t}",                              # 14: a formula for a number
        newline="\r\n").encode("utf-8"))
    result = run(server, "complaints", "import-status", str(path))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "unexpected error" not in result.output
    lines = result.output.strip().split("\n")
    assert lines[0] == "Error: Nothing applied: 10 bad lines.", result.output
    assert [line.split(":")[0] for line in lines[1:]] == [f"line {n}" for n in (4, 5, 6, 7, 8, 10, 11, 12, 13, 14)]
    assert "no complaint ST-0009-20261202-000001 at the bank" in lines[1]
    assert "\x00" not in result.output and "status 'ACCEPTED' is not one of" in lines[3]
    assert "out of range" in lines[7] and "out of range" in lines[8]
    assert unchanged(number)
    # The same file without its bad lines: CRLF, a BOM, the good line twice: applied once.
    path.write_bytes(b"\xef\xbb\xbf" + answers_csv(number, answered, "{n},accepted,=cmd|' /C calc'!A0,{t}",
                                                   "{n},accepted,=cmd|' /C calc'!A0,{t}", newline="\r\n").encode())
    result = run(server, "complaints", "import-status", str(path))
    assert result.exit_code == 0 and "Applied 1 answer (1 unchanged)" in result.output, result.output
    server_db()
    assert Complaint.get_by_id(number).status_note == "=cmd|' /C calc'!A0"


@pytest.mark.parametrize("item, reason", [
    ({"complaint_no": ["x"], "status": "accepted"}, "complaint_no is not text"),
    ({"complaint_no": 7, "status": "accepted"}, "complaint_no is not text"),
    ({"complaint_no": None, "status": "accepted"}, "complaint_no is not text"),
    ({"complaint_no": "{n}", "status": ["accepted"]}, "status \"['accepted']\" is not one of"),
    ({"complaint_no": "{n}", "status": "accepted", "note": {"x": 1}}, "note is not one line"),
    ({"complaint_no": "{n}", "status": "accepted", "note": "x" * 501}, "note is not one line"),
    ({"complaint_no": "{n}", "status": "accepted", "note": "\u202eRTL"}, "note is not one line"),
    ({"complaint_no": "{n}", "status": "accepted", "answered_at": 1e999}, "answered_at is not text"),
    ({"complaint_no": "{n}\u0000", "status": "accepted"}, "no complaint"),
    ({"complaint_no": "{n}" * 1000, "status": "accepted"}, "no complaint"),
])
def test_json_items_of_the_wrong_type_are_named(server, tmp_path, one_complaint, item, reason):
    number, answered = one_complaint
    item = {"answered_at": answered, **{key: value.replace("{n}", number) if isinstance(value, str) else value
                                        for key, value in item.items()}}
    path = tmp_path / "answers.json"
    path.write_text(json.dumps([item]), encoding="utf-8")
    result = run(server, "complaints", "import-status", str(path))
    assert result.exit_code == 1 and "Nothing applied: 1 bad line." in result.output, result.output
    assert f"line 1: {reason}" in result.output, result.output
    assert "Traceback" not in result.output and "\x00" not in result.output and "\u202e" not in result.output
    assert unchanged(number)


#: Complaint bodies with fields of the wrong JSON type or holding what no screen or printer may show, each with the
#: reason the bank rejects it for (tests/test_complaints_server.py has the rules' own reasons).
HOSTILE_FIELDS = [
    ({"business": ["好又多"]}, "malformed_entry"),
    ({"business": 12345}, "malformed_entry"),
    ({"business": None}, "malformed_entry"),
    ({"details": {"text": "x"}}, "malformed_entry"),
    ({"business": "shop\x1b[2J"}, "malformed_entry"),  # an escape sequence (ESC/POS and terminals)
    ({"business": "shop\u202e"}, "malformed_entry"),  # a right-to-left override
    ({"details": "x" * 100_000}, "malformed_entry"),  # past any text's 255 characters
    ({"phone": "1381234567\x00"}, "malformed_entry"),
    ({"phone": "+8613812345678"}, "complaint_bad_phone"),  # the station stores it normalised
    ({"phone": ""}, "malformed_entry"),
    ({"complaint_no": 1}, "malformed_entry"),
    ({"consent": 1}, "malformed_entry"),
    ({"category": ["price"]}, "malformed_entry"),
]


def test_hostile_complaint_fields_are_rejected_and_the_sync_goes_on(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    forged = {}
    with st.write():
        for changes, reason in HOSTILE_FIELDS:
            seq = JournalEntry.select().count() + 1
            body = {"agent": "A01", "complaint_no": f"ST-0001-20261103-{seq:06d}", "phone": "13812345678",
                    "business": "好又多超市", "category": "price", "consent": True, "details": "x", **changes}
            append_forged_entry(st, "complaint_12315", clock.now, body)
            forged[seq] = reason
    result = sync_once(st)
    assert result.rejected == forged
    # Acknowledged, not retried: the next sync sends nothing and the station's next complaint goes through.
    agent, _ = open_counter(st)
    with st.bound():
        complaints.record_complaint(st, agent, "13812345678", "好又多超市", "price", "", True,
                                    receipts.new_txn_id())
    again = sync_once(st)
    assert again.rejected == {}
    server_db()
    assert Complaint.select().count() == 1
    st.close()


def test_the_export_columns_are_documented_as_the_code_says():
    """docs/operations.md's table of the daily file's columns is ``EXPORT_COLUMNS``, row for row."""
    text = (Path(__file__).parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", text.split("**Formula text in the CSV.**", 1)[1], re.M)
    assert rows[:len(EXPORT_COLUMNS)] == list(EXPORT_COLUMNS.items())


@pytest.mark.parametrize("out, message", [("/proc/12315.csv", "Cannot write in /proc"),
                                          ("/dev/null/x.csv", "No folder /dev/null")])
def test_an_export_that_cannot_be_written_is_one_line(server, tmp_path, out, message):
    result = run(server, "complaints", "export", "--date", "2026-12-02", "--format", "csv", "--out",
                 out.format(tmp=tmp_path))
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("\n") == 1 and "unexpected error" not in result.output


def test_who_imported_is_one_printable_line_in_the_trail(server, tmp_path, one_complaint):
    number, answered = one_complaint
    path = tmp_path / "answers\n\x1b[31m.csv"  # a file's name may hold a line break and an escape
    path.write_text(answers_csv(number, answered, "{n},accepted,ok,{t}"), encoding="utf-8")
    for by in ("Wang\x1b[2J", "Wang\nFang", "W" * 81, "   "):
        result = run(server, "complaints", "import-status", str(path), "--by", by)
        assert result.exit_code == 1 and "--by is your name" in result.output, result.output
        assert unchanged(number)
    result = run(server, "complaints", "import-status", str(path), "--by", "  Wang   Fang ")
    assert result.exit_code == 0, result.output
    shown = run(server, "complaints", "show", number)
    assert "Wang Fang (answers ?[31m.csv)" in shown.output and "\x1b" not in shown.output, shown.output


@pytest.mark.parametrize("command", [("complaints", "list"), ("complaints", "export", "--format", "csv", "--out", "x")])
@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_a_date_at_the_end_of_the_calendar_is_one_line(server, tmp_path, command, day):
    args = [arg if arg != "x" else str(tmp_path / "x.csv") for arg in command]
    result = run(server, *args, "--date", day)
    assert result.exit_code == 1 and f"{day} is out of range" in result.output, result.output
    assert result.output.count("\n") == 1
