"""What a recorded entry hands back to its caller: the receipt, and the customer's number as receipts show it.

A card or passbook number never appears in full on a receipt (nor in a token or a log): ``mask_number`` is
the one place that decides how much of it a receipt shows.

Today's list (:func:`todays_receipts`) holds the customer operations and the journal-only entries that have a
receipt (the registry's ``label``: day open and close, customer voice, and any later type that declares one),
newest first, each with its customer when it names one; a search finds rows by the tail of the customer's card
or passbook number or by amount.
"""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import NamedTuple

from peewee import JOIN

from station.context import Station, bound_station
from station.db import Customer, JournalEntry, Operation
from station.protocol.entry_types import N_, SPECS, OperationState
from station.protocol.money import AmountError, parse_amount
from station.protocol.tokens import unverified_payload

#: Journal-only entry types with a receipt (a label in the registry but no operation row), e.g. day open/close.
JOURNAL_ONLY_TYPES = tuple(t for t, spec in SPECS.items() if spec.label and not spec.customer_operation)
#: The reasons a supervisor picks for a reversal (msgids: the screen and the paper show them translated).
REVERSAL_REASONS = (N_("Wrong amount"), N_("Wrong customer"), N_("Customer changed mind"))
#: A card or passbook tail typed in the search has at least this many digits (fewer is read as an amount only).
TAIL_DIGITS = 4


@dataclass(frozen=True)
class Receipt:
    seq: int
    txn: str | None
    type: str
    token: str
    amount_fen: int
    fee_fen: int
    status: str
    account_masked: str | None
    recorded_at: datetime
    details: dict = field(default_factory=dict)
    #: Its signed effect on the drawer in fen (a reversal of a withdrawal takes cash back: positive).
    cash_fen: int = 0


@dataclass(frozen=True)
class ListedReceipt:
    """One row of today's receipts: an operation or a journal-only entry, with its customer when it has one.

    ``status`` is None for a journal-only entry (it has no standing with the bank of its own).
    """

    seq: int
    type: str
    recorded_at: datetime
    amount_fen: int
    status: str | None
    customer_name: str | None = None
    customer_masked: str | None = None


def mask_number(number: str | None, kind: str = "card") -> str | None:
    """A card or passbook number as a receipt may show it: a card (or an account) by its first four and last four
    digits, as bank slips print a card (6228 **** 1234); a passbook by its last four alone (****1234), as a
    passbook's account is quoted, so the two never look alike."""
    if not number:
        return None
    if kind == "passbook" or len(number) <= 8:
        return "****" + number[-4:]
    return f"{number[:4]} **** {number[-4:]}"


class CustomerNumber(NamedTuple):
    """The number a customer is known by at the counter: its kind (``card`` or ``passbook``) and its mask."""

    kind: str
    masked: str


def customer_number(customer: Customer | None) -> CustomerNumber | None:
    """The customer's card number, else (a passbook-only customer) the passbook's, masked as its kind is; None
    without a customer. The screens label it with its kind (卡 / 存折); the receipt shows the same mask."""
    if customer is None:
        return None
    if customer.card_number:
        return CustomerNumber("card", mask_number(customer.card_number))
    if customer.passbook_number:
        return CustomerNumber("passbook", mask_number(customer.passbook_number, "passbook"))
    return None


def customer_masked(customer: Customer | None) -> str | None:
    """The customer's card (else passbook) number, masked (``customer_number``); None without a customer."""
    number = customer_number(customer)
    return number.masked if number else None


def new_txn_id() -> str:
    """A fresh transaction UUID, chosen by the station (the idempotency key of an operation)."""
    return str(uuid.uuid4())


