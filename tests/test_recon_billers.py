"""Billers' settlement files: the import (layouts, encodings, bad lines, each file once) and the four biller checks
on a small history built through the real path (a station pays bills, syncs; recon reads the signed tokens)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sync_support import enrolled_station, open_counter, server_db

from station import operations, receipts
from station.protocol.demo_data import demo_billers
from station.protocol.times import parse_utc
from station.sync import sync_once
from sync_server.admin import import_billers
from sync_server.db import BillerFile, BillerLine, Entry, connect_url, db_proxy, migrate_database
from sync_server.policy import server_policy, station_policy
from sync_server.recon.billers_import import (
    BadLines,
    BadMapping,
    BillerImportError,
    UnknownBiller,
    import_biller_file,
)
from sync_server.recon.cli import cli
from sync_server.recon.context import Scope
from sync_server.recon.kinds import KINDS
from sync_server.recon.run import find_discrepancies

BILLER_KINDS = {kind for kind, spec in KINDS.items() if spec.group == "billers"}
HEADER = "reference,amount_fen,value_date,bank_txn_id\n"


# -- the import ---------------------------------------------------------------------------------------------
@pytest.fixture
def bank(database_url):
    """A migrated server database with the demo billers, bound to the models (no server running)."""
    database = connect_url(database_url)
    db_proxy.initialize(database)
    database.connect()
    migrate_database(database)
    import_billers(demo_billers())
    yield database
    if not database.is_closed():
        database.close()


def lines_of(file_id):
    return [(line.line_no, line.reference, line.amount_fen, line.value_date, line.bank_txn_id)
            for line in BillerLine.select().where(BillerLine.file_id == file_id).order_by(BillerLine.line_no)]


def test_the_default_layout_is_imported_with_its_value_dates(bank, tmp_path):
    path = tmp_path / "sgcc.csv"
    path.write_text(HEADER + "1234567890,8850,2026-11-03,6f1c0f4e-0000-4000-8000-000000000001\n"
                    "\n9876543210,12000,2026-11-02,\n", encoding="utf-8")
    result = import_biller_file(path, "ELEC-SGCC", by="wang.li")
    assert (result.biller, result.lines, result.first_value_date, result.last_value_date, result.already) == (
        "ELEC-SGCC", 2, "2026-11-02", "2026-11-03", False)
    assert result.message == f"Imported file {result.file_id}: 2 lines of ELEC-SGCC, value dates 2026-11-02 to " \
                             "2026-11-03."
    assert lines_of(result.file_id) == [(2, "1234567890", 8850, "2026-11-03", "6f1c0f4e-0000-4000-8000-000000000001"),
                                        (4, "9876543210", 12000, "2026-11-02", None)]
    assert BillerFile.get_by_id(result.file_id).imported_by == "wang.li"


def test_a_mapping_reads_yuan_and_another_date_format_exactly(bank, tmp_path):
    path = tmp_path / "water.csv"
    path.write_text("date;customer;paid;extra\n20261103;12345678;88.50;x\n20261104;87654321;0.07;y\n"
                    "20261104;87654321;1234567.8;z\n", encoding="utf-8")
    mapping = {"columns": {"reference": "customer", "amount_fen": "paid", "value_date": "date"},
               "amount_unit": "yuan", "date_format": "%Y%m%d", "delimiter": ";"}
    result = import_biller_file(path, "WATER-COUNTY", mapping)
    assert lines_of(result.file_id) == [(2, "12345678", 8850, "2026-11-03", None),
                                        (3, "87654321", 7, "2026-11-04", None),
                                        (4, "87654321", 123456780, "2026-11-04", None)]


def test_a_gb18030_file_with_chinese_column_names_through_a_mapping_file(bank, tmp_path):
    path = tmp_path / "国网.csv"
    path.write_bytes("户号,姓名,金额,日期,银行流水号\n1234567890,王秀英,50.00,2026/11/03,TXN-1\n".encode("gb18030"))
    mapping = tmp_path / "sgcc.json"
    mapping.write_text('{"columns": {"reference": "户号", "amount_fen": "金额", "value_date": "日期", '
                       '"bank_txn_id": "银行流水号"}, "amount_unit": "yuan", "date_format": "%Y/%m/%d"}',
                       encoding="utf-8")
    result = import_biller_file(path, "ELEC-SGCC", mapping)
    assert lines_of(result.file_id) == [(2, "1234567890", 5000, "2026-11-03", "TXN-1")]
    assert result.name == "国网.csv"


def test_a_utf8_file_with_a_bom_and_crlf_lines(bank, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "1234567890,100,2026-11-03,\n").replace("\n", "\r\n").encode())
    assert lines_of(import_biller_file(path, "ELEC-SGCC").file_id) == [(2, "1234567890", 100, "2026-11-03", None)]


def test_every_bad_line_is_reported_by_number_and_nothing_is_imported(bank, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER
                    + "1234567890,8850,2026-11-03,\n"          # 2: fine
                    + ",100,2026-11-03,\n"                     # 3: no reference
                    + "1234567890,88.50,2026-11-03,\n"         # 4: fen with decimals
                    + "1234567890,0,2026-11-03,\n"             # 5: zero
                    + "1234567890,-5,2026-11-03,\n"            # 6: negative
                    + "1234567890,100,2026-02-30,\n"           # 7: no such day
                    + "1234567890,100,2026-11-3,\n"            # 8: not YYYY-MM-DD
                    + "1234567890,100,2026-11-03,has space\n"  # 9: bad txn id
                    + f"{'9' * 65},100,2026-11-03,\n"          # 10: reference too long
                    + "1234567890,100\n"                       # 11: too few fields
                    + "1234567890\t5,100,2026-11-03,\n",       # 12: not printable
                    encoding="utf-8")
    with pytest.raises(BadLines) as raised:
        import_biller_file(path, "ELEC-SGCC")
    assert [(e.line, e.reason) for e in raised.value.errors] == [
        (3, "reference is empty"),
        (4, "amount '88.50' (fen): the amount must be a whole number of fen, digits only"),
        (5, "amount '0' (fen): the amount must be more than zero"),
        (6, "amount '-5' (fen): the amount must be a whole number of fen, digits only"),
        (7, "value_date '2026-02-30' is not a real date in the form YYYY-MM-DD"),
        (8, "value_date '2026-11-3' is not a real date in the form YYYY-MM-DD"),
        (9, "bank_txn_id must be empty or an id of at most 64 printable characters without spaces"),
        (10, "reference must be printable text of at most 64 characters"),
        (11, "2 fields, but the header has 4"),
        (12, "reference must be printable text of at most 64 characters"),
    ]
    assert str(raised.value).startswith("Nothing imported: 10 bad lines.\nline 3: reference is empty\n")
    assert BillerFile.select().count() == 0 and BillerLine.select().count() == 0


@pytest.mark.parametrize(("text", "reason"), [
    ("1234567890,88.505,2026-11-03", "amount '88.505' (yuan): an amount can have at most two decimals (fen)"),
    ("1234567890,1e3,2026-11-03", "amount '1e3' (yuan): enter the amount in digits, for example 100 or 12.50"),
    ("1234567890,NaN,2026-11-03", "amount 'NaN' (yuan): enter the amount in digits, for example 100 or 12.50"),
    ("1234567890,0.00,2026-11-03", "amount '0.00' (yuan): the amount must be more than zero"),
])
def test_yuan_amounts_beyond_fen_or_not_digits_are_refused(bank, tmp_path, text, reason):
    path = tmp_path / "yuan.csv"
    path.write_text("reference,amount,value_date\n" + text + "\n", encoding="utf-8")
    mapping = {"columns": {"reference": "reference", "amount_fen": "amount", "value_date": "value_date"},
               "amount_unit": "yuan"}
    with pytest.raises(BadLines) as raised:
        import_biller_file(path, "ELEC-SGCC", mapping)
    assert [(e.line, e.reason) for e in raised.value.errors] == [(2, reason)]


def test_the_same_file_twice_is_imported_once(bank, tmp_path):
    path = tmp_path / "sgcc.csv"
    path.write_text(HEADER + "1234567890,8850,2026-11-03,\n", encoding="utf-8")
    first = import_biller_file(path, "ELEC-SGCC")
    again = import_biller_file(path, "ELEC-SGCC")
    assert again.already and not first.already
    assert again.file_id == first.file_id
    assert again.message.startswith(f"Already imported on {first.imported_at[:10]} as file {first.file_id} ")
    assert BillerFile.select().count() == 1 and BillerLine.select().count() == 1
    with pytest.raises(BillerImportError, match="for biller ELEC-SGCC, not GAS-COUNTY"):
        import_biller_file(path, "GAS-COUNTY")


def test_an_unknown_biller_and_missing_columns_are_refused(bank, tmp_path):
    path = tmp_path / "sgcc.csv"
    path.write_text(HEADER + "1234567890,8850,2026-11-03,\n", encoding="utf-8")
    with pytest.raises(UnknownBiller, match="No biller 'ELEC-XX'"):
        import_biller_file(path, "ELEC-XX")
    path.write_text("reference,value_date\n1234567890,2026-11-03\n", encoding="utf-8")
    with pytest.raises(BadLines) as raised:
        import_biller_file(path, "ELEC-SGCC")
    assert [str(e) for e in raised.value.errors] == [
        "line 1: missing column amount_fen (the header has: reference, value_date)"]
    path.write_text(HEADER, encoding="utf-8")
    with pytest.raises(BadLines, match="no lines after its header"):
        import_biller_file(path, "ELEC-SGCC")
    assert BillerFile.select().count() == 0


@pytest.mark.parametrize(("mapping", "message"), [
    ([], "must be a JSON object"),
    ({"columns": {"reference": "a", "amount_fen": "b"}}, "missing value_date"),
    ({"columns": {"reference": "a", "amount_fen": "b", "value_date": "c", "payer": "d"}}, "unknown payer"),
    ({"columns": {"reference": "a", "amount_fen": "a", "value_date": "c"}}, "the same column"),
    ({"columns": {"reference": "a", "amount_fen": "b", "value_date": "c"}, "amount_unit": "jiao"}, "amount_unit"),
    ({"columns": {"reference": "a", "amount_fen": "b", "value_date": "c"}, "date_format": "YYYYMMDD"}, "strptime"),
    ({"columns": {"reference": "a", "amount_fen": "b", "value_date": "c"}, "delimiter": ",,"}, "delimiter"),
    ({"columns": {"reference": "a", "amount_fen": "b", "value_date": "c"}, "encoding": "latin-1"}, "encoding"),
    ({"columns": {"reference": "a", "amount_fen": "b", "value_date": "c"}, "skip": 1}, "unknown keys skip"),
])
def test_a_bad_mapping_is_refused_with_the_reason(bank, tmp_path, mapping, message):
    path = tmp_path / "sgcc.csv"
    path.write_text(HEADER + "1234567890,8850,2026-11-03,\n", encoding="utf-8")
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps(mapping), encoding="utf-8")
    with pytest.raises(BadMapping, match=message):
        import_biller_file(path, "ELEC-SGCC", mapping_file)
    assert BillerFile.select().count() == 0


def test_a_mapping_file_that_is_not_json_is_refused(bank, tmp_path):
    path, mapping_file = tmp_path / "sgcc.csv", tmp_path / "mapping.json"
    path.write_text(HEADER + "1234567890,8850,2026-11-03,\n", encoding="utf-8")
    mapping_file.write_text("{columns: reference}", encoding="utf-8")
    with pytest.raises(BadMapping, match="mapping mapping.json is not UTF-8 JSON"):
        import_biller_file(path, "ELEC-SGCC", mapping_file)


def test_a_file_neither_utf8_nor_gb18030_is_refused(bank, tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(HEADER.encode() + b"\xff\xff\xff,1,2026-11-03,\n")
    with pytest.raises(BadLines, match="line 1: the file is not UTF-8 or GB18030 text"):
        import_biller_file(path, "ELEC-SGCC")


def test_the_cli_imports_once_and_lists_bad_lines_with_exit_2(bank, database_url, tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(HEADER + "1234567890,8850,2026-11-03,\n", encoding="utf-8")
    bad.write_text(HEADER + "1234567890,8850,2026-11-03,\n,1,2026-11-03,\n1234567890,1,2026-13-01,\n",
                   encoding="utf-8")
    runner = CliRunner()
    args = ["billers", "import", "--database-url", database_url, "--biller", "ELEC-SGCC"]
    first = runner.invoke(cli, [*args, str(good), "--by", "wang.li"])
    assert first.exit_code == 0, first.output
    assert first.output == "Imported file 1: 1 line of ELEC-SGCC, value dates 2026-11-03 to 2026-11-03.\n"
    again = runner.invoke(cli, [*args, str(good)])
    assert again.exit_code == 0 and "Already imported on" in again.output and "as file 1" in again.output
    refused = runner.invoke(cli, [*args, str(bad)])
    assert refused.exit_code == 2
    assert "line 3: reference is empty" in refused.output
    assert "line 4: value_date '2026-13-01' is not a real date in the form YYYY-MM-DD" in refused.output
    assert "Traceback" not in refused.output
    unknown = runner.invoke(cli, ["billers", "import", "--database-url", database_url, "--biller", "NOPE",
                                  str(good)])
    assert unknown.exit_code == 2 and "No biller 'NOPE'" in unknown.output
    database = connect_url(database_url)
    with database.connection_context():
        assert database.execute_sql("SELECT count(*) FROM biller_line").fetchone()[0] == 1


# -- the checks ---------------------------------------------------------------------------------------------
@dataclass
class Payment:
    station: str
    seq: int
    txn: str
    biller: str
    reference: str
    amount_fen: int
    value_date: str


def value_date(station_id: str, txn: str) -> str:
    """The bank's local date when it booked the entry: the value date a biller's file lists it under."""
    server_db()
    entry = Entry.get((Entry.station_id == station_id) & (Entry.txn == txn))
    timezone = ZoneInfo(station_policy(server_policy())["timezone"])
    return parse_utc(entry.received_at).astimezone(timezone).date().isoformat()


def pay_bills(st, bills, reverse=()):
    """Pay ``bills`` (biller, reference, yuan) in cash at ``st``, reverse those at the indexes in ``reverse``, sync."""
    with st.bound():
        agent, supervisor = open_counter(st)
        paid = [(biller, operations.pay_bill(st, agent, None, biller, reference, yuan, receipts.new_txn_id()))
                for biller, reference, yuan in bills]
        for index in reverse:
            operations.reverse(st, supervisor, paid[index][1].txn, receipts.new_txn_id(), "keyed wrong biller")
        assert sync_once(st).rejected == {}
    payments = []
    for biller, receipt in paid:
        server_db()
        entry = Entry.get((Entry.station_id == st.station_id) & (Entry.txn == receipt.txn))
        payments.append(Payment(st.station_id, entry.seq, receipt.txn, biller, _ref(entry), receipt.amount_fen,
                                value_date(st.station_id, receipt.txn)))
    return payments


def _ref(entry) -> str:
    from station.protocol.tokens import unverified_payload

    return unverified_payload(entry.token)["ref"]


@pytest.fixture
def history(server, tmp_path, clock):
    """ST-0001 pays three electricity bills (the last one reversed) and one water bill; all synced."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    payments = pay_bills(st, [("ELEC-SGCC", "1234567890", "88.50"), ("ELEC-SGCC", "9876543210", "120"),
                              ("WATER-COUNTY", "12345678", "30"), ("ELEC-SGCC", "1111111111", "10")], reverse=[3])
    return payments[:3], payments[3]


