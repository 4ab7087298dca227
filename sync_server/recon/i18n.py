"""Recon's words in the clerk's language: Chinese (``zh``, the default) or English (``en``).

Messages are English message ids (``N_`` in ``kinds`` and elsewhere in ``sync_server.recon``); the Chinese ones
come from the Babel catalogue ``sync_server/recon/translations/zh_Hans_CN/LC_MESSAGES/recon.po`` (compiled to
``recon.mo``; ``tests/test_recon_i18n.py`` keeps it complete). Amounts are shown in yuan from integer fen.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path

from babel.support import NullTranslations, Translations

from station.protocol.money import format_yuan

LANGUAGES = ("zh", "en")
CATALOGUE_DIR = Path(__file__).parent / "translations"
_LOCALES = {"zh": "zh_Hans_CN", "en": "en"}


@functools.cache
def translations(lang: str) -> NullTranslations:
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    if lang == "en":
        return NullTranslations()
    return Translations.load(str(CATALOGUE_DIR), [_LOCALES[lang]], domain="recon")


def gettext(lang: str, message: str) -> str:
    return translations(lang).gettext(message)


def labelled(lang: str, label: str, value: str) -> str:
    """``label: value`` in ``lang``: Chinese takes the full-width colon (金额：¥35.50), English ``: ``."""
    return gettext(lang, label) + ("：" if lang == "zh" else ": ") + value


def money(fen: int | None, lang: str) -> str:
    """``¥1,234.50`` (zh) or ``CNY 1,234.50`` (en), ``-¥35.50`` below zero; an empty text for None."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    return sign + ("¥" if lang == "zh" else "CNY ") + format_yuan(abs(fen))


def render(lang: str, message: str, values: dict) -> str:
    """The message in ``lang`` with ``{name}`` filled; a name without a value is shown as ``?``."""
    text = gettext(lang, message)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        return text.format(**{name: "?" if values.get(name) is None else values[name] for name in names})
    except (ValueError, IndexError, KeyError, AttributeError):
        return text  # not a template (e.g. a reason recorded by the server): shown as it is
