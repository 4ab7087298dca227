"""What goes on the paper of the station's 58 mm thermal printer: receipt lines, the QR code, the busy-hours chart.

Layout only: every function here takes the data it shows (a :class:`ReceiptSheet` gathered before printing, the
chart's hours) and draws on a python-escpos printer object; it looks nothing up, so it can be tested on
python-escpos's ``Dummy`` without a database. Opening and checking a real printer is ``station.printer``'s job.

Chinese on the paper: python-escpos encodes text into single-byte code pages only, so every text line is sent
as GB18030 bytes with ``printer._raw`` inside the printer's Chinese (Kanji) mode: ``FS &`` enters it, ``FS .``
leaves it (ASCII is the same byte in GB18030, so bilingual lines need no switching). Text reaches the printer only
through :func:`_write_text`, which replaces control and format characters first: a payee name or a reason from a
payload can never slip ESC/POS commands onto the paper (GB18030's multi-byte sequences use no byte below 0x30).

The QR code carries the whole signed token (the JWS), so anyone can verify the receipt with the station's public
key. It is printed as a ``GS v 0`` raster image at 3 dots per module with a 4-module quiet zone. On 384 dots that
allows QR version 25 at most (117 modules + 8 quiet = 125 modules = 375 dots), i.e. up to 1,273 bytes of token at
error level L; a withdrawal's token is about 500 bytes, a transfer to a 30-character Chinese payee name about 700.
A longer token is not shrunk to 2 dots per module (phones do not read that reliably off thermal paper): the
receipt prints without its QR and says so, the problem is logged, and the receipt screen still shows the QR.
A 12315 complaint's receipt has no QR code at all: its token holds the complainant's phone in full (the regulator
calls back), and the paper shows the phone masked only.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import segno
from escpos.escpos import Escpos
from PIL import Image, ImageDraw, ImageFont

from station.protocol.entry_types import STATE_LABELS, EntryType, OperationState, printable_text, spec_of
from station.protocol.money import chinese_capitals, format_yuan

if TYPE_CHECKING:  # the layout reads a receipt's fields; it needs neither the services nor their database
    from station.receipts import Receipt

log = logging.getLogger(__name__)

#: Printable width of a 58 mm thermal printer head: 48 mm at 8 dots/mm.
PAPER_DOTS = 384
#: Characters per line in the printer's font A (12 x 24 dots); a Chinese character takes two.
LINE_COLUMNS = 32
QR_SCALE = 3
QR_BORDER = 4
#: Height of one hour's row of the printed busy-hours chart, in dots.
CHART_ROW_DOTS = 30

COPIES = ("customer", "agent")

KANJI_ON = b"\x1c&"  # FS &: enter Chinese (Kanji) character mode
KANJI_OFF = b"\x1c."  # FS .: leave it

_TRANSFER_WAITING = ("已记录，待银行执行转账", "Recorded, waiting for the bank to send it")
_TRANSFER_STOPPED = ("未汇出：客户在防诈提示后终止", "Not sent: the customer stopped at the fraud warning")
_COMPLAINT_RECORDED = ("已记录，由银行转交市场监管部门（12315）",
                       "Recorded; the bank forwards it to the market regulator (12315)")
#: A complaint's category on paper, (Chinese, English).
COMPLAINT_CATEGORIES_PRINTED = {
    "price": ("价格", "Price"), "quality": ("商品质量", "Quality"),
    "false_advertising": ("虚假宣传", "False advertising"), "service": ("服务", "Service"),
    "food_safety": ("食品安全", "Food safety"), "other": ("其他", "Other"),
}
#: A wealth-product order's states: the bank confirms or refuses it at sync; a refused one took nothing.
_WMP_STATES = {
    OperationState.RECORDED: ("申购已记录，等待银行确认", "Order recorded, waiting for the bank's confirmation"),
    OperationState.SETTLED: ("银行已确认申购", "Order confirmed by the bank"),
    OperationState.REJECTED: ("银行未受理申购", "Order refused by the bank"),
}
_WMP_RELEASED = ("款项已释放", "The money is released.")
#: An order recorded under the bank's real-time grant whose push has not been acknowledged yet.
_WMP_AUTHORIZED = ("银行已授权申购，等待银行确认", "Order authorized by the bank, waiting for its confirmation")


class QrTooLarge(ValueError):
    """A token too long for a QR code of 3 dots per module on 384 dots."""


@dataclass(frozen=True)
class ReceiptSheet:
    """Everything a printed receipt shows besides the receipt itself, gathered before printing.

    ``local_time``: when it was recorded, in the station's time zone. ``agent``: "A01 田师傅 Tian" (or the bare
    id of an agent the station no longer knows). ``biller``: a bill payment's biller as printed. ``payee_account``:
    a transfer's payee account, masked. ``duplicate``: a reprint, marked 重印 DUPLICATE. ``rejection``: why the
    bank rejected it, (Chinese, English). ``cancellable``: a transfer that can still be cancelled, ``cancel_until``
    until when (local "HH:MM", the bank's execution time; None: until the bank sends it). ``balance_as_of``: a
    balance enquiry's snapshot time (local "HH:MM", with the date when it is not the receipt's day),
    ``balance_live`` when the bank answered it live. ``biller_kind``: a bill's biller kind (a top-up's reference
    is a phone number). ``original_type``: the type of the operation a reversal or cancellation undoes;
    ``reason``: a reversal's or a day close's reason, (Chinese, English). ``authorized``: recorded under the bank's
    real-time grant.
    """

    receipt: Receipt
    station_id: str
    local_time: datetime
    agent: str | None = None
    biller: str | None = None
    payee_account: str | None = None
    duplicate: bool = False
    rejection: tuple[str, str] | None = None
    cancellable: bool = False
    cancel_until: str | None = None
    balance_as_of: str | None = None
    balance_live: bool = False
    biller_kind: str | None = None
    original_type: str | None = None
    reason: tuple[str, str] | None = None
    authorized: bool = False


# -- text -------------------------------------------------------------------------------------------------
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
    """Print lines as GB18030 bytes inside the printer's Chinese mode, each cleared of control characters."""
    body = "".join(printable_text(line) + "\n" for line in lines).encode("gb18030")
    printer._raw(KANJI_ON + body + KANJI_OFF)


