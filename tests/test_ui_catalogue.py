"""The zh catalogue: every UI string and every refusal template translated, and the committed .mo up to date."""

from __future__ import annotations

import inspect
from io import BytesIO
from pathlib import Path

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
