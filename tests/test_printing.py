"""Printed receipts: the ESC/POS bytes a 58 mm printer gets, checked on python-escpos's Dummy printer."""

from __future__ import annotations

import dataclasses
import errno
import json
import socket
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import zxingcpp
from escpos.printer import Dummy
from PIL import Image, ImageOps

from station import agents, business_day, operations, printing, receipt_layout, receipts
from station import printer as transport
from station.db import Customer
from station.feedback import record_feedback
from station.printer import FEED_AND_CUT
from station.receipt_layout import KANJI_OFF, KANJI_ON, PAPER_DOTS, ReceiptSheet

RASTER = b"\x1dv0"  # GS v 0: raster bit image


def gb(text: str) -> bytes:
    return text.encode("gb18030")


def read_qr_codes(image: Image.Image) -> list:
    """The QR codes zxing finds in ``image``: only QR, as a receipt prints no other symbol (a 1D reader can
    mistake a run of text for a barcode, which made these tests flaky)."""
    return zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)


def raster_images(output: bytes) -> list[Image.Image]:
    """The GS v 0 images in ``output``, as the printer would put them on paper (black = printed dot)."""
    images, start = [], 0
    while (start := output.find(RASTER, start)) != -1:
        width_bytes = int.from_bytes(output[start + 4:start + 6], "little")
        height = int.from_bytes(output[start + 6:start + 8], "little")
        data = output[start + 8:start + 8 + width_bytes * height]
        # In ESC/POS raster data a 1 bit is a printed (black) dot; in PIL's mode "1" a 1 bit is white.
        image = Image.frombytes("1", (width_bytes * 8, height), data)
        images.append(ImageOps.invert(image.convert("L")))
        start += 8 + len(data)
    return images


def in_chinese_mode(output: bytes, needle: bytes) -> bool:
    """Every occurrence of ``needle`` sits after an FS & with no FS . in between."""
    start = 0
    found = False
    while (at := output.find(needle, start)) != -1:
        found = True
        if output.rfind(KANJI_ON, 0, at) < output.rfind(KANJI_OFF, 0, at) or output.rfind(KANJI_ON, 0, at) == -1:
            return False
        start = at + 1
    return found


@pytest.fixture
def customer_auth(station, agent):
    customer = Customer.select().order_by(Customer.id).first()
    return agents.authenticate_customer(station, agent, customer, "123456")


@pytest.fixture
def withdrawal(open_drawer, agent, customer_auth):
    return operations.withdraw_cash(open_drawer, agent, customer_auth, "500", receipts.new_txn_id())


@pytest.fixture
def dummy(station):
    station.config["printer"] = {"kind": "dummy"}
    return station


class StatusPrinter(Dummy):
    """A Dummy that answers DLE EOT status queries as a USB or serial printer does."""

    def __init__(self, paper: bytes = b"\x12", online: bytes = b"\x12", fail_write: OSError | None = None):
        super().__init__(profile=transport.DEFAULT_PROFILE)
        self.replies = {b"\x10\x04\x04": paper, b"\x10\x04\x01": online}
        self.fail_write = fail_write

    def _raw(self, msg: bytes) -> None:
        if self.fail_write is not None and msg not in self.replies:
            raise self.fail_write
        super()._raw(msg)

    def _read(self) -> bytes:
        return self.replies[self._output_list[-1]]


def use_printer(monkeypatch, station, printer) -> None:
    station.config["printer"] = {"kind": "dummy"}
    monkeypatch.setattr(transport, "_make_printer", lambda st, settings: printer)