def _yuan(fen: int) -> str:
    return f"{format_yuan(fen)} 元"


# -- the receipt ------------------------------------------------------------------------------------------
def _status_label(sheet: ReceiptSheet) -> tuple[str, str]:
    receipt = sheet.receipt
    if receipt.type == EntryType.TRANSFER and receipt.status == OperationState.RECORDED:
        return _TRANSFER_WAITING
    if receipt.type == EntryType.TRANSFER_STOPPED:
        return _TRANSFER_STOPPED
    if receipt.type == EntryType.COMPLAINT_12315:
        return _COMPLAINT_RECORDED
    if receipt.type == EntryType.WMP_ORDER and receipt.status == OperationState.RECORDED and sheet.authorized:
        return _WMP_AUTHORIZED
    if receipt.type == EntryType.WMP_ORDER and receipt.status in _WMP_STATES:
        zh, en = _WMP_STATES[receipt.status]
        if receipt.status == OperationState.REJECTED:
            reason = sheet.rejection or ("", "")
            zh, en = f"{zh}：{reason[0]}；{_WMP_RELEASED[0]}", f"{en}: {reason[1]}. {_WMP_RELEASED[1]}"
        return zh, en
    label = STATE_LABELS.get(receipt.status)
    zh, en = label.printed if label else (receipt.status, receipt.status)
    if receipt.status == OperationState.REJECTED and sheet.rejection:
        zh, en = f"{zh}：{sheet.rejection[0]}", f"{en}: {sheet.rejection[1]}"
    return zh, en


