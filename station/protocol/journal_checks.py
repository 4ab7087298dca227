"""What a verified journal must also make sense as: the checks after the signatures and the chain.

``check_journal_semantics`` runs over the payloads of a whole journal (seq 1 onwards) that ``verify_chain`` has
already accepted, and returns every problem it finds as data (a :class:`JournalProblem` per finding), not only the
first. docs/protocol.md ("Verifying a journal", steps 7 to 11) is the spec; in short:

- every entry is of a known type and carries exactly the fields its spec in ``station.protocol.entry_types``
  gives, each of its JSON type: counts and amounts are integers (``true`` and ``21.0`` are not), none of them
  negative except a day close's ``variance``;
- each ``txn`` appears once in the journal;
- a ``reversal`` or ``transfer_cancel`` names with ``ref_seq`` an earlier entry of a type it may undo, whose
  ``txn`` is its ``ref_txn`` and whose ``amount`` is its ``amount``, and no entry is undone twice;
- the drawer, replayed from the entries' cash effects, is opened by ``day_open`` (to its counted ``amount``),
  never goes below zero, carries every customer operation inside an open day, and is closed by ``day_close``
  whose ``expected`` equals the replayed drawer and whose ``variance`` is ``amount - expected``; a ``counts``
  object adds up to its entry's ``amount``;
- a ``clock_corrected`` adds up: ``behind_ms`` is exactly ``floor`` − ``ts``, beyond the clock tolerance, and the
  floor is no earlier than the entry before it (``station.protocol.clock_corrections``);
- a ``complaint_12315`` is one the bank accepts: consent, phone, texts, and the entry's own complaint number
  (``station.protocol.complaints.complaint_entry_problem``).

Pure code (no Flask, no peewee): any verifier of an exported journal can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from station.protocol.clock_corrections import correction_problem
from station.protocol.complaints import complaint_entry_problem
from station.protocol.entry_types import EntryType, field_problems, originals_of, types_where
from station.protocol.tokens import is_integer, rotation_key

#: Entries that need an open business day (they move money for a customer or answer one).
CUSTOMER_OPERATIONS = frozenset(types_where(customer_operation=True))
#: What a reversal or a transfer cancellation may point at with ``ref_seq``.
_ORIGINAL_TYPES = frozenset().union(*(originals_of(t) for t in EntryType))


@dataclass(frozen=True)
class JournalProblem:
    """One finding: the entry's seq and what is wrong with it."""

    seq: int | None
    reason: str

    def as_dict(self) -> dict:
        """``{"seq": ..., "reason": ...}`` for JSON output."""
        return {"seq": self.seq, "reason": self.reason}


@dataclass(frozen=True)
class _Undoable:
    """What a later reversal or cancellation needs to know about an earlier entry."""

    type: str
    txn: Any
    amount: Any
    cash: int


def cash_effect(payload: Mapping[str, Any], original_cash: int = 0) -> int:
    """The entry's effect on the drawer in fen; ``original_cash`` is the reversed entry's effect (reversals only).

    Withdrawal ``-amount``; deposit ``+amount``; bill paid in cash ``+(amount + fee)``; reversal: minus the
    original's effect; every other entry 0. Amounts that are not integers count as 0 (reported elsewhere).
    """
    amount = payload.get("amount") if is_integer(payload.get("amount")) else 0
    fee = payload.get("fee") if is_integer(payload.get("fee")) else 0
    entry_type = payload.get("type")
    if entry_type == "withdrawal":
        return -amount
    if entry_type == "deposit":
        return amount
    if entry_type == "bill_payment" and payload.get("funding") == "cash":
        return amount + fee
    if entry_type == "reversal":
        return -original_cash
    return 0


def _type_problems(payload: Mapping[str, Any]) -> list[str]:
    """The registry's field rules (``entry_types.field_problems``) plus the sum of ``counts``."""
    reasons = field_problems(dict(payload))
    if "counts" in payload and isinstance(payload["counts"], dict):
        reasons.extend(_count_problems(payload))
    return reasons


def _count_problems(payload: Mapping[str, Any]) -> list[str]:
    counts = payload["counts"]
    total = 0
    for denomination, pieces in counts.items():
        if not denomination.isdecimal() or not denomination.isascii() or not is_integer(pieces) or pieces < 0:
            return [f"counts holds {denomination!r}: {pieces!r}, not fen: pieces"]
        total += int(denomination) * pieces
    if is_integer(payload.get("amount")) and total != payload["amount"]:
        return [f"counts add up to {total}, not the amount {payload['amount']}"]
    return []


