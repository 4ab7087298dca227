"""12315 complaints end to end: taken at the station (the screen and the service), synced to a real sync server over
loopback, exported for the market regulator (CSV and JSON, field by field), its answers imported; and what the
bank refuses: forged entries (rejected with a reason, never a 500) and bad status files (every bad line, nothing
applied)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sync_support import append_forged_entry, enrolled_station, open_counter, server_db

from station import complaints, receipts
from station.app import create_app
from station.cli import cli as station_cli
from station.db import JournalEntry
from station.protocol.tokens import unverified_payload
from station.sync import sync_once
from sync_server.cli import cli
from sync_server.complaints import EXPORT_COLUMNS, bank_timezone
from sync_server.db import Complaint, ComplaintEvent, Entry

PHONE = "13812345678"


def run(server, *args):
    return CliRunner().invoke(cli, [*args[:2], "--database-url", server.database_url, *args[2:]])


def take_two_complaints(st):
    """One complaint through the screen (a landline, category other), one through the service: their numbers."""
    agent, _ = open_counter(st)
    app = create_app({"STATION": st, "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test"})
    client = app.test_client()
    client.post("/login", data={"agent_id": "A01", "pin": "1357"})
    saved = client.post("/complaint/", data={"txn": receipts.new_txn_id(), "category": "other",
                                             "business": "王记 饭店", "details": "菜里有虫，老板不认账",
                                             "phone": "0571 8888 9999", "consent": "yes", "step": "record"})
    assert saved.status_code == 302, saved.get_data(as_text=True)
    with st.bound():
        complaints.record_complaint(st, agent, PHONE, "好又多超市", "price", "标价5元结账收8元", True,
                                    receipts.new_txn_id())
        return [unverified_payload(entry.token)["complaint_no"] for entry in
                JournalEntry.select().where(JournalEntry.type == "complaint_12315").order_by(JournalEntry.seq)]


def test_a_complaint_reaches_the_regulator_and_its_answer_comes_back(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    landline_no, mobile_no = take_two_complaints(st)
    assert sync_once(st).rejected == {}

    server_db()
    row = Complaint.get_by_id(mobile_no)
    assert (row.station_id, row.phone, row.business, row.category, row.details, row.status) == (
        "ST-0001", PHONE, "好又多超市", "price", "标价5元结账收8元", "received")
    assert Complaint.get_by_id(landline_no).phone == "0571-88889999"
    assert Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == row.seq)).outcome == "acknowledged"
    assert [e.status for e in ComplaintEvent.select().where(ComplaintEvent.complaint_no == mobile_no)] == ["received"]
    day = datetime.fromisoformat(row.received_at).astimezone(bank_timezone()).date().isoformat()

    listed = run(server, "complaints", "list", "--date", day)
    assert listed.exit_code == 0, listed.output
    assert "138****5678" in listed.output and PHONE not in listed.output and "0571-****9999" in listed.output
    # With customer voice too (客户之声 at the bank), the phone masked there as well.
    voice = run(server, "voice", "list", "--kind", "complaint_12315", "--json")
    assert voice.exit_code == 0, voice.output
    assert {item["words"].split()[2] for item in json.loads(voice.output)} == {mobile_no, landline_no}
    assert PHONE not in voice.output and "138****5678" in voice.output

    out_csv, out_json = tmp_path / "12315.csv", tmp_path / "12315.json"
    for out, fmt in ((out_csv, "csv"), (out_json, "json")):
        done = run(server, "complaints", "export", "--date", day, "--format", fmt, "--out", str(out))
        assert done.exit_code == 0 and f"Wrote 2 complaints of {day}" in done.output, done.output
    assert out_csv.stat().st_mode & 0o777 == 0o600  # the complainants' phones: the bank's staff only
    assert out_csv.read_bytes().startswith(b'\xef\xbb\xbf"complaint_no",')  # the BOM, then the header, quoted
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8-sig"))))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    by_number = {r["complaint_no"]: r for r in rows}
    mobile = by_number[mobile_no]
    assert mobile == {
        "complaint_no": mobile_no, "received_at": row.received_at, "recorded_at": row.entry_ts,
        "station_id": "ST-0001", "phone": PHONE, "business": "好又多超市", "category": "price",
        "category_zh": "价格", "details": "标价5元结账收8元", "consent": "true", "status": "received",
        "status_note": "", "answered_at": ""}
    assert (by_number[landline_no]["phone"], by_number[landline_no]["category_zh"],
            by_number[landline_no]["business"]) == ("0571-88889999", "其他", "王记 饭店")
    document = json.loads(out_json.read_text(encoding="utf-8"))
    assert (document["date"], document["count"], document["columns"]) == (day, 2, list(EXPORT_COLUMNS))
    as_json = {c["complaint_no"]: c for c in document["complaints"]}
    assert as_json[mobile_no] == {**mobile, "consent": True, "answered_at": None}
    # Another day's file holds none of them.
    other = run(server, "complaints", "export", "--date", "2020-01-01", "--format", "json", "--out", str(out_json))
    assert other.exit_code == 0 and json.loads(out_json.read_text())["complaints"] == []

    # The regulator answers: accepted, then resolved (CSV); a second import of the same file changes nothing.
    now = datetime.now(UTC)
    answered = (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    answers = tmp_path / "answers.csv"
    answers.write_text("complaint_no,status,note,answered_at\n"
                       f"{mobile_no},accepted,已受理,{answered}\n"
                       f"{mobile_no},resolved,商家已退差价,{answered}\n"
                       f"{landline_no},transferred,转区市场监管局,{answered}\n", encoding="utf-8")
    applied = run(server, "complaints", "import-status", str(answers), "--by", "Wang Fang")
    assert applied.exit_code == 0 and "Applied 3 answers (0 unchanged)" in applied.output, applied.output
    again = run(server, "complaints", "import-status", str(answers), "--by", "Wang Fang")
    assert again.exit_code == 0 and "Applied 0 answers (3 unchanged)" in again.output, again.output
    server_db()
    row = Complaint.get_by_id(mobile_no)
    assert (row.status, row.status_note, row.answered_at) == ("resolved", "商家已退差价",
                                                              answered.replace("Z", ".000Z"))
    assert [e.status for e in ComplaintEvent.select().where(ComplaintEvent.complaint_no == mobile_no)
            .order_by(ComplaintEvent.id)] == ["received", "accepted", "resolved"]
    assert "Wang Fang (answers.csv)" in {e.by for e in ComplaintEvent.select()}
    shown = run(server, "complaints", "show", mobile_no)
    assert shown.exit_code == 0 and "商家已退差价" in shown.output

    # The same final answer again (JSON) is harmless; a change of a final status is refused, as is going back.
    final = tmp_path / "final.json"
    final.write_text(json.dumps([{"complaint_no": mobile_no, "status": "resolved", "note": "商家已退差价",
                                  "answered_at": answered}]), encoding="utf-8")
    same = run(server, "complaints", "import-status", str(final))
    assert same.exit_code == 0 and "Applied 0 answers (1 unchanged)" in same.output, same.output
    final.write_text(json.dumps({"complaints": [{"complaint_no": mobile_no, "status": "rejected", "note": "",
                                                 "answered_at": answered}]}), encoding="utf-8")
    refused = run(server, "complaints", "import-status", str(final))
    assert refused.exit_code == 1 and "already resolved, a final status" in refused.output
    final.write_text(json.dumps([{"complaint_no": landline_no, "status": "accepted", "note": "again",
                                  "answered_at": answered}]), encoding="utf-8")
    back = run(server, "complaints", "import-status", str(final))
    assert back.exit_code == 1 and "line 1: " in back.output and "cannot go back to accepted" in back.output
    listed = run(server, "complaints", "list", "--status", "transferred", "--json")
    assert [r["complaint_no"] for r in json.loads(listed.output)] == [landline_no]
    st.close()


def test_a_bad_status_file_applies_nothing_and_names_every_bad_line(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    _, number = take_two_complaints(st)
    sync_once(st)
    now = datetime.now(UTC)
    later = now + timedelta(minutes=1)
    good = later.astimezone(bank_timezone()).strftime("%Y-%m-%d %H:%M:%S")  # a local time: the bank's time zone
    good_utc = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    answers = tmp_path / "answers.csv"
    answers.write_text("\n".join([
        "complaint_no,status,note,answered_at",
        f"{number},accepted,ok,{good_utc}",                      # 2: good
        f"ST-0009-20261102-000001,accepted,,{good_utc}",         # 3: unknown complaint
        f"{number},received,,{good_utc}",                        # 4: received is the bank's, not an answer
        f"{number},closed,,{good_utc}",                          # 5: no such status
        f"{number},resolved,\"bad\x07note\",{good_utc}",         # 6: a control character
        f"{number},resolved,,yesterday",                         # 7: not a time
        f"{number},resolved,,2001-01-01T00:00:00Z",              # 8: before the bank received it
        f"{number},resolved,,{(now + timedelta(days=3)).strftime('%Y-%m-%dT%H:%M:%SZ')}",  # 9: the future
        f"{number},resolved",                                    # 10: too few fields
        f"{number},resolved,{'长' * 501},{good}",                 # 11: note too long
    ]) + "\n", encoding="utf-8")
    result = run(server, "complaints", "import-status", str(answers))
    assert result.exit_code == 1
    assert "Nothing applied: 9 bad lines." in result.output
    for line in range(3, 12):
        assert f"line {line}:" in result.output
    assert "line 2:" not in result.output and "Traceback" not in result.output
    server_db()
    assert Complaint.get_by_id(number).status == "received"
    assert ComplaintEvent.select().where(ComplaintEvent.complaint_no == number).count() == 1
    # JSON: each object is a "line".
    as_json = tmp_path / "answers.json"
    as_json.write_text(json.dumps(["accepted", {"complaint_no": number, "status": "accepted", "answered_at": 12345},
                                   {"complaint_no": number, "status": "accepted", "answered_at": good_utc, "by": "x"},
                                   {"complaint_no": number, "status": "accepted", "note": None,
                                    "answered_at": good_utc}]), encoding="utf-8")
    result = run(server, "complaints", "import-status", str(as_json))
    assert result.exit_code == 1 and "Nothing applied: 3 bad lines." in result.output, result.output
    assert "line 1: not an object" in result.output and "line 2: answered_at is not text" in result.output
    assert "line 3: unknown field by" in result.output and "line 4" not in result.output
    # A status going back is refused even within one file.
    answers.write_text(f"complaint_no,status,note,answered_at\n{number},transferred,,{good_utc}\n"
                       f"{number},accepted,,{good_utc}\n", encoding="utf-8")
    back = run(server, "complaints", "import-status", str(answers))
    assert back.exit_code == 1 and "line 3:" in back.output and "cannot go back to accepted" in back.output
    st.close()


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"complaint_no,status\nx,accepted\n", "line 1: the header lacks note, answered_at"),
    (b"complaint_no,status,note,answered_at,extra\nx,accepted,,\n", "line 1: the header has unknown columns extra"),
    (b"complaint_no,status,note,answered_at,note\nx,accepted,,,\n", "line 1: the header names a column twice"),
    (b"\xff\xfe\x00garbage", "is not UTF-8"),
    (b"[{\"complaint_no\": 1", "is not valid JSON"),
    (b"{\"answers\": []}", "JSON must be a list"),
    (b"complaint_no,status,note,answered_at\n", "holds no answers"),
])
def test_unreadable_status_files_are_one_clear_line(server, tmp_path, content, message):
    path = tmp_path / ("answers.json" if content.startswith((b"[", b"{")) else "answers.csv")
    path.write_bytes(content)
    result = run(server, "complaints", "import-status", str(path))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("args, message", [
    (["--date", "2026-13-01", "--format", "csv", "--out", "x.csv"], "Invalid value for '--date'"),
    (["--date", "2026-12-01", "--format", "xml", "--out", "x.xml"], "Invalid value for '--format'"),
    (["--date", "2026-12-01", "--format", "csv", "--out", "/nonexistent/dir/x.csv"], "No folder /nonexistent/dir"),
])
def test_export_refusals(server, tmp_path, args, message):
    result = run(server, "complaints", "export", *args)
    assert result.exit_code in (1, 2) and message in result.output, result.output


#: Complaint bodies a tampered device might sign, each with the reason the bank rejects it for.
FORGED = [
    ({"consent": False}, "complaint_no_consent"),
    ({"phone": "12345678901"}, "complaint_bad_phone"),
    ({"phone": "138 1234 5678"}, "complaint_bad_phone"),  # the station stores it normalised
    ({"category": "weather"}, "malformed_entry"),  # not a category the registry lists
    ({"business": "超" * 61}, "complaint_bad_business"),
    ({"business": " 好又多"}, "complaint_bad_business"),
    ({"details": "长" * 201}, "complaint_bad_details"),
    ({"category": "other", "details": ...}, "complaint_bad_details"),
    ({"business": "shop\x00"}, "malformed_entry"),
    ({"details": "line\nbreak"}, "malformed_entry"),
    ({"phone": 13812345678}, "malformed_entry"),
    ({"consent": "true"}, "malformed_entry"),
    ({"complaint_no": "ST-0002-20261103-000099"}, "complaint_bad_number"),  # another station's
    ({"complaint_no": "ST-0001-20200101-{seq}"}, "complaint_bad_number"),  # not the entry's date
    ({"complaint_no": "ST-0001-20261103-000001"}, "complaint_bad_number"),  # not the entry's seq
    ({"extra": "field"}, "malformed_entry"),
]


def test_forged_complaints_are_rejected_with_their_reason(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    forged = {}
    with st.write():
        for changes, reason in FORGED:
            seq = JournalEntry.select().count() + 1  # a fresh journal: seqs from 1, gapless
            body = {"agent": "A01", "complaint_no": f"ST-0001-20261103-{seq:06d}", "phone": PHONE,
                    "business": "好又多超市", "category": "price", "consent": True, "details": "x"}
            body.update(changes)
            if isinstance(body["complaint_no"], str):
                body["complaint_no"] = body["complaint_no"].replace("{seq}", f"{seq:06d}")
            body = {k: v for k, v in body.items() if v is not ...}
            entry = append_forged_entry(st, "complaint_12315", clock.now, body)
            assert entry.seq == seq
            forged[seq] = reason
        honest = append_forged_entry(st, "complaint_12315", clock.now, {
            "agent": "A01", "complaint_no": f"ST-0001-20261103-{JournalEntry.select().count() + 1:06d}",
            "phone": "020-8765432", "business": "好又多超市", "category": "service", "consent": True})
    result = sync_once(st)
    assert result.rejected == forged
    server_db()
    assert [row.complaint_no for row in Complaint.select()] == [unverified_payload(honest.token)["complaint_no"]]
    # The journal's verifier agrees with the bank, entry by entry.
    audit = CliRunner().invoke(station_cli, ["verify-journal", "--json", "--data-dir", str(st.data_dir)])
    assert audit.exit_code == 1
    assert {problem["seq"] for problem in json.loads(audit.output)["problems"]} == set(forged)
    st.close()


def test_the_audit_trail_is_append_only_in_the_database(server, tmp_path, clock):
    from peewee import DatabaseError

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    take_two_complaints(st)
    sync_once(st)
    database = server_db()
    for change in (ComplaintEvent.update(note="edited"), ComplaintEvent.delete()):
        with pytest.raises(DatabaseError, match="append-only"), database.atomic():
            change.execute()
    assert ComplaintEvent.select().where(ComplaintEvent.note == "edited").count() == 0
    assert ComplaintEvent.select().count() == 2
    st.close()


def test_what_a_bad_file_says_is_quoted_on_one_printable_line(server, tmp_path):
    path = tmp_path / "answers.json"
    path.write_text(json.dumps([{"complaint_no": "x\n\x1b[31mred", "status": "s\x07", "answered_at": "t",
                                 "k\x1b]0;title\x07": 1}]), encoding="utf-8")
    result = run(server, "complaints", "import-status", str(path))
    assert result.exit_code == 1 and "line 1: unknown field" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert result.output.count("\n") == 2  # the summary and the one bad line