def _cancel_lines(sheet: ReceiptSheet) -> list[str]:
    if not sheet.cancellable:
        return []
    if sheet.cancel_until:
        return [f"  {sheet.cancel_until} 前可撤销", f"  Cancellable until {sheet.cancel_until}"]
    return ["  银行执行前可撤销", "  Cancellable until the bank sends it"]


def _detail_lines(sheet: ReceiptSheet) -> list[str]:
    receipt = sheet.receipt
    details, lines = receipt.details, []
    if details.get("id_last4"):
        proxy = " 代办 proxy" if details.get("proxy") else ""
        lines += _field("身份证 ID card", f"****{details['id_last4']}{proxy}")
    if receipt.type in ("transfer", "transfer_stopped"):
        lines += _field("收款人 Payee", str(details.get("payee_name", "")))
        lines += _field("收款账户 Payee acct", sheet.payee_account or "")
    elif receipt.type == "bill_payment":
        lines += _field("收款单位 Paid to", sheet.biller or str(details.get("biller", "")))
        label = "手机号 Phone no." if sheet.biller_kind == "mobile" else "户号 Account no."
        lines += _field(label, str(details.get("ref", "")))
    elif receipt.type in ("reversal", "transfer_cancel") and "ref_seq" in details:
        lines += _field("原流水号 Original seq", str(details["ref_seq"]))
        if (original := spec_of(sheet.original_type)) and original.printed:
            lines += _field("原业务 Original", " ".join(original.printed))
        if sheet.reason:
            lines += _field("原因 Reason", " ".join(dict.fromkeys(sheet.reason)))
        if receipt.cash_fen > 0:
            lines += _field("收回现金 Taken back", _yuan(receipt.cash_fen))
        elif receipt.cash_fen < 0:
            lines += _field("退还现金 Paid back", _yuan(-receipt.cash_fen))
    elif receipt.type == "day_close":
        lines += _field("应有 Expected", _yuan(details.get("expected", 0)))
        variance = int(details.get("variance", 0))
        if variance < 0:
            lines += _field("短款 Short", _yuan(-variance))
        elif variance > 0:
            lines += _field("长款 Over", _yuan(variance))
        else:
            lines += _field("差额 Variance", _yuan(0))
        if sheet.reason:
            lines += _field("原因 Reason", " ".join(dict.fromkeys(sheet.reason)))
        if details.get("supervisor"):
            lines += _field("主管批准 Approved by", str(details["supervisor"]))
    elif receipt.type == "feedback":
        lines += _field("内容 Said", str(details.get("text", "")))
    elif receipt.type == EntryType.COMPLAINT_12315:
        lines += _field("投诉编号 Complaint no.", str(details.get("complaint_no", "")))
        lines += _field("电话 Phone", str(details.get("phone_masked", "")))
        category = COMPLAINT_CATEGORIES_PRINTED.get(details.get("category"), ("", ""))
        lines += _field("类别 Category", " ".join(category))
        lines += _field("被投诉方 Business", str(details.get("business", "")))
        if details.get("details"):
            lines += _field("经过 What happened", str(details["details"]))
    elif receipt.type == EntryType.WMP_ORDER:
        lines += _field("产品 Product", str(details.get("product", "")))
        lines += _field("风险等级 Risk level", f"R{details.get('risk_level', '')}")
        lines += _field("风险揭示 Risk statement", "已阅读 read" if details.get("warned") else "")
    return lines


def _money_lines(sheet: ReceiptSheet) -> list[str]:
    receipt = sheet.receipt
    if receipt.type in ("feedback", EntryType.COMPLAINT_12315):
        return []
    if receipt.type == "balance_enquiry":
        lines = []
        if receipt.details.get("balance") is not None:
            lines += _field("余额 Balance", _yuan(receipt.details["balance"]))
            if sheet.balance_as_of and sheet.balance_live:
                lines += _field("银行实时 Live, 截至", sheet.balance_as_of)
            elif sheet.balance_as_of:
                lines += _field("截至 As of", sheet.balance_as_of)
        lines += _field("离线可用 Offline avail.", _yuan(receipt.details.get("offline_available", 0)))
        return lines
    return [
        *_field("金额 Amount", _yuan(receipt.amount_fen)),
        *_field("大写 In words", chinese_capitals(receipt.amount_fen)),
        *_field("手续费 Fee", _yuan(receipt.fee_fen)),
    ]


