"""The one registry of journal entry types: what each type means, carries and does.

Everything else is driven from this table or tested against it: the station's writers, the server's handler
table (``sync_server.posting_rules.Applier.HANDLERS``), the UI's flows and labels, printing, and the "Entry types" table
of docs/protocol.md (``markdown_table`` renders it; ``python -m station.protocol.entry_types`` prints it).

Adding a type means: an ``EntryType`` member and its ``SPECS`` row here, a station writer, a server handler, a UI
flow when agents start it from a home tile, its labels in the catalogue, and the docs row;
``tests/test_entry_types.py`` fails naming whichever is missing.

Pure code: no Flask or peewee import (the server imports it).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from station.protocol.money import MAX_AMOUNT_FEN


def N_(text: str) -> str:
    """Mark a string for translation without translating it here (babel extracts ``N_``)."""
    return text


class EntryType(StrEnum):
    """Every journal entry type (the payload's ``type``)."""

    START = "start"
    AGENT_ADDED = "agent_added"
    AGENT_PIN_FAILED = "agent_pin_failed"
    AGENT_UNLOCKED = "agent_unlocked"
    CUSTOMER_PIN_FAILED = "customer_pin_failed"
    DAY_OPEN = "day_open"
    DAY_CLOSE = "day_close"
    WITHDRAWAL = "withdrawal"
    DEPOSIT = "deposit"
    TRANSFER = "transfer"
    TRANSFER_CANCEL = "transfer_cancel"
    TRANSFER_STOPPED = "transfer_stopped"
    BILL_PAYMENT = "bill_payment"
    BALANCE_ENQUIRY = "balance_enquiry"
    REVERSAL = "reversal"
    FEEDBACK = "feedback"
    KEY_ROTATION = "key_rotation"
    CLOCK_CORRECTED = "clock_corrected"
    COMPLAINT_12315 = "complaint_12315"
    WMP_ORDER = "wmp_order"


class OperationState(StrEnum):
    """The states of a customer operation, as a person sees them."""

    RECORDED = "recorded"
    SETTLED = "settled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    REVERSED = "reversed"


#: States in which an operation still counts against limits and allowances, and may be reversed.
LIVE_STATES = (OperationState.RECORDED, OperationState.SETTLED)


@dataclass(frozen=True)
class StateLabel:
    """How a person reads an operation state: the UI's msgid and the (Chinese, English) pair printed on paper."""

    label: str
    printed: tuple[str, str]


#: One label per operation state, for the receipt screens and the paper receipt.
STATE_LABELS = MappingProxyType({
    OperationState.RECORDED: StateLabel(N_("Recorded offline, waiting for the bank"),
                                        ("已离线记录，等待银行处理", "Recorded offline, waiting for the bank")),
    OperationState.SETTLED: StateLabel(N_("Settled by the bank"), ("银行已确认", "Settled by the bank")),
    OperationState.REJECTED: StateLabel(N_("Rejected by the bank"), ("银行已拒绝", "Rejected by the bank")),
    OperationState.CANCELLED: StateLabel(N_("Cancelled"), ("已撤销", "Cancelled")),
    OperationState.REVERSED: StateLabel(N_("Reversed"), ("已冲正", "Reversed")),
})


class Effect(StrEnum):
    """What an entry does to the customer's account at the bank."""

    DEBIT = "debit"
    CREDIT = "credit"
    INVERSE = "inverse"  # the inverse of the original operation's effect
    NONE = "none"


class Kind(StrEnum):
    """The JSON type of a payload field. A JSON ``true`` is not an integer, nor is ``21.0``."""

    FEN = "fen"
    POSITIVE_FEN = "positive fen"
    INTEGER = "integer"
    COUNT = "count"
    BOOLEAN = "boolean"
    ID = "id"
    TEXT = "text"
    UUID = "uuid"
    OBJECT = "object"
    COUNTS = "counts"
    FEN_OR_NULL = "fen or null"
    TEXTS = "texts"


#: The most strings a ``texts`` field holds.
MAX_TEXTS = 64

#: The largest integer any payload field holds: 2**53 - 1, where every JSON reader agrees on the value and JCS
#: (``canonical_json``) writes it as this kit does.
MAX_INTEGER = 2**53 - 1

#: What each kind means, for docs/protocol.md.
KIND_DOCS = {
    Kind.FEN: f"JSON integer of fen, 0 to {MAX_AMOUNT_FEN}",
    Kind.POSITIVE_FEN: f"JSON integer of fen, 1 to {MAX_AMOUNT_FEN}",
    Kind.INTEGER: f"JSON integer, -{MAX_INTEGER} to {MAX_INTEGER}",
    Kind.COUNT: f"JSON integer, 0 to {MAX_INTEGER}",
    Kind.BOOLEAN: "JSON `true` or `false`",
    Kind.ID: "non-empty printable string, at most 64 characters",
    Kind.TEXT: "printable string (no control or format characters), at most 255 characters",
    Kind.UUID: "a UUID in its lowercase hyphenated form",
    Kind.OBJECT: "JSON object",
    Kind.COUNTS: 'JSON object: denomination in fen (decimal digits) to a count of pieces, `{"10000": 250}`',
    Kind.FEN_OR_NULL: "fen, or `null`",
    Kind.TEXTS: f"JSON array of at most {MAX_TEXTS} non-empty printable strings of at most 64 characters",
}

#: Rejection reasons a payload check gives (they travel in the signed ack).
MALFORMED_ENTRY = "malformed_entry"
INVALID_AMOUNT = "invalid_amount"
UNKNOWN_TYPE = "unknown_type"

MAX_ID = 64
MAX_TEXT = 255
#: Unicode categories refused in text: controls, format characters (bidi overrides), surrogates, line breaks.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> bool:
    """Whether ``text`` holds no control, format or line-separator character (a receipt and a log show it)."""
    # str.isprintable (C, fast) refuses all of these categories and more (unassigned, private use, spaces other
    # than " "): only text it refuses needs the look at each character's category.
    return text.isprintable() or not any(unicodedata.category(char) in _UNPRINTABLE for char in text)


def printable_text(text: str, replacement: str = "?") -> str:
    """``text`` with each character ``printable`` refuses replaced, e.g. before it goes to a receipt printer."""
    return "".join(replacement if unicodedata.category(char) in _UNPRINTABLE else char for char in text)


def one_line(value, limit: int) -> str | None:
    """``value`` as one line of text a person typed: runs of spaces (the full-width one too) made one, ends
    trimmed; None when it is not a string, is empty or longer than ``limit`` after that, or holds any character
    that cannot be printed (a line break is refused, not turned into a space)."""
    if not isinstance(value, str) or not all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in value):
        return None
    text = " ".join(value.split())
    return text if 0 < len(text) <= limit else None


