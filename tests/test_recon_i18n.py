"""Recon's zh catalogue: every message translated with the same placeholders, and the committed .mo up to date."""

from __future__ import annotations

import functools
import string
from io import BytesIO
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from sync_server.recon.i18n import labelled, money, render
from sync_server.recon.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]
PO = ROOT / "sync_server/recon/translations/zh_Hans_CN/LC_MESSAGES/recon.po"
MO = PO.with_suffix(".mo")


def catalogue():
    with open(PO, "rb") as handle:
        return read_po(handle, locale="zh_Hans_CN")


@functools.cache
def extracted_ids() -> frozenset[str]:
    """What ``pybabel extract -F babel-recon.cfg -k N_`` finds in sync_server/recon."""
    found = extract_from_dir(str(ROOT / "sync_server/recon"), [("**.py", "python")], keywords={"N_": None})
    return frozenset(message for _file, _line, message, _comments, _context in found)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_recon_message_is_translated_with_the_same_placeholders():
    zh = catalogue()
    extracted = extracted_ids()
    assert len(extracted) > 150
    for spec in KINDS.values():
        assert {spec.explanation, spec.action} <= extracted
    missing = sorted(m for m in extracted if not (zh.get(m) and zh.get(m).string))
    assert missing == []
    mismatched = sorted(m for m in extracted if placeholders(m) != placeholders(zh.get(m).string))
    assert mismatched == []


def test_no_fuzzy_or_obsolete_entries():
    zh = catalogue()
    assert not zh.fuzzy  # pybabel compile skips a catalogue whose header is fuzzy
    assert [m.id for m in zh if m.fuzzy and m.id] == []
    assert sorted(m.id for m in zh if m.id and m.id not in extracted_ids()) == []


def test_committed_mo_matches_the_po():
    compiled = BytesIO()
    write_mo(compiled, catalogue())
    compiled.seek(0)
    with open(MO, "rb") as handle:
        committed = {m.id: m.string for m in read_mo(handle) if m.id}
    assert committed == {m.id: m.string for m in read_mo(compiled) if m.id}


def test_explanations_in_chinese_by_default_and_in_english_on_request():
    spec = KINDS["rejected_offline_debit"]
    values = {"station": "ST-0001", "amount": money(50_000, "zh"), "account": "DM00010003", "seq": 42,
              "reason": "not_authorized"}
    assert render("zh", spec.explanation, values) == (
        "网点 ST-0001 离线向账户 DM00010003 付出 ¥500.00（序号 42），银行已拒绝（not_authorized）：这笔现金须追回。")
    values["amount"] = money(50_000, "en")
    assert render("en", spec.explanation, values).startswith("Station ST-0001 paid out CNY 500.00 to account")
    # A value missing from the discrepancy shows as "?", never as a KeyError.
    assert "?" in render("en", spec.explanation, {})


def test_a_label_and_its_value_take_the_colon_of_the_language():
    assert labelled("zh", "What to do", "核对流水") == "处理办法：核对流水"
    assert labelled("en", "What to do", "check the journal") == "What to do: check the journal"