def receipt_lines(sheet: ReceiptSheet) -> list[str]:
    """The text lines of a receipt between its header and its transaction id, as printed in font A."""
    receipt = sheet.receipt
    zh_status, en_status = _status_label(sheet)
    lines = ["-" * LINE_COLUMNS, *_field("服务点 Station", sheet.station_id)]
    if sheet.agent:
        lines += _field("代理人 Agent", sheet.agent)
    lines += _field("时间 Time", sheet.local_time.strftime("%Y-%m-%d %H:%M:%S"))
    printed = spec.printed if (spec := spec_of(receipt.type)) else None
    lines += _field("业务 Type", " ".join(printed) if printed else receipt.type)
    if receipt.account_masked:
        lines += _field("账户 Account", receipt.account_masked)
    lines += _money_lines(sheet)
    lines += _detail_lines(sheet)
    lines += ["状态 Status:", *("  " + part for part in wrap(zh_status, LINE_COLUMNS - 2)),
              *("  " + part for part in wrap(en_status, LINE_COLUMNS - 2)), *_cancel_lines(sheet)]
    lines += _field("流水号 Seq", str(receipt.seq))
    return lines


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


def render_receipt(printer: Escpos, sheet: ReceiptSheet, *, copy: str) -> None:
    """Send one copy of the receipt to ``printer`` (without the cut): header, fields, QR of the signed token.

    ``printer`` is any python-escpos printer; give it a profile with a known paper width (``POS-5890``),
    or python-escpos prints a notice on stdout for every image.
    """
    if copy not in COPIES:
        raise ValueError(f"copy must be one of {COPIES}")
    receipt = sheet.receipt
    printer.hw("INIT")
    printer.set(align="center", bold=True, double_height=True, double_width=True)
    _write_text(printer, ["助农服务点回单"])
    printer.set(normal_textsize=True, bold=False)
    _write_text(printer, ["VILLAGE BANKING RECEIPT", "客户联 CUSTOMER COPY" if copy == "customer" else
                          "留存联 AGENT COPY"])
    if sheet.duplicate:
        printer.set(bold=True, double_height=True, double_width=True, invert=True)
        _write_text(printer, ["重印 DUPLICATE"])
        printer.set(normal_textsize=True, bold=False, invert=False)
    printer.set(align="left")
    lines = receipt_lines(sheet)
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
    if receipt.type == EntryType.COMPLAINT_12315:
        # Its token holds the complainant's phone in full (the regulator calls back): no QR code of it on paper.
        printer.set(align="center")
        _write_text(printer, ["请保存投诉编号，12315将据此查询", "Keep the complaint number:", "12315 asks for it"])
        if sheet.duplicate:
            _write_text(printer, ["*** 重印 DUPLICATE ***"])
        return
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
    if sheet.duplicate:
        _write_text(printer, ["*** 重印 DUPLICATE ***"])


# -- the busy-hours chart ---------------------------------------------------------------------------------
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


def render_busy_hours(printer: Escpos, *, station_id: str, day: date, hours: list[tuple[int, int]]) -> None:
    """Send the day's customers by hour to ``printer`` (without the cut): a heading, the busiest hour, the chart."""
    lines = ["今日各时段客流", "Customers by hour", f"{station_id}  {day.isoformat()}"]
    peak_hour, peak_visits = max(hours, key=lambda row: row[1], default=(0, 0))
    if peak_visits:
        lines += [f"最忙 Busiest: {peak_hour:02d}:00-{peak_hour + 1:02d}:00", "错峰来办，少排队。",
                  "Come at other times to wait less."]
    printer.hw("INIT")
    _write_text(printer, lines)
    printer.image(_across_paper(busy_hours_image(hours)), impl="bitImageRaster")
