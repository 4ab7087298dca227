"""The printed enrollment sheet's layout: each station's QR as a PNG, and one sheet as HTML and as PDF.

Both sheets carry the same cards, four to an A4 page, one under the other with dashed lines to cut them apart:
the QR (segno ``make_qr``, error correction Q, a quiet zone of 4 modules), the station id, name, village and
agent, the code in large monospace type in groups of four, the server address, the expiry, and short Chinese and
English steps for the technician. The HTML is self-contained (the QR images inline as ``data:`` PNGs, print CSS
for A4); the PDF is drawn with reportlab, its Chinese text in the ``STSong-Light`` CID font, which needs no font
file (the PDF viewer supplies the glyphs). Nothing here touches the database or the network:
``sync_server.sheets`` decides what goes on the sheet.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

import segno
from jinja2 import Environment, PackageLoader, select_autoescape
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph

#: Error correction Q (25 % of the symbol may be lost to a crease or a smudge); segno raises it further when
#: that fits in the same size. A quiet zone of 4 modules, as ISO/IEC 18004 asks.
QR_ERROR = "q"
QR_BORDER = 4
#: 8 pixels a module: about 0.8 mm a module at the 300 dpi written into the PNG, which any USB scanner reads.
QR_SCALE = 8
QR_DPI = 300
#: Printed size of the QR on the sheet.
QR_SIZE_MM = 44
CARDS_PER_PAGE = 4
SHEET_TITLE = ("站点登记表", "Station enrollment sheet")
CONFIDENTIAL = ("机密：登记码用完之前，本表与钥匙同等重要。站点登记后请销毁。",
                "Confidential: as sensitive as a key until every code is used. Destroy it once the stations are "
                "enrolled.")
STEPS_ZH = ("在站点的登记画面，用扫码枪扫描二维码。",
            "没有扫码枪：输入服务器地址和登记码。",
            "一次性使用。站点显示已登记后，当场销毁本卡。")
STEPS_EN = ("On the station's enrollment screen, scan the QR with the USB scanner.",
            "No scanner: type the server address and the code.",
            "Single use. Once the station shows it is enrolled, destroy this card.")
CJK_FONT = "STSong-Light"
LATIN_FONT = "Helvetica"
# The page (A4, 10 mm margins as the HTML's @page), its header, and the cards one under the other.
PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 10 * mm
HEADER_HEIGHT = 18 * mm
CARD_WIDTH = PAGE_WIDTH - 2 * MARGIN
CARD_HEIGHT = (PAGE_HEIGHT - 2 * MARGIN - HEADER_HEIGHT) / CARDS_PER_PAGE
PAD = 3 * mm
MIDDLE_WIDTH = 76 * mm


@dataclass(frozen=True)
class Card:
    """One station's card on the sheet (texts as they are printed)."""

    station_id: str
    name: str
    village: str
    agent: str
    code: str
    payload: str
    valid_until: str


@dataclass(frozen=True)
class Sheet:
    """What a sheet says besides its cards."""

    server: str
    issued: str
    cards: tuple[Card, ...]

    def pages(self) -> list[tuple[Card, ...]]:
        return [self.cards[i:i + CARDS_PER_PAGE] for i in range(0, len(self.cards), CARDS_PER_PAGE)]


def qr_png(payload: str) -> bytes:
    """The QR of ``payload`` as a PNG (black on white, ``QR_SCALE`` pixels a module, ``QR_DPI`` dpi)."""
    out = io.BytesIO()
    segno.make_qr(payload, error=QR_ERROR).save(out, kind="png", scale=QR_SCALE, border=QR_BORDER, dpi=QR_DPI)
    return out.getvalue()


def _environment() -> Environment:
    environment = Environment(loader=PackageLoader("sync_server", "templates"), autoescape=select_autoescape())
    environment.filters["data_uri"] = lambda png: "data:image/png;base64," + base64.b64encode(png).decode()
    return environment


def sheet_html(sheet: Sheet) -> str:
    """The sheet as one self-contained HTML page, laid out for A4 paper."""
    return _environment().get_template("enrollment_sheet.html").render(
        sheet=sheet, title=SHEET_TITLE, confidential=CONFIDENTIAL, steps=list(zip(STEPS_ZH, STEPS_EN, strict=True)),
        qr_png=qr_png, qr_size_mm=QR_SIZE_MM, middle_width_mm=MIDDLE_WIDTH / mm, card_height_mm=CARD_HEIGHT / mm)


# -- PDF ----------------------------------------------------------------------------------------------------