# The checks below run for every field of every entry the bank receives: each is one expression, ``is_integer``
# written out in it, rather than a chain of calls (a Python call costs more than the test it makes).
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_INTEGER <= value <= MAX_INTEGER


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INTEGER


def _is_fen(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT_FEN


#: A UUID exactly as ``str(uuid.UUID(...))`` writes it (lower-case hex, 8-4-4-4-12): one spelling per UUID.
_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _is_uuid(value) -> bool:
    # A regular expression (C) rather than parsing and printing a uuid.UUID: the server checks every entry's txn.
    return isinstance(value, str) and _UUID_TEXT.fullmatch(value) is not None


def _is_counts(value) -> bool:
    return isinstance(value, dict) and all(
        isinstance(key, str) and key.isascii() and key.isdecimal() and len(key) <= 9
        and _is_int(pieces) and pieces >= 0 for key, pieces in value.items())


def _is_positive_fen(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_AMOUNT_FEN


def _is_id(value) -> bool:
    # ``printable`` only when str.isprintable (C) refuses the text: its answer for every text isprintable accepts.
    return isinstance(value, str) and 0 < len(value) <= MAX_ID and (value.isprintable() or printable(value))


_CHECKS = {
    Kind.FEN: _is_fen,
    Kind.POSITIVE_FEN: _is_positive_fen,
    Kind.INTEGER: _is_int,
    Kind.COUNT: _is_count,
    Kind.BOOLEAN: lambda v: isinstance(v, bool),
    Kind.ID: _is_id,
    Kind.TEXT: lambda v: isinstance(v, str) and len(v) <= MAX_TEXT and printable(v),
    Kind.UUID: _is_uuid,
    Kind.OBJECT: lambda v: isinstance(v, dict),
    Kind.COUNTS: _is_counts,
    Kind.FEN_OR_NULL: lambda v: v is None or _is_fen(v),
    Kind.TEXTS: lambda v: isinstance(v, list) and len(v) <= MAX_TEXTS and all(_is_id(item) for item in v),
}


def fits(kind: Kind, value) -> bool:
    """Whether ``value`` is a JSON value of ``kind``."""
    return _CHECKS[kind](value)


#: Kinds whose misfit is an ``invalid_amount`` (the rest are ``malformed_entry``).
_AMOUNT_KINDS = (Kind.FEN, Kind.POSITIVE_FEN)


@dataclass(frozen=True)
class Field:
    """One payload field: its JSON kind, whether every entry of the type carries it, and its allowed values."""

    kind: Kind
    required: bool = True
    choices: tuple[str, ...] = ()
    doc: str = ""

    def problem(self, value) -> str | None:
        """The rejection reason for ``value`` in this field, or None."""
        if not _CHECKS[self.kind](value) or (self.choices and value not in self.choices):
            return INVALID_AMOUNT if self.kind in _AMOUNT_KINDS else MALFORMED_ENTRY
        return None


def _optional(kind: Kind, doc: str = "") -> Field:
    return Field(kind, required=False, doc=doc)


#: The fields of every payload, whatever its type.
ENVELOPE_FIELDS = MappingProxyType({
    "v": Field(Kind.COUNT, doc="protocol version, 1"),
    "station": Field(Kind.ID),
    "seq": Field(Kind.COUNT),
    "type": Field(Kind.ID),
    "ts": Field(Kind.ID),
    "prev": Field(Kind.ID),
})


@dataclass(frozen=True)
class EntrySpec:
    """What one entry type means and carries.

    ``customer_operation``: it has a ``txn``, an ``operation`` row at the station and a receipt with a status
    (and so needs an open business day). ``undoes``: the spec fact (``"reversible"`` or ``"cancellable"``) that the
    original an entry of this type points at with ``ref_txn``/``ref_seq`` must have (``originals_of``).
    ``moves_cash``: it posts to the station's drawer (cash) account. ``reversible``: a supervisor's reversal may
    undo it. ``home_tile``: agents start it from a home tile as a keyed-in flow (a customer visit on the
    busy-hours chart). ``label``: the UI's msgid (None: no receipt screen); ``printed``: (Chinese, English) on
    paper. ``fields``: the type's own payload fields besides ``ENVELOPE_FIELDS``; no other field is allowed.
    """

    type: EntryType
    fields: MappingProxyType
    customer_effect: Effect = Effect.NONE
    moves_cash: bool = False
    reversible: bool = False
    cancellable: bool = False
    undoes: str | None = None
    customer_operation: bool = False
    home_tile: bool = False
    label: str | None = None
    printed: tuple[str, str] | None = None
    doc: str = ""

    @property
    def required_fields(self) -> tuple[str, ...]:
        """Fields every entry of this type carries."""
        return tuple(name for name, field in self.fields.items() if field.required)

    @property
    def optional_fields(self) -> tuple[str, ...]:
        """Fields an entry of this type may carry."""
        return tuple(name for name, field in self.fields.items() if not field.required)


def _spec(entry_type: EntryType, fields: dict[str, Field], **facts) -> EntrySpec:
    return EntrySpec(entry_type, MappingProxyType(fields), **facts)


_AGENT = Field(Kind.ID)
_TXN = Field(Kind.UUID)
_ACCOUNT = Field(Kind.ID)
#: A debit's amount: a withdrawal, transfer or bill payment of 0 moves nothing and is no operation (the bank's
#: transfer table refuses one outright).
_AMOUNT = Field(Kind.POSITIVE_FEN)
_FEE = _optional(Kind.FEN, "when not zero")
#: The bank's real-time authorization the operation was recorded under (station.protocol.authorizations).
_AUTH = _optional(Kind.ID, "the auth_id of the bank's real-time authorization, when it was asked online")

SPECS: MappingProxyType = MappingProxyType({spec.type: spec for spec in (
    _spec(EntryType.START, {
        "jwk": Field(Kind.OBJECT, doc="the station's public key, which signs this entry"),
        "software": Field(Kind.TEXT),
        "continues": _optional(Kind.COUNT, "a replacement device: the bank's head seq it continues after"),
    }, doc="seq 1; or seq N + 1 on a replacement device continuing from the bank's head N (prev chains onto it)"),
    _spec(EntryType.AGENT_ADDED, {
        "agent": _AGENT,
        "role": Field(Kind.ID, choices=("agent", "supervisor")),
    }, doc="never the PIN verifier"),
    _spec(EntryType.AGENT_PIN_FAILED, {
        "agent": _AGENT,
        "failures": Field(Kind.COUNT, doc="consecutive"),
        "locked": Field(Kind.BOOLEAN, doc="true at the 5th, never for the last supervisor who can log in"),
        "wait_seconds": _optional(Kind.COUNT, "the last supervisor who can log in, from the 5th: how long they wait "
                                              "before the next try (instead of a lock)"),
    }),
    _spec(EntryType.AGENT_UNLOCKED, {
        "agent": _AGENT,
        "by": Field(Kind.ID, required=False, choices=("supervisor", "technician", "bank_code"),
                    doc="who unlocked: a `supervisor` on the screen (also when absent), the `technician` at the "
                        "device, or the bank by a one-time code read out (`bank_code`)"),
        "supervisor": _optional(Kind.ID, "with `by` supervisor: the supervisor whose PIN the station checked (never "
                                         "journaled); one the station added"),
        "code_counter": _optional(Kind.COUNT, "with `by` bank_code: the counter of the code the bank issued"),
    }, doc="wrong PINs' lock or wait lifted"),
    _spec(EntryType.CUSTOMER_PIN_FAILED, {
        "account": _ACCOUNT,
        "agent": _AGENT,
        "failures": Field(Kind.COUNT),
        "locked": Field(Kind.BOOLEAN, doc="true at the 3rd; the bank then locks the customer"),
    }),
    _spec(EntryType.DAY_OPEN, {
        "agent": _AGENT,
        "amount": Field(Kind.FEN, doc="the counted float"),
        "counts": Field(Kind.COUNTS),
    }, moves_cash=True, label=N_("Day opened"), printed=("日初", "Day open")),
    _spec(EntryType.DAY_CLOSE, {
        "agent": _AGENT,
        "amount": Field(Kind.FEN, doc="counted"),
        "expected": Field(Kind.FEN),
        "variance": Field(Kind.INTEGER, doc="counted − expected"),
        "counts": Field(Kind.COUNTS),
        "operations": Field(Kind.COUNT),
        "business_date": Field(Kind.ID),
        "reason": _optional(Kind.TEXT, "why the drawer is out; required when the variance, short or over, is "
                                       "beyond the policy's day_close_tolerance_fen"),
        "supervisor": _optional(Kind.ID, "the supervisor who approved that variance: their PIN is checked at the "
                                         "station, never journaled; required with the reason"),
    }, moves_cash=True, label=N_("Day closed"), printed=("日终", "Day close")),
    _spec(EntryType.WITHDRAWAL, {
        "txn": _TXN, "agent": _AGENT, "account": _ACCOUNT, "amount": _AMOUNT, "fee": _FEE, "auth": _AUTH,
        "id_hash": _optional(Kind.ID, "64 lowercase hex: HMAC-SHA256 of the ID card number of the person present, "
                             "under the station's key; required above the policy's `id_check_fen` or with `proxy`"),
        "id_last4": _optional(Kind.ID, "the ID card number's last 4 characters (digits, X), with `id_hash`"),
        "proxy": _optional(Kind.BOOLEAN, "true: withdrawn by a proxy (代办) for the account holder"),
    }, customer_effect=Effect.DEBIT, moves_cash=True, reversible=True, customer_operation=True, home_tile=True,
        label=N_("Cash withdrawal"), printed=("取款", "Withdrawal")),
    _spec(EntryType.DEPOSIT, {
        "txn": _TXN, "agent": _AGENT, "account": _ACCOUNT, "amount": _AMOUNT,
    }, customer_effect=Effect.CREDIT, moves_cash=True, reversible=True, customer_operation=True, home_tile=True,
        label=N_("Cash deposit"), printed=("存款", "Deposit")),
    _spec(EntryType.TRANSFER, {
        "txn": _TXN, "agent": _AGENT, "account": _ACCOUNT, "amount": _AMOUNT, "fee": _FEE,
        "payee_account": Field(Kind.ID, doc="in full: the bank executes the transfer"),
        "payee_name": Field(Kind.TEXT),
        "auth": _AUTH,
        "warned": _optional(Kind.BOOLEAN, "`true`: the fraud warning was shown, read with the customer and gone "
                                          "past (present whenever the warning was due)"),
        "approved_by": _optional(Kind.ID, "the supervisor whose PIN let it past the warning (at least "
                                          "`fraud_supervisor_fen`)"),
    }, customer_effect=Effect.DEBIT, cancellable=True, customer_operation=True, home_tile=True,
        label=N_("Transfer"), printed=("转账", "Transfer")),
    _spec(EntryType.TRANSFER_STOPPED, {
        "txn": Field(Kind.UUID, doc="the warning screen's, so a double tap records once"),
        "agent": _AGENT, "account": _ACCOUNT,
        "amount": _AMOUNT,
        "payee_account": Field(Kind.ID),
        "payee_name": Field(Kind.TEXT),
        "new_payee": Field(Kind.BOOLEAN, doc="why the warning showed: a payee new to the customer"),
        "over_threshold": Field(Kind.BOOLEAN, doc="why: at least `fraud_warning_fen`"),
        "markers": Field(Kind.TEXTS, doc="why: the scam markers the payee name matched"),
    }, label=N_("Transfer stopped"), printed=("转账已终止", "Transfer stopped"),
        doc="the customer stopped at the fraud warning: nothing was sent; no PIN"),
    _spec(EntryType.TRANSFER_CANCEL, {
        "txn": _TXN, "agent": _AGENT, "account": _ACCOUNT,
        "ref_txn": Field(Kind.UUID, doc="the transfer withdrawn"),
        "amount": _optional(Kind.FEN, "the transfer's"),
        "ref_seq": _optional(Kind.COUNT, "the transfer's seq"),
        "auth": _AUTH,
    }, customer_effect=Effect.CREDIT, undoes="cancellable", customer_operation=True,
        label=N_("Transfer cancelled"), printed=("撤销转账", "Transfer cancelled")),
    _spec(EntryType.BILL_PAYMENT, {
        "txn": _TXN, "agent": _AGENT, "amount": _AMOUNT, "fee": _FEE,
        "biller": Field(Kind.ID), "ref": Field(Kind.ID),
        "funding": Field(Kind.ID, choices=("cash", "account")),
        "account": _optional(Kind.ID, "when a customer is identified"),
        "auth": _AUTH,
    }, customer_effect=Effect.DEBIT, moves_cash=True, reversible=True, customer_operation=True, home_tile=True,
        label=N_("Bill payment"), printed=("缴费", "Bill payment"), doc="debits the account only when funded from it"),
    _spec(EntryType.BALANCE_ENQUIRY, {
        "txn": _TXN, "agent": _AGENT, "account": _ACCOUNT,
        "amount": Field(Kind.FEN, doc="0"),
        "balance": Field(Kind.FEN_OR_NULL, doc="as shown: the bank's snapshot less this station's debits since"),
        "offline_available": Field(Kind.FEN),
        "as_of": _optional(Kind.ID, "when the snapshot has a time"),
        "auth": _AUTH,
    }, customer_operation=True, home_tile=True, label=N_("Balance"), printed=("余额", "Balance")),
    _spec(EntryType.REVERSAL, {
        "txn": _TXN,
        "agent": Field(Kind.ID, doc="the supervisor"),
        "ref_txn": Field(Kind.UUID, doc="the operation undone"),
        "amount": _optional(Kind.FEN, "the original's"),
        "ref_seq": _optional(Kind.COUNT, "the original's seq"),
        "reason": _optional(Kind.TEXT),
        "account": _optional(Kind.ID, "when the original had one"),
    }, customer_effect=Effect.INVERSE, moves_cash=True, undoes="reversible", customer_operation=True,
        label=N_("Reversal"), printed=("冲正", "Reversal"), doc="its effects are the inverse of the original's"),
    _spec(EntryType.FEEDBACK, {
        "agent": _AGENT,
        "category": Field(Kind.ID, choices=("praise", "complaint", "suggestion")),
        "text": Field(Kind.TEXT, doc="what the customer said"),
        "txn": _optional(Kind.UUID),
    }, label=N_("Customer voice"), printed=("客户之声", "Customer voice")),
    _spec(EntryType.KEY_ROTATION, {
        "jwk": Field(Kind.OBJECT, doc="the next public key, which signs every later entry"),
        "reason": Field(Kind.ID, choices=("scheduled", "bank_request", "technician")),
    }, doc="signed with the old key"),
    _spec(EntryType.CLOCK_CORRECTED, {
        "floor": Field(Kind.ID, doc="the latest moment the station had written down by its clock (its clock floor), "
                                    "which the clock read behind: a UTC time in `ts`'s form"),
        "behind_ms": Field(Kind.COUNT, doc="`floor` − `ts` in milliseconds, exactly; more than 5000"),
        "by": Field(Kind.ID, choices=("technician",), doc="who accepted the clock as right: the technician at the "
                                                          "device (`station clock accept`)"),
        "reason": _optional(Kind.TEXT, "what the technician typed"),
    }, doc="a clock that ran ahead was set right: the parts of the station's clock floor ahead of `ts` come back "
           "to it, and offline debits wait for the next sync; no money moves"),
    _spec(EntryType.COMPLAINT_12315, {
        "agent": _AGENT,
        "complaint_no": Field(Kind.ID, doc="`{station}-{YYYYMMDD}-{seq:06d}`: the station, the entry's local date, "
                                           "its seq (unique bank-wide)"),
        "phone": Field(Kind.ID, doc="the complainant's, in full (the regulator calls back): a mainland mobile "
                                    "`1[3-9]` + 9 digits, or a landline `0AA(A)-NNNNNNN(N)`"),
        "business": Field(Kind.TEXT, doc="the business complained about, one line of at most 60 characters"),
        "category": Field(Kind.ID, choices=("price", "quality", "false_advertising", "service", "food_safety",
                                            "other")),
        "consent": Field(Kind.BOOLEAN, doc="`true`: the complainant agreed to forward it to the regulator"),
        "details": _optional(Kind.TEXT, "what happened, one line of at most 200 characters; required with `other`"),
        "txn": _optional(Kind.UUID, "the form's, so a double tap records once"),
    }, label=N_("12315 complaint"), printed=("12315投诉", "12315 complaint"),
        doc="a consumer complaint for the market regulator, not a customer operation; no money moves"),
    _spec(EntryType.WMP_ORDER, {
        "txn": _TXN, "agent": _AGENT, "account": _ACCOUNT, "amount": _AMOUNT,
        "product": Field(Kind.ID, doc="the wealth-management product's code, from the bank's catalogue"),
        "risk_level": Field(Kind.COUNT, doc="the product's risk level (1 to 5) as the station showed it"),
        "warned": Field(Kind.BOOLEAN, doc="`true`: the risk statement was read with the customer (the bank refuses "
                                            "`false`: `risk_statement_unread`)"),
        "auth": _AUTH,
    }, customer_effect=Effect.DEBIT, customer_operation=True, home_tile=True,
        label=N_("Wealth product order"), printed=("理财申购", "Wealth product order"),
        doc="an order for a wealth-management product, paid from the account: the bank confirms it (settled) or "
            "refuses it (rejected: nothing is taken); online under the bank's real-time grant (`auth`), offline "
            "within the offline allowance"),
)})


def spec_of(entry_type) -> EntrySpec | None:
    """The spec of ``entry_type`` (any value), or None when the registry does not know it."""
    return SPECS.get(entry_type) if isinstance(entry_type, str) else None


def types_where(**facts) -> tuple[EntryType, ...]:
    """The entry types whose spec has every given fact, e.g. ``types_where(reversible=True)``."""
    return tuple(t for t, spec in SPECS.items() if all(getattr(spec, k) == v for k, v in facts.items()))


def originals_of(entry_type) -> frozenset[EntryType]:
    """The types an entry of ``entry_type`` may undo (a reversal: the reversible ones; a transfer cancellation: the
    cancellable ones); empty for a type that undoes nothing."""
    spec = spec_of(entry_type)
    if spec is None or spec.undoes is None:
        return frozenset()
    return frozenset(types_where(**{spec.undoes: True}))


def field_problems(payload: dict) -> list[str]:
    """Every way a payload of a known type departs from its spec, in words (a verifier's report); empty when none.

    The same rules as ``entry_problem``, which gives only the first problem's reason code.
    """
    spec = spec_of(payload.get("type"))
    if spec is None:
        return [f"type {payload.get('type')!r} is not a known entry type"]
    problems = [f"{name} is not a field of a {spec.type} entry"
                for name in payload if name not in ENVELOPE_FIELDS and name not in spec.fields]
    for fields in (ENVELOPE_FIELDS, spec.fields):
        for name, field in fields.items():
            if name not in payload:
                if field.required:
                    problems.append(f"{name} is missing")
            elif field.problem(payload[name]):
                problems.append(f"{name} {_why_not(field, payload[name])}")
    return problems


_NUMBER_KINDS = (Kind.FEN, Kind.POSITIVE_FEN, Kind.INTEGER, Kind.COUNT, Kind.FEN_OR_NULL)


def _why_not(field: Field, value) -> str:
    """Why ``value`` does not fit ``field``, in words."""
    if field.kind in _NUMBER_KINDS and value is not None:
        if not _is_int(value):
            return f"is {value!r}, not an integer"
        if value < 0 and field.kind is not Kind.INTEGER:
            return f"is negative ({value})"
        if value == 0 and field.kind is Kind.POSITIVE_FEN:
            return "is 0, not a positive amount"
    if field.choices and value not in field.choices:
        return f"is {value!r}, not " + " or ".join(field.choices)
    return f"is {value!r}, not {KIND_DOCS[field.kind]}"


def entry_problem(payload) -> str | None:
    """Why a (verified) payload is not a well-formed entry of a known type, or None.

    ``unknown_type`` for a type the registry lacks; ``invalid_amount`` for a fen field that is not an integer
    within range; ``malformed_entry`` for anything else: a missing required field, a field of the wrong JSON type
    or value, text with control characters, a field the type does not have.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return MALFORMED_ENTRY
    plan = _CHECK_PLANS.get(payload["type"])
    if plan is None:
        return UNKNOWN_TYPE
    allowed, checks = plan
    if not allowed.issuperset(payload):
        return MALFORMED_ENTRY
    for name, check, required, choices, reason in checks:
        value = payload.get(name, _MISSING)
        if value is _MISSING:
            if required:
                return MALFORMED_ENTRY
        elif not check(value) or (choices and value not in choices):
            return reason
    return None


_MISSING = object()


def _check_plan(spec: EntrySpec) -> tuple[frozenset, tuple]:
    """What ``entry_problem`` checks of a payload of ``spec``'s type, worked out once: the field names it may carry,
    and each field's (name, check, required, choices, reason) in the order the reasons are given (the envelope's
    fields first, then the type's own), just as ``Field.problem`` decides them."""
    fields = {**ENVELOPE_FIELDS, **spec.fields}
    return frozenset(fields), tuple(
        (name, _CHECKS[field.kind], field.required, frozenset(field.choices),
         INVALID_AMOUNT if field.kind in _AMOUNT_KINDS else MALFORMED_ENTRY) for name, field in fields.items())


#: ``_check_plan`` of every type (the server checks every entry it receives).
_CHECK_PLANS = MappingProxyType({entry_type.value: _check_plan(spec) for entry_type, spec in SPECS.items()})


def _field_cell(fields: dict[str, Field]) -> str:
    parts = []
    for name, field in fields.items():
        extra = [field.kind.value]
        if field.choices:
            extra.append(" or ".join(f"`{c}`" for c in field.choices))
        if field.doc:
            extra.append(field.doc)
        parts.append(f"`{name}` ({'; '.join(extra)})")
    return ", ".join(parts) or "—"


def markdown_table() -> str:
    """docs/protocol.md's "Entry types" table and its key, rendered from the registry."""
    lines = [
        "| type | required fields | optional fields | customer | drawer | reversible | operation | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    yes = {True: "yes", False: "—"}
    for spec in SPECS.values():
        required = {n: f for n, f in spec.fields.items() if f.required}
        optional = {n: f for n, f in spec.fields.items() if not f.required}
        lines.append(f"| `{spec.type}` | {_field_cell(required)} | {_field_cell(optional)} | "
                     f"{spec.customer_effect.value} | {yes[spec.moves_cash]} | {yes[spec.reversible]} | "
                     f"{yes[spec.customer_operation]} | {spec.doc or '—'} |")
    lines += ["", "| kind | JSON value |", "| --- | --- |"]
    lines += [f"| {kind.value} | {doc} |" for kind, doc in KIND_DOCS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