def line(payment: Payment, *, txn=True, amount_fen=None, reference=None) -> str:
    return (f"{reference or payment.reference},{amount_fen or payment.amount_fen},{payment.value_date},"
            f"{payment.txn if txn else ''}\n")


def write_file(tmp_path, name, *lines) -> str:
    path = tmp_path / name
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return str(path)


def biller_findings(scope=None):
    server_db()
    findings = find_discrepancies(db_proxy.obj, scope or Scope())
    return [d for d in findings.discrepancies if d.kind in BILLER_KINDS], findings.awaiting


def test_a_correct_file_gives_no_biller_discrepancy_and_the_rest_awaits_its_file(history, tmp_path):
    (bill, other_bill, water), reversed_bill = history
    server_db()
    # One line matched by the bank's txn, one by reference, date and amount; the reversed payment is not owed.
    import_biller_file(write_file(tmp_path, "sgcc.csv", line(bill), line(other_bill, txn=False)), "ELEC-SGCC")
    found, awaiting = biller_findings()
    assert found == []
    assert awaiting == [{"biller": "WATER-COUNTY", "value_date": water.value_date, "payments": 1,
                         "amount_fen": 3_000}]
    assert reversed_bill.amount_fen == 1_000


def test_without_any_file_every_payment_awaits_and_none_is_missing(history):
    (bill, other_bill, water), _ = history
    found, awaiting = biller_findings()
    assert found == []
    assert awaiting == [
        {"biller": "ELEC-SGCC", "value_date": bill.value_date, "payments": 2,
         "amount_fen": bill.amount_fen + other_bill.amount_fen},
        {"biller": "WATER-COUNTY", "value_date": water.value_date, "payments": 1, "amount_fen": 3_000}]
    # A period that ends before the payments were booked has nothing awaiting.
    _, awaiting = biller_findings(Scope(date_to="2000-01-01"))
    assert awaiting == []


