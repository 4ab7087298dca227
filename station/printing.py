"""Printed receipts on the station's 58 mm ESC/POS thermal printer (python-escpos 3).

A printed receipt is a copy of something already recorded: printing never records anything, and a printer
that is missing or out of paper raises a :class:`PrinterError` whose message tells the agent the operation is
recorded and can be printed again. Nothing here touches the journal.

Chinese on the paper: python-escpos encodes text into single-byte code pages only, so every text line is sent
as GB18030 bytes with ``printer._raw`` inside the printer's Chinese (Kanji) mode: ``FS &`` enters it, ``FS .``
leaves it (ASCII is the same byte in GB18030, so bilingual lines need no switching).

The QR code carries the whole signed token (the JWS), so anyone can verify the receipt with the station's public
key. It is printed as a ``GS v 0`` raster image at 3 dots per module with a 4-module quiet zone. On 384 dots that
allows QR version 25 at most (117 modules + 8 quiet = 125 modules = 375 dots), i.e. up to 1,273 bytes of token at
error level L; a withdrawal's token is about 500 bytes, a transfer to a 30-character Chinese payee name about 700.
A longer token is not shrunk to 2 dots per module (phones do not read that reliably off thermal paper): the
receipt prints without its QR and says so, the problem is logged, and the receipt screen still shows the QR.

The printer is set by the ``printer`` key of the station's ``config.json`` (see ``docs/operations.md``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date
from functools import partial
from pathlib import Path

import segno
from escpos.constants import RT_STATUS_ONLINE
from escpos.escpos import Escpos
from escpos.exceptions import Error as EscposError
from escpos.printer import Dummy, File, Network, Serial, Usb
from PIL import Image, ImageDraw, ImageFont

from station.context import Station
from station.db import Agent, Biller
from station.errors import N_, StationError
from station.protocol.entry_types import spec_of
from station.protocol.money import chinese_capitals, format_yuan
from station.protocol.tokens import unverified_payload
from station.receipts import Receipt, mask_number

log = logging.getLogger(__name__)

#: One printer per station, one station per process: jobs from two request threads must not interleave.
_PRINTER_LOCK = threading.Lock()

#: Printable width of a 58 mm thermal printer head: 48 mm at 8 dots/mm.
PAPER_DOTS = 384
#: Characters per line in the printer's font A (12 x 24 dots); a Chinese character takes two.
LINE_COLUMNS = 32
QR_SCALE = 3
QR_BORDER = 4

PRINTER_KINDS = ("usb", "serial", "network", "file", "dummy")
#: With no ``printer`` key: the Linux ``usblp`` device of a USB receipt printer, the usual set-up of a station.
DEFAULT_PRINTER = {"kind": "file", "path": "/dev/usb/lp0"}
#: A python-escpos profile of a generic 58 mm printer (384 dots, 32 columns).
DEFAULT_PROFILE = "POS-5890"
DEFAULT_TIMEOUT_S = {"usb": 10, "serial": 5, "network": 10}
#: Settings that are whole numbers (USB ids and endpoints may be written in hex, "0x0416").
INTEGER_SETTINGS = ("vendor_id", "product_id", "in_ep", "out_ep", "port", "baudrate")

COPIES = ("customer", "agent")

# linux/lp.h: printer port ioctls (served by the lp and usblp drivers) and the status bit for paper out.
LPABORT = 0x0604
LPGETSTATUS = 0x060B
LP_POUTPA = 0x20

KANJI_ON = b"\x1c&"  # FS &: enter Chinese (Kanji) character mode
KANJI_OFF = b"\x1c."  # FS .: leave it
# GS V 66 0: feed to the cutter and cut. python-escpos's profile-driven cut() sends nothing on 58 mm profiles that
# list no cutter, so the command is sent as is; a printer without a cutter ignores it.
FEED_AND_CUT = b"\x1dVB\x00"

_STATUS_LABELS = {
    "recorded": ("已记录，待银行确认", "Recorded offline, waiting for the bank"),
    "settled": ("已入账", "Settled by the bank"),
    "rejected": ("银行已拒绝", "Rejected by the bank"),
    "cancelled": ("已撤销", "Cancelled"),
    "reversed": ("已冲正", "Reversed"),
}
_TRANSFER_WAITING = ("已记录，待银行执行转账", "Recorded, waiting for the bank to send it")


# -- errors -----------------------------------------------------------------------------------------------
class PrinterError(StationError):
    """The receipt did not print. ``detail`` is the technical cause, for the log, never for the screen."""

    code = "printer_error"
    template = N_("The printer did not print. The operation is recorded; check the printer and print again.")

    def __init__(self, template: str | None = None, *, detail: str = "", **params):
        super().__init__(template, **params)
        self.detail = detail


class PrinterUnavailable(PrinterError):
    code = "printer_unavailable"
    template = N_("The printer is not connected or switched off. The operation is recorded; print again when it "
                  "is ready.")


class PrinterOutOfPaper(PrinterError):
    code = "printer_out_of_paper"
    template = N_("The printer is out of paper. The operation is recorded; load a new roll and print again.")


class PrinterMisconfigured(PrinterError):
    code = "printer_misconfigured"
    template = N_("The printer settings of this station are not valid (%(problem)s). Ask the technician to fix "
                  "them; the operation is recorded.")


class QrTooLarge(ValueError):
    """A token too long for a QR code of 3 dots per module on 384 dots."""


@dataclass(frozen=True)
class PrintJob:
    """What a print did: ``paper_low`` when the near-end sensor tripped; ``output`` the bytes a dummy got."""

    kind: str
    paper_low: bool
    output: bytes | None = None


# -- configuration ----------------------------------------------------------------------------------------
def _int(value, name: str) -> int:
    """An integer setting, also written as "0x0416" (USB ids are quoted in hex everywhere)."""
    try:
        return value if isinstance(value, int) and not isinstance(value, bool) else int(str(value), 0)
    except ValueError:
        raise PrinterMisconfigured(problem=f"{name} must be a number") from None


def printer_settings(st: Station) -> dict:
    """The station's printer settings: ``config.json``'s ``printer`` object, checked, with defaults filled."""
    raw = st.config.get("printer", DEFAULT_PRINTER)
    if not isinstance(raw, dict):
        raise PrinterMisconfigured(problem="printer must be an object")
    settings = dict(raw)
    kind = settings.get("kind")
    if kind not in PRINTER_KINDS:
        raise PrinterMisconfigured(problem=f"kind must be one of {', '.join(PRINTER_KINDS)}")
    required = {"usb": ("vendor_id", "product_id"), "serial": ("device",), "network": ("host",), "file": ("path",)}
    for key in required.get(kind, ()):
        if not settings.get(key):
            raise PrinterMisconfigured(problem=f"a {kind} printer needs {key}")
    for key in INTEGER_SETTINGS:
        if key in settings:
            _int(settings[key], key)  # refused now, not at the first receipt
    settings.setdefault("profile", DEFAULT_PROFILE)
    settings.setdefault("cut", True)
    if kind in DEFAULT_TIMEOUT_S:
        timeout = settings.setdefault("timeout", DEFAULT_TIMEOUT_S[kind])
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
            raise PrinterMisconfigured(problem="timeout must be a number of seconds")
    return settings


class _AppendingFile(File):
    """A File printer that appends: a spool file keeps every job, and a missing device node is never created.

    On a Linux printer port (``usblp``'s /dev/usb/lp0, ``lp``'s /dev/lp0) it also asks the driver for the paper
    status, and sets LPABORT: without it a write to a printer out of paper waits forever (the station would hang
    mid-receipt); with it the write fails with ENOSPC, which becomes PrinterOutOfPaper.
    """

    def open(self, raise_not_found: bool = True) -> None:
        self.device = open(self.devfile, "ab")
        with suppress(OSError):  # ENOTTY: a plain file, not a printer port
            fcntl.ioctl(self.device.fileno(), LPABORT, 1)

    def port_status(self) -> int | None:
        """The printer port's status byte (LP_* bits of linux/lp.h), or None where the file is no printer port."""
        try:
            raw = fcntl.ioctl(self.device.fileno(), LPGETSTATUS, bytes(4))
        except OSError:
            return None
        return int.from_bytes(raw, sys.byteorder)


