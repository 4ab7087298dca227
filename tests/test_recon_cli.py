"""The ``recon`` command as a clerk uses it: exit codes, JSON and CSV that parse back, languages, ``--output``, and
the exceptions' life (stable ids, closed automatically when fixed, reopened when found again, resolved by a clerk,
an audit trail), on the clean history of ``recon_support`` with anomalies an insider's SQL can add and take away.
On SQLite and, with ``TEST_DATABASE_URL``, PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from click.testing import CliRunner
from recon_support import account_of, history_fixture  # noqa: F401

from sync_server.db import Entry, connect_url, db_proxy, migrate_database
from sync_server.recon.cli import cli
from sync_server.recon.store import NO_LONGER_FOUND

#: The keys of each discrepancy in ``--format json`` (docs/recon.md).
DISCREPANCY_KEYS = {"id", "kind", "station", "seq", "txn", "account", "biller", "reference", "amount_fen",
                    "expected_fen", "status", "explanation", "action"}
CJK = re.compile(r"[\u4e00-\u9fff]")


def invoke(*args: str):
    """``recon ARGS`` without a history (the models bound again as they were afterwards)."""
    bound = db_proxy.obj
    try:
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)
    finally:
        db_proxy.initialize(bound)


def unbalance(history, account_id: str, fen: int) -> None:
    """An insider moves a stored balance by ``fen`` without a posting (``-fen`` puts it back)."""
    with history.insider():
        history.move_balance(account_id, fen)


def take_entry(history, station_id: str, seq: int) -> dict:
    """An insider deletes an entry (a seq gap); returns its row, to put back with ``put_entry``."""
    history.db()
    row = Entry.select().where((Entry.station_id == station_id) & (Entry.seq == seq)).dicts().get()
    with history.insider():
        Entry.delete().where((Entry.station_id == station_id) & (Entry.seq == seq)).execute()
    return row


def put_entry(history, row: dict) -> None:
    with history.insider():
        Entry.insert(**row).execute()


def enquiry_seq(history, station_id: str, day: int) -> int:
    return history.seq_of(station_id, history.receipts[station_id][f"enquiry-{day}"].txn)


def by_kind(document: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for item in document["discrepancies"]:
        found.setdefault(item["kind"], []).append(item)
    return found


def show(history, exception_id: int) -> dict:
    result = history.recon("exceptions", "show", str(exception_id), "--json", "--lang", "en")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def listed(history, *args: str) -> list[dict]:
    result = history.recon("exceptions", "list", "--format", "json", "--lang", "en", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- exit codes and formats -------------------------------------------------------------------------------------
def test_a_clean_history_exits_0_and_says_so(history):
    result = history.recon("run", "--lang", "en")
    assert result.exit_code == 0, result.output
    assert "No open discrepancy" in result.stdout
    assert "Traceback" not in result.output
    code, document = history.recon_json()
    assert code == 0
    assert document["discrepancies"] == [] and document["summary"]["open"] == 0
    assert document["summary"]["by_kind"] == {}
    assert [s["station"] for s in document["summary"]["stations"]] == ["ST-0001", "ST-0002", "ST-0003"]


def test_json_and_csv_parse_back_with_the_documented_fields(history, tmp_path):
    """Two anomalies: a customer's balance moved by an insider and a balance enquiry deleted from ST-0002."""
    customer = account_of("ST-0001", 4)
    unbalance(history, customer, -2_500)
    seq = enquiry_seq(history, "ST-0002", 1)
    take_entry(history, "ST-0002", seq)
    code, document = history.recon_json("--lang", "en")
    assert code == 1
    assert set(document) == {"period", "discrepancies", "summary"}
    assert document["period"]["from"] is None and document["period"]["to"] is None
    assert document["period"]["as_of"] == history.now.isoformat(timespec="seconds")
    assert document["summary"]["open"] == 2
    assert document["summary"]["by_kind"] == {"balance_mismatch": 1, "seq_gap": 1}
    for item in document["discrepancies"]:
        assert DISCREPANCY_KEYS <= set(item), item
        assert item["status"] == "open"
        assert isinstance(item["id"], int)
        assert item["explanation"] and item["action"]
    found = by_kind(document)
    balance = found["balance_mismatch"][0]
    assert (balance["station"], balance["seq"], balance["account"], balance["txn"], balance["biller"],
            balance["reference"]) == (None, None, customer, None, None, None)
    assert balance["amount_fen"] - balance["expected_fen"] == 2_500
    assert customer in balance["explanation"]
    gap = found["seq_gap"][0]
    assert (gap["station"], gap["seq"], gap["account"], gap["amount_fen"]) == ("ST-0002", seq, None, None)
    assert "ST-0002" in gap["explanation"] and str(seq) in gap["explanation"]

    result = history.recon("run", "--format", "csv", "--lang", "en")
    assert result.exit_code == 1, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert DISCREPANCY_KEYS <= set(rows[0])
    as_json = {item["id"]: item for item in document["discrepancies"]}
    assert sorted(int(row["id"]) for row in rows) == sorted(as_json)
    for row in rows:
        item = as_json[int(row["id"])]
        for key in DISCREPANCY_KEYS:
            expected = item[key]
            assert row[key] == ("" if expected is None else str(expected)), (key, row[key], expected)

    # --output: the same report in a file, nothing but the report's absence on standard output.
    out = tmp_path / "report.json"
    result = history.recon("run", "--format", "json", "--lang", "en", "--output", str(out))
    assert result.exit_code == 1 and result.stdout == ""
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [(i["id"], i["kind"]) for i in written["discrepancies"]] == [
        (i["id"], i["kind"]) for i in document["discrepancies"]]
    table = tmp_path / "report.txt"
    result = history.recon("run", "--lang", "en", "--output", str(table))
    assert result.exit_code == 1 and result.stdout == ""
    assert "balance_mismatch" in table.read_text(encoding="utf-8")
    # A report that cannot be written: exit 2 with the reason, before anything is run or kept.
    for fmt in ("json", "table"):
        result = history.recon("run", "--format", fmt, "--output", str(tmp_path / "no-such-folder" / "r.out"))
        assert result.exit_code == 2 and "no-such-folder" in result.output and "Traceback" not in result.output