def test_a_payment_left_out_of_the_file_is_missing(history, tmp_path):
    (bill, other_bill, _), _ = history
    server_db()
    import_biller_file(write_file(tmp_path, "sgcc.csv", line(bill)), "ELEC-SGCC")
    found, awaiting = biller_findings()
    assert [(d.kind, d.station, d.seq, d.txn, d.biller, d.reference, d.amount_fen, d.day) for d in found] == [
        ("biller_missing_in_file", "ST-0001", other_bill.seq, other_bill.txn, "ELEC-SGCC", "9876543210", 12_000,
         other_bill.value_date)]
    assert [row["biller"] for row in awaiting] == ["WATER-COUNTY"]


def test_a_line_the_bank_never_took_is_unexpected(history, tmp_path):
    (bill, other_bill, _), _ = history
    server_db()
    import_biller_file(write_file(tmp_path, "sgcc.csv", line(bill), line(other_bill, txn=False),
                                  line(other_bill, txn=False, reference="5555555555", amount_fen=4_000)),
                       "ELEC-SGCC")
    found, _ = biller_findings()
    assert [(d.kind, d.station, d.seq, d.txn, d.biller, d.reference, d.amount_fen, d.day, d.detail)
            for d in found] == [("biller_unexpected_in_file", None, None, None, "ELEC-SGCC", "5555555555", 4_000,
                                 other_bill.value_date, {"count": 1})]