class _Network(Network):
    """A Network printer whose failed connect closes its socket (python-escpos 3.1 leaks it, a ResourceWarning)."""

    def open(self, raise_not_found: bool = True) -> None:
        self.device = socket.create_connection((self.host, self.port), timeout=self.timeout)


def _make_printer(st: Station, settings: dict) -> Escpos:
    kind, profile = settings["kind"], settings["profile"]
    if kind == "dummy":
        return Dummy(profile=profile)
    if kind == "file":
        path = Path(settings["path"])
        path = path if path.is_absolute() else st.data_dir / path
        # Opening a missing /dev node for writing would create a plain file there and "print" into it.
        if path.parts[:2] == ("/", "dev") and not path.exists():
            raise PrinterUnavailable(detail=f"{path} does not exist")
        return _AppendingFile(str(path), profile=profile)
    if kind == "network":
        return _Network(settings["host"], _int(settings.get("port", 9100), "port"), timeout=settings["timeout"],
                       profile=profile)
    if kind == "serial":
        return Serial(settings["device"], baudrate=_int(settings.get("baudrate", 9600), "baudrate"),
                      timeout=settings["timeout"], profile=profile)
    options = {key: _int(settings[key], key) for key in ("in_ep", "out_ep") if key in settings}
    return Usb(_int(settings["vendor_id"], "vendor_id"), _int(settings["product_id"], "product_id"),
               timeout=int(settings["timeout"] * 1000), profile=profile, **options)