def _style(size: float, font: str = LATIN_FONT) -> ParagraphStyle:
    # wordWrap="CJK" breaks a line anywhere: Chinese text has no spaces, nor has a long server address.
    return ParagraphStyle(f"{font}-{size}", fontName=font, fontSize=size, leading=size * 1.25, wordWrap="CJK")


def _markup(text: str) -> str:
    """``text`` escaped for a Paragraph, its non-Latin runs set in the CJK font (its Latin letters look poor)."""
    runs = re.split(r"([^\x00-\u024f]+)", text)
    return "".join(f'<font name="{CJK_FONT}">{escape(run)}</font>' if index % 2 else escape(run)
                   for index, run in enumerate(runs))


def _paragraph(canvas: Canvas, text: str, style: ParagraphStyle, x: float, top: float, width: float) -> float:
    """Draw ``text`` wrapped to ``width`` with its top at ``top``; return the y below it."""
    paragraph = Paragraph(_markup(text), style)
    _, height = paragraph.wrapOn(canvas, width, PAGE_HEIGHT)
    paragraph.drawOn(canvas, x, top - height)
    return top - height


def _draw_card(canvas: Canvas, card: Card, server: str, top: float) -> None:
    canvas.setDash(3, 3)
    canvas.setLineWidth(0.5)
    canvas.rect(MARGIN, top - CARD_HEIGHT, CARD_WIDTH, CARD_HEIGHT)  # dashed: where to cut the cards apart
    canvas.setDash()
    qr_size = QR_SIZE_MM * mm
    canvas.drawImage(ImageReader(io.BytesIO(qr_png(card.payload))), MARGIN + PAD,
                     top - (CARD_HEIGHT + qr_size) / 2, qr_size, qr_size)
    x = MARGIN + PAD + qr_size + 3 * mm
    y = top - PAD
    canvas.setFont("Helvetica-Bold", 16)
    canvas.drawString(x, y - 13, card.station_id)
    y = _paragraph(canvas, card.name, _style(12), x, y - 17, MIDDLE_WIDTH)
    y = _paragraph(canvas, f"村 Village: {card.village or '-'}  ·  代理 Agent: {card.agent or '-'}", _style(9),
                   x, y - 1, MIDDLE_WIDTH)
    y = _paragraph(canvas, "登记码 Enrollment code", _style(8), x, y - 4, MIDDLE_WIDTH)
    canvas.setFont("Courier-Bold", 22)
    canvas.drawString(x, y - 18, card.code)
    y = _paragraph(canvas, f"服务器 Server: {server}", _style(8), x, y - 23, MIDDLE_WIDTH)
    _paragraph(canvas, f"有效期至 Valid until: {card.valid_until}", _style(8), x, y - 1, MIDDLE_WIDTH)
    x += MIDDLE_WIDTH + 3 * mm
    width = MARGIN + CARD_WIDTH - PAD - x
    y = _paragraph(canvas, "技术员步骤 Steps for the technician", _style(8, "Helvetica-Bold"), x, top - PAD - 2,
                   width)
    for number, (zh, en) in enumerate(zip(STEPS_ZH, STEPS_EN, strict=True), start=1):
        y = _paragraph(canvas, f"{number}. {zh}", _style(8), x, y - 2, width)
        y = _paragraph(canvas, en, _style(7.5), x + 3 * mm, y, width - 3 * mm)


def sheet_pdf(sheet: Sheet) -> bytes:
    """The sheet as a PDF: the same cards as the HTML, ``CARDS_PER_PAGE`` to an A4 page."""
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True)
    canvas.setTitle(" ".join(SHEET_TITLE))
    pages = sheet.pages()
    for number, cards in enumerate(pages, start=1):
        top = PAGE_HEIGHT - MARGIN
        _paragraph(canvas, " ".join(SHEET_TITLE), _style(13, "Helvetica-Bold"), MARGIN, top, CARD_WIDTH)
        _paragraph(canvas, f"{sheet.issued} - {number}/{len(pages)}", _style(8), PAGE_WIDTH - MARGIN - 60 * mm,
                   top - 2, 60 * mm)
        _paragraph(canvas, " ".join(CONFIDENTIAL), _style(8, "Helvetica-Bold"), MARGIN, top - 19, CARD_WIDTH)
        for index, card in enumerate(cards):
            _draw_card(canvas, card, sheet.server, top - HEADER_HEIGHT - index * CARD_HEIGHT)
        canvas.showPage()
    canvas.save()
    return out.getvalue()