def check_journal_semantics(payloads: Iterable[Mapping[str, Any]]) -> list[JournalProblem]:
    """Every problem of a chain-verified journal's payloads (in seq order from 1), as data; empty when sound."""
    problems: list[JournalProblem] = []
    txn_seen: dict[Any, Any] = {}
    undoable: dict[int, _Undoable] = {}
    undone: dict[int, Any] = {}
    drawer: int | None = None
    opened_at: Any = None
    previous_ts: Any = None
    for payload in payloads:
        seq = payload.get("seq")

        def report(reason: str, seq=seq) -> None:
            problems.append(JournalProblem(seq, reason))

        for reason in _type_problems(payload):
            report(reason)
        # A type or txn of the wrong JSON type is reported by the field rules above; here it only must not crash.
        entry_type = payload.get("type") if isinstance(payload.get("type"), str) else ""
        txn = payload.get("txn")
        if isinstance(txn, str):
            if txn in txn_seen:
                report(f"txn {txn} was already used by seq {txn_seen[txn]}")
            else:
                txn_seen[txn] = seq
        original_cash = 0
        if originals_of(entry_type):
            original_cash = _check_reference(payload, undoable, undone, report)
        cash = cash_effect(payload, original_cash)
        jwk = payload.get("jwk")
        if entry_type == EntryType.KEY_ROTATION and isinstance(jwk, dict) and rotation_key(payload, "") is None:
            # What the bank rejects as malformed_entry: the chain's key does not change (``KeyTrack``).
            report("the key rotation names no Ed25519 public key: it hands over nothing")
        if entry_type == EntryType.CLOCK_CORRECTED and (problem := correction_problem(dict(payload), previous_ts)):
            report(f"the clock correction does not add up: {problem}")
        if entry_type == EntryType.COMPLAINT_12315 and isinstance(payload.get("station"), str) and (
                problem := complaint_entry_problem(dict(payload), payload["station"])):
            report(f"the complaint is not one the bank accepts: {problem}")
        previous_ts = payload.get("ts")
        if entry_type == EntryType.DAY_OPEN:
            if drawer is not None:
                report(f"a day is opened while the day opened at seq {opened_at} is still open")
            drawer = payload["amount"] if is_integer(payload.get("amount")) else 0
            opened_at = seq
        elif entry_type == EntryType.DAY_CLOSE:
            if drawer is None:
                report("a day is closed that is not open")
            else:
                _check_close(payload, drawer, report)
            drawer = None
        elif entry_type in CUSTOMER_OPERATIONS:
            if drawer is None:
                report(f"a {entry_type} outside an open business day")
            else:
                drawer += cash
                if drawer < 0:
                    report(f"the drawer would hold {drawer} fen")
        if is_integer(seq) and entry_type in _ORIGINAL_TYPES:
            undoable[seq] = _Undoable(entry_type, txn, payload.get("amount"), cash)
    return problems


def _check_reference(payload, undoable, undone, report) -> int:
    """Check a reversal's or cancellation's ``ref_seq``/``ref_txn``; return the original's cash effect."""
    entry_type = payload["type"]
    ref_seq = payload.get("ref_seq")
    original = undoable.get(ref_seq) if is_integer(ref_seq) else None
    if original is None or original.type not in originals_of(entry_type):
        allowed = " or ".join(sorted(originals_of(entry_type)))
        report(f"ref_seq {ref_seq!r} names no earlier {allowed}")
        return 0
    if payload.get("ref_txn") != original.txn:
        report(f"ref_txn {payload.get('ref_txn')!r} is not the txn of seq {ref_seq} ({original.txn})")
    if payload.get("amount") != original.amount:
        report(f"amount {payload.get('amount')!r} is not the amount of seq {ref_seq} ({original.amount!r})")
    if ref_seq in undone:
        report(f"seq {ref_seq} was already undone by seq {undone[ref_seq]}")
    else:
        undone[ref_seq] = payload.get("seq")
    return original.cash


def _check_close(payload, drawer: int, report) -> None:
    expected = payload.get("expected")
    if expected != drawer:
        report(f"expected is {expected!r}, but the entries since the day opened leave {drawer} fen in the drawer")
    amount = payload.get("amount")
    if is_integer(amount) and is_integer(expected) and payload.get("variance") != amount - expected:
        report(f"variance is {payload.get('variance')!r}, not amount - expected = {amount - expected}")