def test_a_reversed_payment_in_the_file_is_unexpected(history, tmp_path):
    (bill, other_bill, _), reversed_bill = history
    server_db()
    import_biller_file(write_file(tmp_path, "sgcc.csv", line(bill), line(other_bill), line(reversed_bill)),
                       "ELEC-SGCC")
    found, _ = biller_findings()
    assert [(d.kind, d.txn, d.reference, d.amount_fen) for d in found] == [
        ("biller_unexpected_in_file", reversed_bill.txn, "1111111111", 1_000)]


def test_a_line_with_another_amount_is_an_amount_mismatch(history, tmp_path):
    (bill, other_bill, _), _ = history
    server_db()
    import_biller_file(write_file(tmp_path, "sgcc.csv", line(bill, amount_fen=8_800), line(other_bill)),
                       "ELEC-SGCC")
    found, _ = biller_findings()
    assert [(d.kind, d.station, d.seq, d.txn, d.biller, d.reference, d.amount_fen, d.expected_fen, d.day)
            for d in found] == [("biller_amount_mismatch", "ST-0001", bill.seq, bill.txn, "ELEC-SGCC", "1234567890",
                                 8_800, 8_850, bill.value_date)]


def test_a_payment_listed_in_two_files_is_one_duplicate(history, tmp_path):
    (bill, other_bill, _), _ = history
    server_db()
    import_biller_file(write_file(tmp_path, "a.csv", line(bill), line(other_bill, txn=False)), "ELEC-SGCC")
    import_biller_file(write_file(tmp_path, "b.csv", line(bill)), "ELEC-SGCC")
    found, _ = biller_findings()
    assert [(d.kind, d.station, d.txn, d.biller, d.reference, d.amount_fen, d.day, d.detail) for d in found] == [
        ("biller_duplicate", None, bill.txn, "ELEC-SGCC", "1234567890", 8_850, bill.value_date,
         {"count": 2, "payments": 1})]