@bound_station
def receipt_for(st: Station, op: Operation, token: str | None = None) -> Receipt:
    """The receipt of a recorded operation (its journal entry's token plus what the screen shows)."""
    if token is None:
        token = JournalEntry.get_by_id(op.seq).token
    return Receipt(
        seq=op.seq,
        txn=op.txn,
        type=op.type,
        token=token,
        amount_fen=op.amount_fen,
        fee_fen=op.fee_fen,
        status=op.status,
        account_masked=customer_masked(op.customer) if op.customer_id else None,
        recorded_at=op.created_at,
        details=dict(op.details or {}),
        cash_fen=op.cash_fen,
    )


def entry_receipt(entry: JournalEntry, amount_fen: int = 0, details: dict | None = None) -> Receipt:
    """The receipt of a journal entry that is not a customer operation (agent, day open and close)."""
    return Receipt(
        seq=entry.seq,
        txn=entry.txn,
        type=entry.type,
        token=entry.token,
        amount_fen=amount_fen,
        fee_fen=0,
        status=OperationState.RECORDED,
        account_masked=None,
        recorded_at=entry.recorded_at,
        details=details or {},
    )


def _local_day_bounds(st: Station) -> tuple[datetime, datetime]:
    """Today's local midnight and the next one, as aware datetimes (compared with UTC columns)."""
    start = datetime.combine(st.local_date(), time(0), tzinfo=st.timezone)
    return start, datetime.combine(st.local_date() + timedelta(days=1), time(0), tzinfo=st.timezone)


def search_terms(query: str) -> tuple[str | None, int | None]:
    """What a typed search means: a card or passbook tail (4 digits or more) and/or an amount in yuan.

    "1000" finds both a card ending in 1000 and 1,000 yuan; "50" and "12.5" are amounts only. Text that is
    neither (letters, an absurd amount) finds nothing rather than failing.
    """
    text = "".join(unicodedata.normalize("NFKC", query).split())
    tail = text if text.isascii() and text.isdigit() and len(text) >= TAIL_DIGITS else None
    try:
        amount_fen = parse_amount(text)
    except AmountError:
        amount_fen = None
    return tail, amount_fen


@bound_station
def todays_receipts(st: Station, query: str = "") -> list[ListedReceipt]:
    """Today's receipts (the station's local date), newest first; with ``query``, only the rows it finds."""
    searching = bool(query.strip())
    tail, amount_fen = search_terms(query) if searching else (None, None)

    def found(amount: int, number: str | None = None) -> bool:
        return not searching or amount == amount_fen or bool(tail and number and number.endswith(tail))

    rows = []
    operations = (Operation.select(Operation, Customer).join(Customer, JOIN.LEFT_OUTER)
                  .where(Operation.business_date == st.local_date().isoformat()))
    for op in operations:
        customer = op.customer if op.customer_id else None
        number = (customer.card_number or customer.passbook_number) if customer else None
        if found(op.amount_fen, number):
            rows.append(ListedReceipt(seq=op.seq, type=op.type, recorded_at=op.created_at,
                                      amount_fen=op.amount_fen, status=op.status,
                                      customer_name=customer.name if customer else None,
                                      customer_masked=customer_masked(customer)))
    start, end = _local_day_bounds(st)
    entries = JournalEntry.select().where(JournalEntry.type.in_(JOURNAL_ONLY_TYPES), JournalEntry.recorded_at >= start,
                                          JournalEntry.recorded_at < end)
    for entry in entries:
        payload = unverified_payload(entry.token)
        amount = payload.get("amount", 0)
        amount = amount if isinstance(amount, int) and not isinstance(amount, bool) else 0
        # An entry naming a customer's account (e.g. a transfer the customer stopped) lists them as well.
        account = payload.get("account")
        customer = Customer.get_or_none(Customer.account_id == account) if isinstance(account, str) else None
        number = (customer.card_number or customer.passbook_number) if customer else None
        if found(amount, number):
            rows.append(ListedReceipt(seq=entry.seq, type=entry.type, recorded_at=entry.recorded_at,
                                      amount_fen=amount, status=None,
                                      customer_name=customer.name if customer else None,
                                      customer_masked=customer_masked(customer)))
    rows.sort(key=lambda row: row.seq, reverse=True)
    return rows
