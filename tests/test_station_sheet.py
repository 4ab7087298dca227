"""`sync-server station bulk-add`: the printed enrollment sheet (HTML, PDF, a PNG per station) for a CSV of
stations, whose QR codes decode (zxing-cpp) to payloads that really enroll; re-runs; bad CSVs refused whole.

The PDF's images are taken out with pypdf and decoded as they are (the PDF draws each QR as one image, so one
image per station is what "one QR per station" means); its text is read back with pypdf too.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta

import pytest
import zxingcpp
from click.testing import CliRunner
from PIL import Image
from pypdf import PdfReader
from sync_support import server_db

from station.protocol import enrollment_qr
from station.sync import EnrollError, enroll_station
from sync_server import database_for
from sync_server.admin import revoke_station
from sync_server.cli import cli as server_cli
from sync_server.db import EnrollmentCode, Station, StationEvent, db_proxy, migrate_database
from sync_server.sheets import bulk_add, parse_stations_csv

HEADER = "id,name,village,agent\n"
STATIONS = (HEADER
            + "ST-0101,刘家村小卖部,刘家村,刘秀英\n"
            + "ST-0102,\"Zhang's shop, by the bridge\",张庄,张伟\n"
            + "\n"
            + "ST-0103,王村便民服务点,王村,\n"
            + "ＳＴ－０１０４,李家湾综合服务站,李家湾,李建国,,\n")
IDS = ["ST-0101", "ST-0102", "ST-0103", "ST-0104"]
NAMES = ["刘家村小卖部", "Zhang's shop, by the bridge", "王村便民服务点", "李家湾综合服务站"]


@pytest.fixture(autouse=True)
def close_connection():
    """The test thread's connection (``counts``, ``bulk_add``) is closed before the next test drops the schema."""
    yield
    if db_proxy.obj is not None and not db_proxy.obj.is_closed():
        db_proxy.obj.close()


@pytest.fixture
def migrated(database_url):
    database = database_for(database_url)
    database.connect(reuse_if_open=True)
    migrate_database(database)
    return database


def bulk(database_url, csv_path, out, server_url, *extra):
    return CliRunner().invoke(server_cli, ["station", "bulk-add", str(csv_path), "--out", str(out),
                                           "--server-url", server_url, "--database-url", database_url,
                                           "--by", "county branch", *extra], catch_exceptions=False)


def decode(image: Image.Image) -> str:
    # QR codes only: a 1-D reader (ITF) now and then "finds" a barcode in a row of QR modules.
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    assert [barcode.format for barcode in found] == [zxingcpp.BarcodeFormat.QRCode]
    return found[0].text


def png_payloads(out, ids) -> dict[str, enrollment_qr.EnrollmentTicket]:
    tickets = {}
    for station_id in ids:
        path = out / f"{station_id}.png"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        tickets[station_id] = enrollment_qr.parse(decode(Image.open(path)))
    return tickets


def html_payloads(out) -> dict[str, str]:
    html = (out / "enrollment-sheet.html").read_text(encoding="utf-8")
    cards = re.findall(r'<article class="card" data-station="([^"]+)">\s*<img class="qr" alt="[^"]*" '
                       r'src="data:image/png;base64,([^"]+)">', html)
    return {station_id: decode(Image.open(io.BytesIO(base64.b64decode(data)))) for station_id, data in cards}


def pdf_contents(out) -> tuple[list[str], str]:
    reader = PdfReader(out / "enrollment-sheet.pdf")
    payloads = [decode(image.image) for page in reader.pages for image in page.images]
    return payloads, "\n".join(page.extract_text() for page in reader.pages)