# -- what goes on the paper -------------------------------------------------------------------------------
def test_receipt_is_gb18030_in_chinese_mode_with_raster_qr_and_a_cut_per_copy(dummy, withdrawal):
    output = printing.print_receipt(dummy, withdrawal).output

    for text in ("助农服务点回单", "客户联 CUSTOMER COPY", "留存联 AGENT COPY", "取款 Withdrawal", "伍佰元整",
                 "金额 Amount: 500.00 元", "已离线记录，等待银行处理", "代理人 Agent: A01 田师傅 Tian",
                 "服务点 Station: ST-0001", "账户 Account: " + withdrawal.account_masked):
        assert in_chinese_mode(output, gb(text)), text
    # 07:40 in Beijing: the receipt shows local time, not the UTC the journal keeps.
    assert gb("时间 Time: 2026-11-03 07:40:00") in output
    assert gb(f"流水号 Seq: {withdrawal.seq}") in output
    assert gb(withdrawal.txn) in output
    assert output.count(RASTER) == 2
    assert output.count(FEED_AND_CUT) == 2
    assert output.endswith(FEED_AND_CUT)
    assert gb("重印") not in output
    # The agent keeps the signed copy; the customer's has no signature line.
    customer_copy, agent_copy = output.split(FEED_AND_CUT)[:2]
    assert gb("客户签名") in agent_copy and gb("客户签名") not in customer_copy


def test_reprint_is_marked_duplicate_on_both_copies(dummy, withdrawal):
    output = printing.print_receipt(dummy, withdrawal, duplicate=True).output

    for copy in output.split(FEED_AND_CUT)[:2]:
        assert in_chinese_mode(copy, gb("重印 DUPLICATE"))
        assert gb("*** 重印 DUPLICATE ***") in copy


def test_transfer_receipt_says_it_waits_for_the_bank(dummy, open_drawer, agent, customer_auth):
    receipt = operations.transfer(open_drawer, agent, customer_auth, "6222020200112233445", "欧阳娜娜", "200",
                                  receipts.new_txn_id(), fraud_warning_confirmed=True)

    output = printing.print_receipt(dummy, receipt).output

    assert gb("已记录，待银行执行转账") in output
    assert gb("收款人 Payee: 欧阳娜娜") in output
    assert gb("6222 **** 3445") in output and gb("6222020200112233445") not in output
    assert gb("手续费 Fee: 2.00 元") in output


@pytest.mark.parametrize("payee_name", ["欧阳娜娜", "欧阳" * 15])
def test_qr_of_a_real_token_fits_384_dots_and_decodes_back_to_the_token(
    dummy, open_drawer, agent, customer_auth, payee_name
):
    # A transfer to a 30-character Chinese name is the longest token a customer operation makes today.
    receipt = operations.transfer(open_drawer, agent, customer_auth, "6222020200112233445", payee_name, "200",
                                  receipts.new_txn_id(), fraud_warning_confirmed=True)
    qr = receipt_layout.receipt_qr_image(receipt.token)
    assert qr.width == qr.height <= PAPER_DOTS
    assert qr.width % receipt_layout.QR_SCALE == 0

    output = printing.print_receipt(dummy, receipt).output

    images = raster_images(output)
    assert len(images) == 2
    for image in images:
        assert image.width == PAPER_DOTS
        decoded = read_qr_codes(image)
        assert [result.text for result in decoded] == [receipt.token]


def test_token_too_long_for_the_paper_prints_without_qr_and_says_so(dummy, withdrawal, caplog):
    head, payload, signature = withdrawal.token.split(".")
    too_long = dataclasses.replace(withdrawal, token=f"{head}.{payload}.{signature * 20}")
    with pytest.raises(receipt_layout.QrTooLarge):
        receipt_layout.receipt_qr_image(too_long.token)

    output = printing.print_receipt(dummy, too_long).output

    assert RASTER not in output
    assert gb("二维码过长，请在服务点屏幕上核验") in output
    assert output.count(FEED_AND_CUT) == 2
    assert "printed without its QR code" in caplog.text