@contextmanager
def _printer_errors() -> Iterator[None]:
    """Turn whatever a connection raises into a PrinterError the UI can show."""
    try:
        yield
    except PrinterError:
        raise
    except OSError as exc:  # pyusb's USBError and pyserial's SerialException are OSErrors too
        # Linux's usblp driver answers a write with ENOSPC when the printer reports paper out.
        if exc.errno == errno.ENOSPC:
            raise PrinterOutOfPaper(detail=str(exc)) from exc
        raise PrinterUnavailable(detail=f"{exc.__class__.__name__}: {exc}") from exc
    except EscposError as exc:
        raise PrinterUnavailable(detail=f"{exc.__class__.__name__}: {exc}") from exc


def _can_answer(printer: Escpos) -> bool:
    """Only connections that can read back (USB, serial) can ask the printer itself for its status."""
    return type(printer)._read is not Escpos._read


def _check_ready(printer: Escpos) -> bool:
    """Refuse a printer that reports no paper or offline; return True when the paper is nearly out.

    A printer that does not answer (empty reply or a read timeout) is taken as ready: refusing to print
    because a status query went unanswered would be worse than trying.
    """
    if isinstance(printer, _AppendingFile):
        status = printer.port_status()
        # Only the paper bit is trusted: cheap printers report the other port bits unreliably.
        if status is not None and status & LP_POUTPA:
            raise PrinterOutOfPaper(detail=f"printer port status {status:#04x}: paper out")
        return False
    if not _can_answer(printer):
        return False
    try:
        paper = printer.paper_status()
        online = printer.query_status(RT_STATUS_ONLINE)
    except OSError as exc:
        log.info("printer status unknown: %s", exc)
        return False
    if paper == 0:
        raise PrinterOutOfPaper(detail="paper sensor: no paper")
    if online and online[0] & 0x08:
        raise PrinterUnavailable(detail="printer reports offline (cover open or error)")
    return paper == 1