def test_explanations_are_chinese_by_default_and_english_with_lang_en(history):
    unbalance(history, account_of("ST-0003", 2), -10_000)
    _, chinese = history.recon_json()
    _, english = history.recon_json("--lang", "en")
    zh, en = chinese["discrepancies"][0], english["discrepancies"][0]
    assert zh["id"] == en["id"] and zh["kind"] == en["kind"] == "balance_mismatch"
    assert en["explanation"].startswith(f"Account {account_of('ST-0003', 2)} shows a balance of CNY ")
    assert not CJK.search(en["explanation"]) and not CJK.search(en["action"])
    assert CJK.search(zh["explanation"]) and CJK.search(zh["action"])
    assert zh["explanation"] != en["explanation"] and zh["action"] != en["action"]
    assert account_of("ST-0003", 2) in zh["explanation"]


def test_period_and_station_select_what_is_reported(history):
    """Gaps on 3 November at ST-0001 and 4 November at ST-0002; a customer's balance (no day, no station)."""
    first = enquiry_seq(history, "ST-0001", 0)
    second = enquiry_seq(history, "ST-0002", 1)
    take_entry(history, "ST-0001", first)
    take_entry(history, "ST-0002", second)
    unbalance(history, account_of("ST-0002", 4), 300)

    def kinds(*args):
        _, document = history.recon_json("--lang", "en", *args)
        return sorted((d["kind"], d["station"], d["seq"]) for d in document["discrepancies"])

    everything = [("balance_mismatch", None, None), ("seq_gap", "ST-0001", first), ("seq_gap", "ST-0002", second)]
    assert kinds() == everything
    assert kinds("--date", "2026-11-03") == everything[:2]
    assert kinds("--from", "2026-11-04", "--to", "2026-11-30") == [everything[0], everything[2]]
    assert kinds("--station", "ST-0002") == [everything[2]]
    assert kinds("--station", "ST-0003") == []
    _, document = history.recon_json("--date", "2026-11-04", "--station", "ST-0002")
    assert document["period"] == {**document["period"], "from": "2026-11-04", "to": "2026-11-04",
                                  "stations": ["ST-0002"]}