def summary(output: str) -> dict[str, str]:
    """station id -> status, from the summary table."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(
        r"^(ST-\d{4})\s+(created|new code|code still valid|already enrolled|revoked)\s", output, re.M)}


def counts():
    server_db()
    return Station.select().count(), EnrollmentCode.select().count()


def test_sheet_qr_codes_decode_and_enroll_on_loopback(server, tmp_path, clock):
    csv_path = tmp_path / "stations.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + STATIONS.encode("utf-8"))  # as Excel saves "CSV UTF-8", with a BOM
    out = tmp_path / "sheet"
    result = bulk(server.database_url, csv_path, out, server.url + "/")
    assert result.exit_code == 0, result.output
    assert summary(result.output) == dict.fromkeys(IDS, "created")
    assert "Read " in result.output and " as UTF-8. 4 station(s) on the sheet." in result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700

    server_db()
    assert [(s.station_id, s.name, s.village, s.agent, s.status) for s in Station.select().where(
        Station.station_id.in_(IDS)).order_by(Station.station_id)] == [
        ("ST-0101", "刘家村小卖部", "刘家村", "刘秀英", "pending"),
        ("ST-0102", "Zhang's shop, by the bridge", "张庄", "张伟", "pending"),
        ("ST-0103", "王村便民服务点", "王村", None, "pending"),
        ("ST-0104", "李家湾综合服务站", "李家湾", "李建国", "pending")]
    assert StationEvent.select().where(StationEvent.station_id == "ST-0101").count() == 2  # registered, code
    assert {e.by for e in StationEvent.select()} == {"county branch"}

    tickets = png_payloads(out, IDS)
    assert {t.station_id for t in tickets.values()} == set(IDS)
    assert all(tickets[i].station_id == i and tickets[i].server == server.url for i in IDS)
    payloads = {i: enrollment_qr.make_payload(server.url, i, tickets[i].code) for i in IDS}
    assert html_payloads(out) == payloads
    html = (out / "enrollment-sheet.html").read_text(encoding="utf-8")
    assert "Zhang&#39;s shop, by the bridge" in html and "刘秀英" in html
    pdf_payloads, pdf_text = pdf_contents(out)
    assert sorted(pdf_payloads) == sorted(payloads.values())  # one QR per station, no other image
    for station_id, name in zip(IDS, NAMES, strict=True):
        assert station_id in pdf_text and name in pdf_text and tickets[station_id].code in pdf_text
    assert server.url in pdf_text.replace("\n", "")
    codes = json.loads((out / "enrollment-codes.json").read_text(encoding="utf-8"))["codes"]
    assert codes == {i: tickets[i].code for i in IDS}

    # What the technician does: the station scans the QR and enrolls with what it carries.
    for station_id in IDS:
        st = enroll_station(tmp_path / "devices" / station_id, tickets[station_id].server, tickets[station_id].code,
                            clock=clock)
        assert st.station_id == station_id
    server_db()
    assert {s.station_id: s.status for s in Station.select().where(Station.station_id.in_(IDS))} == dict.fromkeys(
        IDS, "active")


def test_rerun_creates_nothing_twice_and_reissue_ends_the_old_codes(server, tmp_path, clock):
    csv_path = tmp_path / "stations.csv"
    csv_path.write_text(STATIONS, encoding="utf-8")
    out = tmp_path / "sheet"
    assert bulk(server.database_url, csv_path, out, server.url).exit_code == 0
    first = png_payloads(out, IDS)
    enroll_station(tmp_path / "ST-0101", server.url, first["ST-0101"].code, clock=clock)
    server_db()
    revoke_station("ST-0104")
    before = counts()

    # The branch renames two stations and runs the same file again.
    csv_path.write_text(STATIONS.replace("刘家村小卖部", "刘家村超市").replace("王村便民服务点", "王村服务站"),
                        encoding="utf-8")
    result = bulk(server.database_url, csv_path, out, server.url)
    assert result.exit_code == 0, result.output
    assert summary(result.output) == {"ST-0101": "already enrolled", "ST-0102": "code still valid",
                                      "ST-0103": "code still valid", "ST-0104": "revoked"}
    assert "the CSV differs from the bank's record in name: not changed" in result.output
    assert "name updated" in result.output
    assert counts() == before
    assert Station.get_by_id("ST-0101").name == "刘家村小卖部"
    assert Station.get_by_id("ST-0103").name == "王村服务站"
    # Still valid codes are printed again (from DIR), the same codes: the sheet carries the pending two only.
    again = png_payloads(out, ["ST-0102", "ST-0103"])
    assert {i: t.code for i, t in again.items()} == {i: first[i].code for i in again}
    assert set(html_payloads(out)) == {"ST-0102", "ST-0103"}
    assert "王村服务站" in pdf_contents(out)[1]

    # Without the codes file the bank cannot print them again (it keeps hashes): it says so, and keeps the sheet.
    (out / "enrollment-codes.json").unlink()
    (out / "ST-0103.png").unlink()
    sheet_before = (out / "enrollment-sheet.pdf").read_bytes()
    result = bulk(server.database_url, csv_path, out, server.url)
    assert result.exit_code == 0, result.output
    assert summary(result.output)["ST-0102"] == summary(result.output)["ST-0103"] == "code still valid"
    assert re.search(r"ST-0102\.png from the earlier run, or run with --reissue", result.output)
    assert re.search(r"ST-0103\.png is missing: run with --reissue for a new code", result.output)
    assert "no sheet written" in result.output
    assert (out / "enrollment-sheet.pdf").read_bytes() == sheet_before
    assert counts() == before

    result = bulk(server.database_url, csv_path, out, server.url, "--reissue")
    assert result.exit_code == 0, result.output
    assert summary(result.output) == {"ST-0101": "already enrolled", "ST-0102": "new code", "ST-0103": "new code",
                                      "ST-0104": "revoked"}
    assert "1 older code(s) no longer valid" in result.output
    assert counts() == (before[0], before[1] + 2)
    reissued = png_payloads(out, ["ST-0102", "ST-0103"])
    assert reissued["ST-0102"].code != first["ST-0102"].code
    with pytest.raises(EnrollError, match="enrollment-code-expired"):
        enroll_station(tmp_path / "old-code", server.url, first["ST-0102"].code, clock=clock)
    assert enroll_station(tmp_path / "new-code", server.url, reissued["ST-0102"].code,
                          clock=clock).station_id == "ST-0102"
    with pytest.raises(EnrollError, match="enrollment-code-used"):
        enroll_station(tmp_path / "used-code", server.url, first["ST-0101"].code, clock=clock)


def test_an_expired_code_is_replaced_and_an_earlier_sheet_is_kept(migrated, tmp_path):
    rows, _ = parse_stations_csv(STATIONS.encode("utf-8"))
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    out = tmp_path / "sheet"
    first = bulk_add(rows[:2], "https://sync.bank.example", out, by="ops", now=start)
    assert [o.status for o in first.outcomes] == ["created", "created"]
    assert first.outcomes[0].valid_until == start + timedelta(days=7)
    assert first.local(first.outcomes[0].valid_until) == "2026-11-09 09:00 (UTC+08:00)"  # the policy's timezone
    (out / "enrollment-codes.json").unlink()

    later = bulk_add(rows, "https://sync.bank.example", out, by="ops", now=start + timedelta(days=8))
    assert [(o.station_id, o.status, o.on_sheet) for o in later.outcomes] == [
        ("ST-0101", "new code", True), ("ST-0102", "new code", True), ("ST-0103", "created", True),
        ("ST-0104", "created", True)]
    assert "no valid code left (the last one expired)" in later.outcomes[0].notes

    # ST-0103's code is still valid but no longer printable: the run that prints ST-0105 keeps the earlier sheet.
    (out / "enrollment-codes.json").unlink()
    extra = rows + parse_stations_csv((HEADER + "ST-0105,新站,新村,新人\n").encode("utf-8"))[0]
    kept = bulk_add(extra, "https://sync.bank.example", out, by="ops", now=start + timedelta(days=9))
    assert [o.status for o in kept.outcomes] == ["code still valid"] * 4 + ["created"]
    assert kept.messages == [f"The earlier sheet holds codes that cannot be printed again: kept as "
                             f"{out / 'enrollment-sheet-before-20261111T010000Z'}.html and .pdf."]
    assert html_payloads(out).keys() == {"ST-0105"}
    earlier = (out / "enrollment-sheet-before-20261111T010000Z.html").read_text(encoding="utf-8")
    assert all(f'data-station="{i}"' in earlier for i in IDS)


def test_a_gb18030_file_is_read(database_url, tmp_path):
    csv_path = tmp_path / "stations.csv"
    csv_path.write_bytes((HEADER + "ST-0201,赵家庄小卖部,赵家庄,赵敏\n").encode("gb18030"))
    refused = bulk(database_url, csv_path, tmp_path / "out", "https://sync.bank.example")
    assert refused.exit_code == 1 and "Run `sync-server init-db`" in refused.output  # an empty database
    assert CliRunner().invoke(server_cli, ["init-db", "--database-url", database_url]).exit_code == 0
    csv_path = tmp_path / "stations.csv"
    csv_path.write_bytes((HEADER + "ST-0201,赵家庄小卖部,赵家庄,赵敏\n").encode("gb18030"))
    result = bulk(database_url, csv_path, tmp_path / "out", "https://sync.bank.example")
    assert result.exit_code == 0, result.output
    assert "as GB18030" in result.output
    server_db()
    assert Station.get_by_id("ST-0201").name == "赵家庄小卖部"


BAD_FILES = [
    pytest.param(b"station,name,village,agent\nST-0001,A,B,C\n",
                 ["line 1: the first line must be the header id,name,village,agent "
                  "(found station,name,village,agent)"], id="wrong-header"),
    pytest.param(b"", ["line 1: the file is empty: the first line must be the header id,name,village,agent"],
                 id="empty"),
    pytest.param(HEADER.encode(), ["line 2: no stations: the file has only its header"], id="header-only"),
    pytest.param((HEADER + "ST-0001,甲,村,人\nST 0002,乙,村,人\nST-0003,丙,村,人,多余\n").encode(),
                 ["line 3: id 'ST 0002': a station id is 1 to 40 letters, digits, '-' or '_', e.g. ST-0001",
                  "line 4: 1 more value(s) than the header has columns"], id="bad-id-and-extra-value"),
    pytest.param((HEADER + "ST-0001,甲,村,人\n\nst-0001,乙,村,人\n,丙,村,人\n").encode(),
                 ["line 4: station st-0001 is already on line 2", "line 5: id is empty"], id="duplicate-id"),
    pytest.param((HEADER + "ST-0001,Shop\x07,村,人\nST-0002,,村,人\nST-0003,丙,村\u200b,人\n").encode(),
                 ["line 2: name holds a character that cannot be printed (U+0007 at position 5)",
                  "line 3: name is empty",
                  "line 4: village holds a character that cannot be printed (U+200B at position 2)"],
                 id="control-character-and-empty-name"),
    pytest.param((HEADER + "ST-0001," + "长" * 61 + ",村,人\n").encode(),
                 ["line 2: name is longer than 60 characters"], id="too-long"),
    pytest.param((HEADER + "ST-0001,Caf\xe9,Village,Agent\n").encode("latin-1"),
                 ["line 2: the file is neither UTF-8 nor GB18030 (byte 0xE9 cannot be read): save it from the "
                  "spreadsheet as \"CSV UTF-8\""], id="latin-1"),
    pytest.param((HEADER + "ST-0001,甲,村,人\n").encode("utf-16"),
                 ["line 1: the file is UTF-16 or not text at all: save it from the spreadsheet as \"CSV UTF-8\""],
                 id="utf-16"),
    pytest.param((HEADER + 'ST-0001,"甲,村,人\n').encode(),
                 ["line 2: the CSV is damaged here (unexpected end of data)"], id="open-quote"),
]


@pytest.mark.parametrize(("content", "errors"), BAD_FILES)
def test_a_bad_file_is_refused_whole_with_every_bad_line(database_url, tmp_path, content, errors):
    assert CliRunner().invoke(server_cli, ["init-db", "--database-url", database_url]).exit_code == 0
    csv_path = tmp_path / "stations.csv"
    csv_path.write_bytes(content)
    result = bulk(database_url, csv_path, tmp_path / "out", "https://sync.bank.example")
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Error: nothing imported; fix these rows:", *errors]
    assert counts() == (0, 0)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "exit_code", "message"), [
    (["--server-url", "ftp://sync.bank.example"], 1,
     "Error: --server-url: the server address must look like https://sync.bank.example"),
    ([], 2, "Give --server-url (or set SYNC_SERVER_PUBLIC_URL)"),
])
def test_the_server_url_is_required_and_checked(database_url, tmp_path, args, exit_code, message):
    assert CliRunner().invoke(server_cli, ["init-db", "--database-url", database_url]).exit_code == 0
    csv_path = tmp_path / "stations.csv"
    csv_path.write_text(STATIONS, encoding="utf-8")
    result = CliRunner(env={"SYNC_SERVER_PUBLIC_URL": None}).invoke(server_cli, [
        "station", "bulk-add", str(csv_path), "--out", str(tmp_path / "out"), "--database-url", database_url,
        *args])
    assert result.exit_code == exit_code
    assert message in result.output
    assert counts() == (0, 0)


def test_station_add_prints_the_payload_and_writes_the_qr(database_url, tmp_path):
    assert CliRunner().invoke(server_cli, ["init-db", "--database-url", database_url]).exit_code == 0
    qr = tmp_path / "ST-0301.png"
    result = CliRunner(env={"SYNC_SERVER_PUBLIC_URL": "https://sync.bank.example"}).invoke(server_cli, [
        "station", "add", "ST-0301", "--name", "孙家铺", "--village", "孙家村", "--agent", "孙丽",
        "--qr", str(qr), "--database-url", database_url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    *_, payload, code = result.output.splitlines()
    ticket = enrollment_qr.parse(payload)
    assert (ticket.station_id, ticket.server, ticket.code) == ("ST-0301", "https://sync.bank.example", code)
    assert decode(Image.open(qr)) == payload
    server_db()
    station = Station.get_by_id("ST-0301")
    assert (station.name, station.village, station.agent) == ("孙家铺", "孙家村", "孙丽")

    plain = CliRunner(env={"SYNC_SERVER_PUBLIC_URL": None}).invoke(server_cli, [
        "station", "add", "ST-0302", "--name", "Shop", "--database-url", database_url])
    assert plain.exit_code == 0 and len(plain.output.splitlines()) == 2
    assert enrollment_qr.parse(plain.output.splitlines()[-1]).server is None  # the bare code, as before

    refused = CliRunner(env={"SYNC_SERVER_PUBLIC_URL": None}).invoke(server_cli, [
        "station", "add", "ST-0303", "--name", "Shop", "--qr", str(tmp_path / "x.png"),
        "--database-url", database_url])
    assert refused.exit_code == 2 and "--qr needs --server-url" in refused.output
    bad = CliRunner().invoke(server_cli, ["station", "add", "ST-0304", "--name", "Shop\x1b[31m",
                                          "--database-url", database_url])
    assert bad.exit_code == 1
    assert "Error: Name holds a character that cannot be printed (U+001B at position 5)." in bad.output
    assert counts() == (2, 2)


def test_bulk_add_puts_every_station_of_the_csv_in_a_county(migrated, database_url, tmp_path):
    csv_path = tmp_path / "stations.csv"
    csv_path.write_text(STATIONS, encoding="utf-8")
    result = bulk(database_url, csv_path, tmp_path / "out", "https://sync.bank.example", "--county", "来凤县")
    assert result.exit_code == 0, result.output
    server_db()
    assert {station.station_id: station.county for station in Station.select()} == dict.fromkeys(IDS, "来凤县")
    result = bulk(database_url, csv_path, tmp_path / "out", "https://sync.bank.example", "--county", "x" * 61)
    assert result.exit_code == 1 and "--county: county is longer than 60 characters" in result.output