def _open(st: Station, settings: dict) -> Escpos:
    try:
        printer = _make_printer(st, settings)
        printer.open()
    except (RuntimeError, ValueError) as exc:  # pyusb/pyserial not installed, or no libusb backend
        raise PrinterUnavailable(detail=f"{exc.__class__.__name__}: {exc}") from exc
    if settings["kind"] == "serial":
        # pyserial writes block forever by default; a printer unplugged mid-job must not hang the station.
        printer.device.write_timeout = settings["timeout"]
    return printer


def _run_job(st: Station, pages: list[Callable[[Escpos], None]]) -> PrintJob:
    """Open the configured printer, check it, print each page followed by a cut, close it."""
    settings = printer_settings(st)
    printer = None
    try:
        with _PRINTER_LOCK, _printer_errors():
            printer = _open(st, settings)
            paper_low = _check_ready(printer)
            for page in pages:
                page(printer)
                if settings["cut"]:
                    printer._raw(FEED_AND_CUT)
                else:
                    printer.print_and_feed(4)  # past the tear bar
    except PrinterError as exc:
        log.warning("printing failed (%s): %s", exc.code, exc.detail)
        raise
    finally:
        if printer is not None:
            _close_quietly(printer)
    if paper_low:
        log.warning("printer paper is nearly out")
    output = printer.output if isinstance(printer, Dummy) else None
    return PrintJob(kind=settings["kind"], paper_low=paper_low, output=output)


def _close_quietly(printer: Escpos) -> None:
    try:
        printer.close()
    except (OSError, EscposError, RuntimeError) as exc:
        log.info("closing the printer failed: %s", exc)


# -- layout -----------------------------------------------------------------------------------------------
def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def wrap(text: str, width: int = LINE_COLUMNS) -> list[str]:
    """Split ``text`` into printed lines of at most ``width`` columns (a Chinese character is two)."""
    lines, line = [], ""
    for char in text:
        if _columns(line + char) > width:
            cut = line.rfind(" ")
            if cut > 0 and char != " ":
                lines.append(line[:cut])
                line = line[cut + 1:]
            else:
                lines.append(line.rstrip())
                line = ""
            if char == " " and not line:
                continue
        line += char
    if line or not lines:
        lines.append(line)
    return lines


def _field(label: str, value: str) -> list[str]:
    """``label: value`` on one line when it fits, else the value indented on the lines below."""
    line = f"{label}: {value}"
    if _columns(line) <= LINE_COLUMNS:
        return [line]
    return [f"{label}:", *("  " + part for part in wrap(value, LINE_COLUMNS - 2))]


def _write_text(printer: Escpos, lines: list[str]) -> None:
    """Print lines as GB18030 bytes inside the printer's Chinese mode."""
    body = "".join(line + "\n" for line in lines).encode("gb18030")
    printer._raw(KANJI_ON + body + KANJI_OFF)


def _yuan(fen: int) -> str:
    return f"{format_yuan(fen)} 元"


def _agent_line(st: Station, receipt: Receipt) -> str | None:
    agent_id = unverified_payload(receipt.token).get("agent")
    if not agent_id:
        return None
    agent = Agent.get_or_none(Agent.agent_id == agent_id)
    return f"{agent_id} {agent.name}" if agent else agent_id


def _status_label(receipt: Receipt) -> tuple[str, str]:
    if receipt.type == "transfer" and receipt.status == "recorded":
        return _TRANSFER_WAITING
    return _STATUS_LABELS.get(receipt.status, (receipt.status, receipt.status))


def _detail_lines(receipt: Receipt) -> list[str]:
    details, lines = receipt.details, []
    if receipt.type == "transfer":
        lines += _field("收款人 Payee", details.get("payee_name", ""))
        lines += _field("收款账户 Payee acct", mask_number(details.get("payee_account")) or "")
    elif receipt.type == "bill_payment":
        biller = Biller.get_or_none(Biller.code == details.get("biller"))
        name = f"{biller.name_zh} {biller.name_en}" if biller else str(details.get("biller", ""))
        lines += _field("收费单位 Biller", name)
        lines += _field("缴费号 Reference", str(details.get("ref", "")))
    elif receipt.type in ("reversal", "transfer_cancel") and "ref_seq" in details:
        lines += _field("原流水号 Original seq", str(details["ref_seq"]))
    elif receipt.type == "day_close":
        lines += _field("应有 Expected", _yuan(details.get("expected", 0)))
        lines += _field("差额 Variance", _yuan(details.get("variance", 0)))
    return lines