def test_printed_lines_fit_the_paper(dummy, withdrawal):
    output = printing.print_receipt(dummy, withdrawal, duplicate=True).output
    text = b"".join(chunk.split(KANJI_OFF)[0] for chunk in output.split(KANJI_ON)[1:]).decode("gb18030")
    for line in text.splitlines():
        limit = 42 if line == withdrawal.txn else receipt_layout.LINE_COLUMNS  # the txn line is in font B
        assert receipt_layout._columns(line) <= limit, line


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("", [""]),
        ("短", ["短"]),
        ("一二三四五六七八九十一二三四五六七", ["一二三四五六七八九十一二三四五六", "七"]),
        ("Recorded offline, waiting for the bank", ["Recorded offline, waiting for", "the bank"]),
        ("x" * 33, ["x" * 32, "x"]),
    ],
)
def test_wrap_counts_a_chinese_character_as_two_columns(text, lines):
    assert receipt_layout.wrap(text) == lines


def test_render_receipt_refuses_an_unknown_copy(station, withdrawal):
    with pytest.raises(ValueError, match="copy must be one of"):
        receipt_layout.render_receipt(Dummy(), printing.receipt_sheet(station, withdrawal), copy="bank")


# -- the layout alone: data in, bytes out, no station and no database -------------------------------------
def transfer_sheet(payee_name: str, **details) -> ReceiptSheet:
    receipt = receipts.Receipt(
        seq=21, txn="5f0c6a3e-8a4b-4c52-9d7e-0b1f2a3c4d5e", type="transfer", token="eyJhbGciOiJFZDI1NTE5In0.e30.c2ln",
        amount_fen=20000, fee_fen=200, status="recorded", account_masked="6222 **** 0001",
        recorded_at=datetime(2026, 11, 2, 23, 40, tzinfo=UTC),
        details={"payee_name": payee_name, "payee_account": "6222020200112233445", **details})
    return ReceiptSheet(receipt=receipt, station_id="ST-0009", local_time=datetime(2026, 11, 3, 7, 40),
                        agent="A01 田师傅 Tian", payee_account="6222 **** 3445")


def test_the_layout_loads_no_database_nor_the_services_in_a_fresh_interpreter():
    probe = "import json, sys, station.receipt_layout; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    loaded = set(json.loads(result.stdout))
    assert "escpos" in loaded and "station.receipt_layout" in loaded
    assert not {"peewee", "flask", "station.db", "station.services", "station.context", "station.printer"} & loaded


def text_sent(output: bytes) -> bytes:
    """The bytes sent inside the printer's Chinese mode: every text line of the job."""
    return b"".join(chunk.split(KANJI_OFF)[0] for chunk in output.split(KANJI_ON)[1:])


def test_layout_prints_what_the_sheet_says_without_a_database():
    printer = Dummy(profile=transport.DEFAULT_PROFILE)

    receipt_layout.render_receipt(printer, transfer_sheet("欧阳娜娜"), copy="customer")

    for text in ("服务点 Station: ST-0009", "代理人 Agent: A01 田师傅 Tian", "时间 Time: 2026-11-03 07:40:00",
                 "收款人 Payee: 欧阳娜娜", "  6222 **** 3445", "已记录，待银行执行转账",
                 "金额 Amount: 200.00 元", "贰佰元整"):
        assert in_chinese_mode(printer.output, gb(text)), text
    assert gb("6222020200112233445") not in printer.output


# ESC @ (reset), FS . (leave Chinese mode), a line break, a bidi override, a lone surrogate (not encodable).
@pytest.mark.parametrize("payee_name", ["欧阳\x1b@娜娜", "欧阳\x1c.娜娜", "欧阳\n娜娜", "欧阳\u202e娜娜",
                                        "欧阳\ud800娜娜"])
def test_control_characters_in_a_payee_name_never_reach_the_printer(payee_name):
    printer = Dummy(profile=transport.DEFAULT_PROFILE)

    receipt_layout.render_receipt(printer, transfer_sheet(payee_name), copy="customer")

    text = text_sent(printer.output)
    assert set(text) & set(range(0x20)) <= {ord("\n")}  # GB18030 uses no byte below 0x30 past the first
    assert gb("收款人 Payee: 欧阳?") in text
    assert "娜娜" in text.decode("gb18030")


