"""What a recorded entry hands back to its caller: the receipt, and the customer's number as receipts show it.

A card or passbook number never appears in full on a receipt (nor in a token or a log): ``mask_number`` is
the one place that decides how much of it a receipt shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from station.context import Station, bound_station
from station.db import Customer, JournalEntry, Operation
from station.protocol.entry_types import OperationState


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