def _money_lines(receipt: Receipt) -> list[str]:
    if receipt.type == "balance_enquiry":
        lines = []
        if receipt.details.get("balance") is not None:
            lines += _field("余额 Balance", _yuan(receipt.details["balance"]))
        lines += _field("离线可用 Offline avail.", _yuan(receipt.details.get("offline_available", 0)))
        return lines
    return [
        *_field("金额 Amount", _yuan(receipt.amount_fen)),
        *_field("大写 In words", chinese_capitals(receipt.amount_fen)),
        *_field("手续费 Fee", _yuan(receipt.fee_fen)),
    ]


def _across_paper(image: Image.Image) -> Image.Image:
    """``image`` centred on a white strip as wide as the paper (not left to the printer profile's idea of it)."""
    strip = Image.new("RGB", (PAPER_DOTS, image.height), "white")
    image = image.convert("RGBA")
    strip.paste(image, ((PAPER_DOTS - image.width) // 2, 0), image)
    return strip


def receipt_qr_image(token: str) -> Image.Image:
    """The token as a QR code image at 3 dots per module with its quiet zone; QrTooLarge past 384 dots."""
    qr = segno.make_qr(token, error="l")
    width, _ = qr.symbol_size(scale=QR_SCALE, border=QR_BORDER)
    if width > PAPER_DOTS:
        raise QrTooLarge(f"a {len(token)}-byte token needs QR version {qr.version}: {width} dots > {PAPER_DOTS}")
    modules, _ = qr.symbol_size(scale=1, border=QR_BORDER)
    image = Image.new("1", (modules, modules), 1)
    image.putdata([0 if dark else 1 for row in qr.matrix_iter(scale=1, border=QR_BORDER) for dark in row])
    return image.resize((width, width), Image.Resampling.NEAREST)


def render_receipt(printer: Escpos, st: Station, receipt: Receipt, *, copy: str, duplicate: bool) -> None:
    """Send one copy of ``receipt`` to ``printer`` (without the cut): header, fields, QR of the signed token.

    ``printer`` is any python-escpos printer; give it a profile with a known paper width (``DEFAULT_PROFILE``),
    or python-escpos prints a notice on stdout for every image.
    """
    if copy not in COPIES:
        raise ValueError(f"copy must be one of {COPIES}")
    printer.hw("INIT")
    printer.set(align="center", bold=True, double_height=True, double_width=True)
    _write_text(printer, ["助农服务点回单"])
    printer.set(normal_textsize=True, bold=False)
    _write_text(printer, ["VILLAGE BANKING RECEIPT", "客户联 CUSTOMER COPY" if copy == "customer" else
                          "留存联 AGENT COPY"])
    if duplicate:
        printer.set(bold=True, double_height=True, double_width=True, invert=True)
        _write_text(printer, ["重印 DUPLICATE"])
        printer.set(normal_textsize=True, bold=False, invert=False)
    printer.set(align="left")
    recorded_at = receipt.recorded_at
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=UTC)
    zh_status, en_status = _status_label(receipt)
    with st.bound():  # the agent's and the biller's names come from the station's database
        agent = _agent_line(st, receipt)
        details = _detail_lines(receipt)
    lines = ["-" * LINE_COLUMNS, *_field("服务点 Station", st.station_id)]
    if agent:
        lines += _field("代理人 Agent", agent)
    lines += _field("时间 Time", recorded_at.astimezone(st.timezone).strftime("%Y-%m-%d %H:%M:%S"))
    printed = spec.printed if (spec := spec_of(receipt.type)) else None
    lines += _field("业务 Type", " ".join(printed) if printed else receipt.type)
    if receipt.account_masked:
        lines += _field("账户 Account", receipt.account_masked)
    lines += _money_lines(receipt)
    lines += details
    lines += ["状态 Status:", f"  {zh_status}", *("  " + part for part in wrap(en_status, LINE_COLUMNS - 2))]
    lines += _field("流水号 Seq", str(receipt.seq))
    if receipt.txn:
        lines.append("交易号 Txn:")
    _write_text(printer, lines)
    if receipt.txn:
        # A UUID is 36 characters: font B (42 columns) keeps it on one line, so it can be read back whole.
        printer.set(font="b")
        _write_text(printer, [receipt.txn])
        printer.set(font="a")
    tail = ["", "客户签名 Customer signature:", "", "_" * LINE_COLUMNS] if copy == "agent" else []
    _write_text(printer, [*tail, "-" * LINE_COLUMNS])
    try:
        qr = receipt_qr_image(receipt.token)
    except QrTooLarge as exc:
        log.error("receipt seq %s printed without its QR code: %s", receipt.seq, exc)
        printer.set(align="center")
        _write_text(printer, ["二维码过长，请在服务点屏幕上核验", "QR code too long to print:",
                              "verify on the station screen"])
    else:
        printer.image(_across_paper(qr), impl="bitImageRaster")
        printer.set(align="center")
        _write_text(printer, ["扫码核验电子签名", "Scan to verify the signature"])
    if duplicate:
        _write_text(printer, ["*** 重印 DUPLICATE ***"])


def print_receipt(st: Station, receipt: Receipt, *, duplicate: bool = False) -> PrintJob:
    """Print the customer copy, then the agent copy, each followed by a cut, on the configured printer."""
    return _run_job(st, [partial(render_receipt, st=st, receipt=receipt, copy=copy, duplicate=duplicate)
                         for copy in COPIES])


#: Height of one hour's row of the printed busy-hours chart, in dots.
CHART_ROW_DOTS = 30


def busy_hours_image(hours: list[tuple[int, int]]) -> Image.Image:
    """The busy-hours chart for paper: one row per ``(hour, visits)``, a bar scaled to the busiest hour.

    Horizontal bars suit a 384-dot roll better than the screen's columns; only digits are drawn in the
    image (Pillow's built-in font), the Chinese heading is printed as text.
    """
    font = ImageFont.load_default(size=20)
    label_dots, count_dots = 40, 48
    span = PAPER_DOTS - label_dots - count_dots
    busiest = max([visits for _, visits in hours] + [1])
    image = Image.new("1", (PAPER_DOTS, CHART_ROW_DOTS * len(hours) + 4), 1)
    draw = ImageDraw.Draw(image)
    for index, (hour, visits) in enumerate(hours):
        top = index * CHART_ROW_DOTS + 2
        bar = round(visits * span / busiest)
        draw.text((0, top + 3), f"{hour:02d}", font=font, fill=0)
        if bar:
            draw.rectangle([label_dots, top + 4, label_dots + bar, top + CHART_ROW_DOTS - 4], fill=0)
        draw.text((label_dots + bar + 6, top + 3), str(visits), font=font, fill=0)
    return image


def print_busy_hours(st: Station, day: date, hours: list[tuple[int, int]]) -> PrintJob:
    """Print today's customers by hour for the station's wall, so people can avoid the rush."""
    lines = ["今日各时段客流", "Customers by hour", f"{st.station_id}  {day.isoformat()}"]
    peak_hour, peak_visits = max(hours, key=lambda row: row[1], default=(0, 0))
    if peak_visits:
        lines += [f"最忙 Busiest: {peak_hour:02d}:00-{peak_hour + 1:02d}:00", "错峰来办，少排队。",
                  "Come at other times to wait less."]
    image = busy_hours_image(hours)

    def chart(printer: Escpos) -> None:
        printer.hw("INIT")
        _write_text(printer, lines)
        printer.image(_across_paper(image), impl="bitImageRaster")

    return _run_job(st, [chart])
