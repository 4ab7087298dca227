"""Scam markers and the fraud warning's rule, shared by the station (which shows the warning) and the bank (which
re-checks every transfer against the same rule on ingest).

A transfer gets the fraud warning when its payee is new to the customer, its amount is at least
``fraud_warning_fen``, or its payee name carries a scam marker (``scam_markers``: words that
impersonation and "safe account" scams use, sent down by the bank in the policy), whatever the amount. Going past
a warning on a transfer of at least ``fraud_supervisor_fen`` needs a supervisor's PIN. Markers are matched on text
normalised by ``fold``: NFKC (full-width letters and digits become half-width), every space removed, case folded,
so "公 安 局" and "ＰＯＬＩＣＥ" match "公安" and "police".

Invariant: the station and the bank decide from one function (``warning_for``) and one validated policy value
(``valid_markers``: a list of at most ``MAX_MARKERS`` printable strings of 1 to ``MAX_MARKER_LENGTH``
characters); a policy value that is not valid is never used, the default list is (``station.protocol.policy``).
Pure code: no Flask or peewee import.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

#: What China's anti-fraud campaigns (国家反诈中心, 96110) warn about: impersonated police, courts, customs and
#: prosecutors, "safe accounts", frozen funds and "fund checks", fake loans, refunds and investment schemes.
DEFAULT_SCAM_MARKERS: tuple[str, ...] = (
    "安全账户", "安全帐户", "警官", "公安", "派出所", "法院", "检察院", "海关", "专案", "冻结", "资金核查", "验资",
    "洗钱", "通缉", "保证金", "解冻", "刷单", "退款", "理赔", "贷款", "征信", "中奖",
)
MAX_MARKERS = 64
MAX_MARKER_LENGTH = 16


def fold(text: str) -> str:
    """``text`` as markers are matched on it: NFKC (full-width to half-width), no spaces at all, case folded."""
    return "".join(unicodedata.normalize("NFKC", text).split()).casefold()


def valid_markers(value) -> tuple[str, ...] | None:
    """``value`` as a policy's marker list, when it is one: a list of at most ``MAX_MARKERS`` strings, each
    printable and of 1 to ``MAX_MARKER_LENGTH`` characters (and not only spaces); None otherwise."""
    if not isinstance(value, list) or len(value) > MAX_MARKERS:
        return None
    for marker in value:
        if (not isinstance(marker, str) or not 0 < len(marker) <= MAX_MARKER_LENGTH or not marker.isprintable()
                or not fold(marker)):
            return None
    return tuple(value)


def matched_markers(markers, *texts: str) -> tuple[str, ...]:
    """The markers (as the policy spells them) found in any of ``texts``, in the policy's order, once each."""
    folded = [fold(text) for text in texts if text]
    return tuple(dict.fromkeys(m for m in markers if any(fold(m) in text for text in folded)))


@dataclass(frozen=True)
class FraudWarning:
    """Why a transfer gets the fraud warning (nothing true: it does not), and whether going past it needs a
    supervisor's PIN (``needs_supervisor``)."""

    new_payee: bool
    over_threshold: bool
    markers: tuple[str, ...]
    needs_supervisor: bool

    def __bool__(self) -> bool:
        return self.new_payee or self.over_threshold or bool(self.markers)


def warning_for(policy: dict, *, known_payee: bool, amount_fen: int, payee_name: str) -> FraudWarning:
    """The fraud warning a transfer of ``amount_fen`` to ``payee_name`` gets under ``policy`` (a merged station
    policy)."""
    over = amount_fen >= policy["fraud_warning_fen"]
    markers = matched_markers(policy["scam_markers"], payee_name)
    shown = not known_payee or over or bool(markers)
    return FraudWarning(new_payee=not known_payee, over_threshold=over, markers=markers,
                        needs_supervisor=shown and amount_fen >= policy["fraud_supervisor_fen"])


def is_elderly(birth_year, this_year: int, elderly_age: int) -> bool:
    """Whether a customer born in ``birth_year`` (None: unknown) is ``elderly_age`` or older this year."""
    return isinstance(birth_year, int) and this_year - birth_year >= elderly_age