def test_a_reversal_prints_its_reason_cleared_of_control_characters(dummy, agent, supervisor):
    business_day.open_day(dummy, agent, {"10000": 300})
    bill = operations.pay_bill(dummy, agent, None, "ELEC-SGCC", "1234567890", "88.50", receipts.new_txn_id())
    reversal = operations.reverse(dummy, supervisor, bill.txn, receipts.new_txn_id(), "wrong meter")
    tampered = dataclasses.replace(reversal, details={**reversal.details, "reason": "wrong\x1b@\x1dV\x00meter"})

    output = printing.print_receipt(dummy, tampered).output

    assert in_chinese_mode(output, gb("原因 Reason: wrong?@?V?meter"))
    assert set(text_sent(output)) & set(range(0x20)) <= {ord("\n")}


# -- the chart --------------------------------------------------------------------------------------------
def test_busy_hours_chart_prints_a_row_per_hour_under_a_chinese_heading(dummy):
    hours = [(7, 0), (8, 12), (9, 16), (10, 5), (11, 0)]

    output = printing.print_busy_hours(dummy, date(2026, 11, 3), hours).output

    assert KANJI_ON + gb("今日各时段客流\nCustomers by hour\nST-0001  2026-11-03\n") in output
    assert gb("最忙 Busiest: 09:00-10:00") in output
    (image,) = raster_images(output)
    assert image.size == (PAPER_DOTS, receipt_layout.CHART_ROW_DOTS * len(hours) + 4)
    assert output.endswith(FEED_AND_CUT)

    def bar_dots(row: int) -> int:
        """Black dots along the middle of one hour's row, right of the hour label."""
        y = row * receipt_layout.CHART_ROW_DOTS + receipt_layout.CHART_ROW_DOTS // 2
        return sum(1 for x in range(40, PAPER_DOTS) if image.getpixel((x, y)) == 0)

    # The busiest hour's bar is the longest; an hour without visits has none but its "0".
    assert bar_dots(2) > bar_dots(1) > bar_dots(3) > bar_dots(0)
    assert bar_dots(0) < 20


def test_a_quiet_day_prints_no_busiest_hour(dummy):
    output = printing.print_busy_hours(dummy, date(2026, 11, 3), [(8, 0), (9, 0)]).output
    assert gb("Busiest") not in output and output.endswith(FEED_AND_CUT)


# -- printer set-up and failures --------------------------------------------------------------------------
def test_file_printer_appends_each_job_to_its_path(station, withdrawal):
    station.config["printer"] = {"kind": "file", "path": "receipts.escpos"}
    spool = station.data_dir / "receipts.escpos"

    assert printing.print_receipt(station, withdrawal).kind == "file"
    first = spool.read_bytes()
    printing.print_receipt(station, withdrawal, duplicate=True)

    assert first.count(RASTER) == 2 and gb("助农服务点回单") in first
    assert spool.read_bytes().startswith(first)
    assert spool.read_bytes().count(FEED_AND_CUT) == 4


def test_no_cutter_feeds_past_the_tear_bar_instead(station, withdrawal):
    station.config["printer"] = {"kind": "dummy", "cut": False}
    output = printing.print_receipt(station, withdrawal).output
    assert FEED_AND_CUT not in output
    assert output.endswith(b"\x1bd\x04")


@pytest.mark.skipif(Path("/dev/usb/lp0").exists(), reason="a real receipt printer is attached")
def test_default_printer_missing_is_printer_unavailable(station, withdrawal):
    assert "printer" not in station.config
    with pytest.raises(transport.PrinterUnavailable) as caught:
        printing.print_receipt(station, withdrawal)
    assert caught.value.message == (
        "The printer is not connected or switched off. The operation is recorded; print again when it is ready."
    )