# -- usage, connection and data errors: exit 2, a message, no traceback ---------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--date", "2026-13-01"], "YYYY-MM-DD"),
    (["--date", "yesterday"], "YYYY-MM-DD"),
    (["--from", "2026-11-30", "--to", "2026-11-01"], "--from is after --to"),
    (["--date", "2026-11-30", "--from", "2026-11-01"], "not both"),
    (["--as-of", "tomorrow"], "--as-of"),
    (["--format", "xml"], "xml"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    database = tmp_path / "server.db"
    migrated = connect_url(f"sqlite:///{database}")
    migrate_database(migrated)
    migrated.close()
    result = invoke("run", "--database-url", f"sqlite:///{database}", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_missing_database_file_exits_2(tmp_path):
    missing = tmp_path / "nowhere" / "server.db"
    for args in (["run"], ["exceptions", "list"], ["exceptions", "show", "1"]):
        result = invoke(*args, "--database-url", f"sqlite:///{missing}")
        assert result.exit_code == 2, result.output
        assert "No database at" in result.output and "Traceback" not in result.output
    assert not missing.exists()


def test_a_postgresql_server_that_does_not_answer_exits_2():
    result = invoke("run", "--database-url", "postgresql://recon@127.0.0.1:1/bank")
    assert result.exit_code == 2, result.output
    assert "Cannot connect to the database" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("schema", ["previous release", "not a sync server database", "unknown scheme"])
def test_a_database_not_migrated_to_this_release_exits_2(tmp_path, schema):
    path = tmp_path / "server.db"
    url = f"sqlite:///{path}"
    database = connect_url(url)
    if schema == "previous release":
        migrate_database(database, up_to=3)
        message = "schema version 3"
    elif schema == "not a sync server database":
        database.execute_sql("CREATE TABLE notes (body TEXT)")
        message = ""
    else:
        path.touch()
        url = f"mysql://{path}"
        message = "DATABASE_URL must start with"
    database.close()
    result = invoke("run", "--database-url", url)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().startswith("Error:")


# -- exceptions -------------------------------------------------------------------------------------------------
def test_ids_are_stable_and_a_fixed_anomaly_closes_then_reopens_under_its_id(history):
    customer = account_of("ST-0001", 5)
    unbalance(history, customer, -1_000)
    seq = enquiry_seq(history, "ST-0003", 0)
    row = take_entry(history, "ST-0003", seq)
    _, first = history.recon_json("--lang", "en")
    _, again = history.recon_json("--lang", "en")
    ids = {d["kind"]: d["id"] for d in first["discrepancies"]}
    assert set(ids) == {"balance_mismatch", "seq_gap"}
    assert {d["kind"]: d["id"] for d in again["discrepancies"]} == ids
    assert len(listed(history)) == 2  # a re-run never duplicates an exception

    # The insider's balance change is undone: the next run closes it with the reason, the gap stays open.
    unbalance(history, customer, 1_000)
    code, fixed = history.recon_json("--lang", "en")
    assert code == 1 and [d["kind"] for d in fixed["discrepancies"]] == ["seq_gap"]
    closed = show(history, ids["balance_mismatch"])
    assert closed["status"] == "resolved"
    assert [(e["by"], e["action"], e["note"]) for e in closed["history"]] == [
        ("recon", "opened", ""), ("recon", "closed", NO_LONGER_FOUND)]
    assert show(history, ids["seq_gap"])["status"] == "open"

    # Found again: the same id, open again, and the trail says so.
    unbalance(history, customer, -700)
    _, reopened = history.recon_json("--lang", "en")
    balance = by_kind(reopened)["balance_mismatch"][0]
    assert (balance["id"], balance["status"]) == (ids["balance_mismatch"], "open")
    assert balance["amount_fen"] - balance["expected_fen"] == 700  # its amounts brought up to date
    assert [e["action"] for e in show(history, ids["balance_mismatch"])["history"]] == ["opened", "closed",
                                                                                        "reopened"]
    # Both fixed: exit 0, both closed by recon.
    unbalance(history, customer, 700)
    put_entry(history, row)
    code, clean = history.recon_json("--lang", "en")
    assert code == 0 and clean["discrepancies"] == []
    assert {(e["id"], e["status"]) for e in listed(history)} == {(ids["balance_mismatch"], "resolved"),
                                                                 (ids["seq_gap"], "resolved")}
    assert len(listed(history)) == 2


def test_a_clerk_resolves_an_exception_once_with_a_note(history):
    customer = account_of("ST-0002", 6)
    unbalance(history, customer, -5_000)
    seq = enquiry_seq(history, "ST-0001", 1)
    take_entry(history, "ST-0001", seq)
    _, document = history.recon_json("--lang", "en")
    ids = {d["kind"]: d["id"] for d in document["discrepancies"]}

    result = history.recon("exceptions", "resolve", str(ids["seq_gap"]), "--note", "journal export imported",
                           "--by", "wang.li", "--lang", "en")
    assert result.exit_code == 0, result.output
    assert f"Exception {ids['seq_gap']} resolved" in result.stdout
    shown = show(history, ids["seq_gap"])
    assert shown["status"] == "resolved"
    assert [(e["by"], e["action"], e["note"]) for e in shown["history"]] == [
        ("recon", "opened", ""), ("wang.li", "resolved", "journal export imported")]

    again = history.recon("exceptions", "resolve", str(ids["seq_gap"]), "--note", "twice", "--by", "wang.li",
                          "--lang", "en")
    assert again.exit_code == 2 and "already resolved" in again.output and "Traceback" not in again.output
    unknown = history.recon("exceptions", "resolve", "99999", "--note", "x", "--by", "wang.li", "--lang", "en")
    assert unknown.exit_code == 2 and "No exception 99999" in unknown.output
    assert history.recon("exceptions", "show", "99999", "--lang", "en").exit_code == 2
    empty = history.recon("exceptions", "resolve", str(ids["balance_mismatch"]), "--note", "  ", "--by", "wang.li")
    assert empty.exit_code == 2 and "Traceback" not in empty.output
    assert show(history, ids["balance_mismatch"])["status"] == "open"

    # The clerk's decision holds when the run finds the gap again; the balance is still open: exit 1.
    code, rerun = history.recon_json("--lang", "en")
    assert code == 1
    assert {(d["kind"], d["status"]) for d in rerun["discrepancies"]} == {("seq_gap", "resolved"),
                                                                         ("balance_mismatch", "open")}
    assert [e["action"] for e in show(history, ids["seq_gap"])["history"]] == ["opened", "resolved"]
    assert history.recon("exceptions", "resolve", str(ids["balance_mismatch"]), "--note", "posted",
                         "--by", "zhou").exit_code == 0
    code, _ = history.recon_json()
    assert code == 0  # found, but nothing open

    assert [e["id"] for e in listed(history, "--status", "resolved")] == sorted(ids.values())
    assert listed(history, "--status", "open") == []
    assert [e["id"] for e in listed(history, "--kind", "seq_gap")] == [ids["seq_gap"]]
    assert listed(history, "--kind", "fork") == []
    bad = history.recon("exceptions", "list", "--kind", "no_such_kind")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    table = history.recon("exceptions", "list", "--lang", "en")
    assert table.exit_code == 0 and "seq_gap" in table.stdout and "balance_mismatch" in table.stdout
    trail = history.recon("exceptions", "show", str(ids["seq_gap"]), "--lang", "en")
    assert trail.exit_code == 0 and "wang.li" in trail.stdout and "journal export imported" in trail.stdout


def test_a_run_limited_by_station_or_date_closes_nothing_outside_its_scope(history):
    """Gaps at ST-0001 (3 Nov) and ST-0002 (3 and 4 Nov), and a customer's balance: all fixed, then runs limited
    to a station or a day close only what they checked."""
    gaps = {("ST-0001", 0): None, ("ST-0002", 0): None, ("ST-0002", 1): None}
    rows = {}
    for station_id, day in gaps:
        seq = enquiry_seq(history, station_id, day)
        rows[(station_id, day)] = take_entry(history, station_id, seq)
        gaps[(station_id, day)] = seq
    customer = account_of("ST-0001", 7)
    unbalance(history, customer, -100)
    _, document = history.recon_json("--lang", "en")
    ids = {(d["station"], d["seq"]): d["id"] for d in document["discrepancies"]}
    assert len(ids) == 4
    for row in rows.values():
        put_entry(history, row)
    unbalance(history, customer, 100)

    def statuses():
        return {(e["station"], e["seq"]): e["status"] for e in listed(history)}

    code, _ = history.recon_json("--station", "ST-0002", "--date", "2026-11-04")
    assert code == 0
    assert statuses() == {("ST-0001", gaps[("ST-0001", 0)]): "open", ("ST-0002", gaps[("ST-0002", 0)]): "open",
                          ("ST-0002", gaps[("ST-0002", 1)]): "resolved", (None, None): "open"}
    code, _ = history.recon_json("--station", "ST-0002")
    assert code == 0
    assert statuses() == {("ST-0001", gaps[("ST-0001", 0)]): "open", ("ST-0002", gaps[("ST-0002", 0)]): "resolved",
                          ("ST-0002", gaps[("ST-0002", 1)]): "resolved", (None, None): "open"}
    code, _ = history.recon_json("--date", "2026-11-04")  # all stations: the customer's balance is checked
    assert code == 0  # ST-0001's gap of 3 November is open, but outside the run's period
    assert statuses() == {("ST-0001", gaps[("ST-0001", 0)]): "open", ("ST-0002", gaps[("ST-0002", 0)]): "resolved",
                          ("ST-0002", gaps[("ST-0002", 1)]): "resolved", (None, None): "resolved"}
    code, _ = history.recon_json()
    assert code == 0
    assert set(statuses().values()) == {"resolved"}
    assert {e["id"] for e in listed(history)} == set(ids.values())