def test_a_payment_listed_twice_once_with_another_amount_is_a_duplicate_and_a_mismatch(history, tmp_path):
    (bill, other_bill, _), _ = history
    server_db()
    import_biller_file(write_file(tmp_path, "a.csv", line(bill), line(bill, amount_fen=9_000), line(other_bill)),
                       "ELEC-SGCC")
    found, _ = biller_findings()
    assert sorted((d.kind, d.txn, d.amount_fen, d.expected_fen) for d in found) == [
        ("biller_amount_mismatch", bill.txn, 9_000, 8_850), ("biller_duplicate", bill.txn, 8_850, None)]


def test_a_line_without_txn_listed_twice_is_one_duplicate(history, tmp_path):
    (bill, other_bill, _), _ = history
    server_db()
    import_biller_file(write_file(tmp_path, "a.csv", line(bill), line(other_bill, txn=False),
                                  line(other_bill, txn=False)), "ELEC-SGCC")
    found, _ = biller_findings()
    assert [(d.kind, d.txn, d.reference, d.amount_fen, d.detail) for d in found] == [
        ("biller_duplicate", None, "9876543210", 12_000, {"count": 2, "payments": 1})]


def test_two_equal_payments_need_two_lines(server, tmp_path, clock):
    """Two top-ups of the same phone for the same amount the same day, listed without txn: one line leaves the
    later payment missing, two lines match both, a third line is a duplicate."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    first, second = pay_bills(st, [("MOBILE-CMCC", "13800138000", "50"), ("MOBILE-CMCC", "13800138000", "50")])
    server_db()
    import_biller_file(write_file(tmp_path, "one.csv", line(first, txn=False)), "MOBILE-CMCC")
    found, _ = biller_findings()
    assert [(d.kind, d.seq, d.txn) for d in found] == [("biller_missing_in_file", second.seq, second.txn)]
    server_db()
    import_biller_file(write_file(tmp_path, "two.csv", line(second, txn=False) + "\n"), "MOBILE-CMCC")
    assert biller_findings()[0] == []
    server_db()
    import_biller_file(write_file(tmp_path, "three.csv", line(second, txn=False) + "\n\n"), "MOBILE-CMCC")
    found, _ = biller_findings()
    assert [(d.kind, d.seq, d.detail) for d in found] == [("biller_duplicate", None, {"count": 3, "payments": 2})]


def test_a_run_limited_to_a_station_checks_its_payments_only(server, tmp_path, clock):
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    two = enrolled_station(server, tmp_path, "ST-0002", clock)
    (mine,) = pay_bills(one, [("ELEC-SGCC", "1234567890", "20")])
    (theirs,) = pay_bills(two, [("ELEC-SGCC", "2222222222", "30")])
    server_db()
    import_biller_file(write_file(tmp_path, "sgcc.csv", line(mine, amount_fen=1_999),
                                  line(mine, txn=False, reference="5555555555")), "ELEC-SGCC")
    found, _ = biller_findings()
    assert sorted((d.kind, d.station) for d in found) == [
        ("biller_amount_mismatch", "ST-0001"), ("biller_missing_in_file", "ST-0002"),
        ("biller_unexpected_in_file", None)]
    found, _ = biller_findings(Scope(stations=("ST-0002",)))
    assert [(d.kind, d.station, d.txn) for d in found] == [("biller_missing_in_file", "ST-0002", theirs.txn)]
