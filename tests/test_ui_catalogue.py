"""The zh catalogue: every UI string and every refusal template translated, and the committed .mo up to date."""

from __future__ import annotations

import inspect
import re
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

import station
from station import errors, feedback
from station.ui import common

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "station/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
MO = PO.with_suffix(".mo")


def zh_catalogue():
    with open(PO, "rb") as handle:
        return read_po(handle, locale="zh_Hans_CN")


def extracted_ids() -> set[str]:
    """What pybabel extracts with babel.cfg and the N_ keyword (templates and Python)."""
    method_map = [("station/**.py", "python"), ("station/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    ids = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, keywords=keywords, options_map={}
    ):
        ids.add(message if isinstance(message, str) else message[0])
    return ids


def test_every_template_and_refusal_string_is_translated():
    catalogue = zh_catalogue()
    extracted = extracted_ids()
    assert len(extracted) > 150
    missing = sorted(m for m in extracted if not (catalogue.get(m) and catalogue.get(m).string))
    assert missing == []


def test_every_refusal_class_is_in_the_catalogue():
    catalogue = zh_catalogue()
    templates = set(errors.AMOUNT_MESSAGES.values())
    for module in (errors, feedback, common):
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, errors.StationError):
                templates.add(cls.template)
    untranslated = sorted(t for t in templates if not (catalogue.get(t) and catalogue.get(t).string))
    assert untranslated == []


def test_no_fuzzy_or_obsolete_entries():
    catalogue = zh_catalogue()
    assert [m.id for m in catalogue if m.fuzzy and m.id] == []
    assert list(catalogue.obsolete) == []


def test_committed_mo_matches_the_po():
    compiled = BytesIO()
    write_mo(compiled, zh_catalogue())
    compiled.seek(0)
    with open(MO, "rb") as handle:
        committed = {m.id: m.string for m in read_mo(handle) if m.id}
    fresh = {m.id: m.string for m in read_mo(compiled) if m.id}
    assert committed == fresh


def test_translations_folder_is_named_for_flask_babel():
    # Flask-Babel resolves zh_CN to zh_Hans_CN: a folder named zh_CN would never be loaded.
    assert (Path(station.__file__).parent / "translations/zh_Hans_CN/LC_MESSAGES/messages.mo").exists()


# -- Chinese punctuation: full-width in Chinese text (客户：, not 客户: ) ----------------------------------------
RECON_PO = ROOT / "sync_server/recon/translations/zh_Hans_CN/LC_MESSAGES/recon.po"
TEMPLATES = ROOT / "station/templates"
#: Chinese characters, CJK punctuation and the full-width forms.
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
#: A value filled in at run time: %(name)s, %(start)02d, %s, {name}.
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[-+ #0-9.]*[sdfi]|%[sdfi]|\{[a-z_]*\}")
ASCII_PUNCTUATION = ":,;?!()"


def ascii_punctuation_in_chinese(text: str) -> list[str]:
    """The ASCII punctuation a Chinese text should write full-width (：，；？！（）): a mark beside a Chinese
    character, or in a Chinese sentence between values (%(time)s: %(reason)s), and ASCII brackets around Chinese.
    A mark inside Latin text or figures is left alone: 12:30, 1,000.00, https://, Wi-Fi, K7QX-M2PD."""
    if not CJK.search(text):
        return []
    neutral = PLACEHOLDER.sub("\0", text)
    found = []
    for index, mark in enumerate(neutral):
        if mark not in ASCII_PUNCTUATION:
            continue
        before, after = neutral[:index].rstrip(" ")[-1:], neutral[index + 1:].lstrip(" ")[:1]
        latin = [side for side in (before, after) if side.isascii() and (side.isalnum() or side in "/.-_'\"")]
        if CJK.match(before) or CJK.match(after) or not latin:
            found.append(f"{mark!r} at {index}")
    found += [f"({inner}) in ASCII brackets" for inner in re.findall(r"\(([^()]*)\)", neutral) if CJK.search(inner)]
    return found


def test_the_punctuation_rule_finds_ascii_marks_in_chinese_only():
    for wrong in ("客户: 张三", "客户:张三", "好,的", "真的?", "停!", "失败(%(detail)s)", "（网络)",
                  "失败 %(time)s: %(reason)s", "请检查网线, 再试"):
        assert ascii_punctuation_in_chinese(wrong), wrong
    for right in ("客户：张三", "%(time)s：%(reason)s", "最忙：%(start)02d:00 到 %(end)02d:00。", "约 1,000.00 元",
                  "银行服务器，如 https://sync.bank.example", "请检查网线或 Wi-Fi 后再试。", "（A-Z）", "Customer: a"):
        assert ascii_punctuation_in_chinese(right) == [], right


@pytest.mark.parametrize("po", [PO, RECON_PO], ids=["station", "recon"])
def test_chinese_strings_use_full_width_punctuation(po):
    with open(po, "rb") as handle:
        catalogue = read_po(handle, locale="zh_Hans_CN")
    wrong = {}
    for message in catalogue:
        for text in [message.string] if isinstance(message.string, str) else message.string:
            if message.id and ascii_punctuation_in_chinese(text or ""):
                wrong[text] = ascii_punctuation_in_chinese(text)
    assert wrong == {}


def test_templates_glue_no_ascii_punctuation_to_a_translated_string():
    """A colon typed in the template after ``{{ _("Customer") }}`` shows as 客户: in Chinese: the punctuation
    belongs inside the message (``_("Customer: %(name)s")``), where the translation makes it full-width."""
    glued = re.compile(r"(\}\}|%\}) *[:;,!?]|[:;,!?] *\{\{ *_\(")
    found = [f"{path.name}:{number}: {line.strip()}"
             for path in sorted(TEMPLATES.glob("*.html"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if glued.search(line)]
    assert found == []