def test_missing_device_node_is_not_created(station, withdrawal, tmp_path):
    station.config["printer"] = {"kind": "file", "path": "/dev/usb/lp-station-kit-test"}
    with pytest.raises(transport.PrinterUnavailable):
        printing.print_receipt(station, withdrawal)
    assert not Path("/dev/usb/lp-station-kit-test").exists()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "config",
    [
        {"kind": "network", "host": "127.0.0.1", "port": closed_port(), "timeout": 2},
        {"kind": "serial", "device": "/dev/ttyStationKitNoSuchPort"},
        {"kind": "usb", "vendor_id": "0x0416", "product_id": "0x5011"},
        {"kind": "file", "path": "/nonexistent-folder/receipts.escpos"},
    ],
    ids=["network", "serial", "usb", "file"],
)
def test_unreachable_printer_of_each_kind_is_printer_unavailable(station, withdrawal, config, caplog):
    station.config["printer"] = config
    with pytest.raises(transport.PrinterUnavailable) as caught:
        printing.print_receipt(station, withdrawal)
    assert caught.value.detail
    assert "printer_unavailable" in caplog.text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("usb", "The printer settings of this station are not valid (printer must be an object). Ask the "
                "technician to fix them; the operation is recorded."),
        ({"kind": "bluetooth"}, "The printer settings of this station are not valid (kind must be one of usb, "
                                "serial, network, file, dummy). Ask the technician to fix them; the operation "
                                "is recorded."),
        ({"kind": "usb", "vendor_id": "0x0416"}, "The printer settings of this station are not valid (a usb "
                                                 "printer needs product_id). Ask the technician to fix them; the "
                                                 "operation is recorded."),
        ({"kind": "network"}, "The printer settings of this station are not valid (a network printer needs "
                              "host). Ask the technician to fix them; the operation is recorded."),
        ({"kind": "usb", "vendor_id": "zebra", "product_id": 1}, "The printer settings of this station are not "
                                                                 "valid (vendor_id must be a number). Ask the "
                                                                 "technician to fix them; the operation is "
                                                                 "recorded."),
    ],
)
def test_bad_printer_settings_are_refused_with_a_message(station, withdrawal, config, message):
    station.config["printer"] = config
    with pytest.raises(transport.PrinterMisconfigured) as caught:
        printing.print_receipt(station, withdrawal)
    assert caught.value.message == message


def test_settings_defaults(station):
    station.config["printer"] = {"kind": "usb", "vendor_id": "0x0416", "product_id": 20497}
    settings = transport.printer_settings(station)
    assert settings == {"kind": "usb", "vendor_id": "0x0416", "product_id": 20497, "profile": "POS-5890",
                        "cut": True, "timeout": 10}


def test_out_of_paper_is_refused_before_printing(monkeypatch, station, withdrawal):
    printer = StatusPrinter(paper=b"\x72")
    use_printer(monkeypatch, station, printer)

    with pytest.raises(transport.PrinterOutOfPaper) as caught:
        printing.print_receipt(station, withdrawal)

    assert caught.value.message == (
        "The printer is out of paper. The operation is recorded; load a new roll and print again."
    )
    assert RASTER not in printer.output and gb("助农") not in printer.output


def test_paper_near_end_prints_and_warns(monkeypatch, station, withdrawal):
    printer = StatusPrinter(paper=b"\x1e")
    use_printer(monkeypatch, station, printer)

    job = printing.print_receipt(station, withdrawal)

    assert job.paper_low is True
    assert printer.output.count(FEED_AND_CUT) == 2


class FakePrinterPort:
    """``fcntl.ioctl`` as the Linux usblp driver answers it, with the status byte the printer reports."""

    def __init__(self, status: int):
        self.status = status
        self.abort_set = False

    def __call__(self, fd, request, arg):
        if request == transport.LPABORT:
            self.abort_set = arg == 1
            return 0
        assert request == transport.LPGETSTATUS
        return self.status.to_bytes(4, sys.byteorder)


@pytest.mark.parametrize(("status", "prints"), [(0x18, True), (0x38, False)])
def test_printer_port_paper_status_and_abort_on_paper_out(monkeypatch, station, withdrawal, status, prints):
    port = FakePrinterPort(status)
    monkeypatch.setattr(transport.fcntl, "ioctl", port)
    station.config["printer"] = {"kind": "file", "path": "/dev/null"}  # an existing character device

    if prints:
        assert printing.print_receipt(station, withdrawal).kind == "file"
    else:
        with pytest.raises(transport.PrinterOutOfPaper):
            printing.print_receipt(station, withdrawal)
    # A paper-out during the write then fails with ENOSPC instead of blocking the station.
    assert port.abort_set


def test_offline_printer_is_unavailable(monkeypatch, station, withdrawal):
    use_printer(monkeypatch, station, StatusPrinter(online=b"\x1a"))
    with pytest.raises(transport.PrinterUnavailable):
        printing.print_receipt(station, withdrawal)


def test_printer_that_does_not_answer_status_still_prints(monkeypatch, station, withdrawal):
    printer = StatusPrinter(paper=b"", online=b"")
    use_printer(monkeypatch, station, printer)
    job = printing.print_receipt(station, withdrawal)
    assert job.paper_low is False
    assert printer.output.count(FEED_AND_CUT) == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), transport.PrinterOutOfPaper),  # Linux usblp: paper out
        (OSError(errno.EIO, "Input/output error"), transport.PrinterUnavailable),
        (TimeoutError("write timed out"), transport.PrinterUnavailable),
    ],
)
def test_write_failures_become_printer_errors(monkeypatch, station, withdrawal, failure, error):
    use_printer(monkeypatch, station, StatusPrinter(fail_write=failure))
    with pytest.raises(error):
        printing.print_receipt(station, withdrawal)


def test_printing_again_after_a_failure_prints_the_same_receipt(monkeypatch, dummy, withdrawal):
    use_printer(monkeypatch, dummy, StatusPrinter(paper=b"\x72"))
    with pytest.raises(transport.PrinterOutOfPaper):
        printing.print_receipt(dummy, withdrawal)
    monkeypatch.undo()

    output = printing.print_receipt(dummy, withdrawal, duplicate=False).output

    assert [r.text for r in read_qr_codes(raster_images(output)[0])] == [withdrawal.token]


def test_every_kind_of_receipt_prints_its_own_lines(dummy, agent, supervisor, customer_auth):
    station = dummy
    business_day.open_day(station, agent, {"10000": 300})
    bill = operations.pay_bill(station, agent, None, "ELEC-SGCC", "1234567890", "88.50", receipts.new_txn_id())
    enquiry = operations.balance_enquiry(station, agent, customer_auth, receipts.new_txn_id()).receipt
    reversal = operations.reverse(station, supervisor, bill.txn, receipts.new_txn_id(), "typed the wrong meter")
    day_close = business_day.close_day(station, agent, {"10000": 300}).receipt
    voice = record_feedback(station, agent, "suggestion", "希望多放些零钱")
    expected = [
        (bill, ["缴费 Bill payment", "收款单位 Paid to:", "国网电费 State Grid", "electricity",
                "户号 Account no.: 1234567890", "捌拾捌元伍角"]),
        (enquiry, ["业务 Type: 余额 Balance", "离线可用 Offline avail.:"]),
        (reversal, ["冲正 Reversal", f"原流水号 Original seq: {bill.seq}", "原业务 Original:", "  缴费 Bill payment",
                    "代理人 Agent: S01 周主管 Zhou", "原因 Reason:", "  typed the wrong meter",
                    "退还现金 Paid back: 88.50 元"]),
        (voice, ["客户之声 Customer voice", "内容 Said: 希望多放些零钱"]),
        (day_close, ["日终 Day close", "应有 Expected: 30,000.00 元", "差额 Variance: 0.00 元"]),
    ]
    for receipt, texts in expected:
        output = printing.print_receipt(station, receipt).output
        assert (gb("金额 Amount") in output) == (receipt.type not in ("feedback", "balance_enquiry")), receipt.type
        for text in texts:
            assert in_chinese_mode(output, gb(text)), (receipt.type, text)
        assert [r.text for r in read_qr_codes(raster_images(output)[0])] == [receipt.token]
