"""The business day and the drawer: open with a counted float, close with a count, the variance recorded.

Invariants: at most one day is open (``open_day`` refuses a second); the drawer never holds negative cash
(``check_drawer`` before every cash-out, and ``CHECK (cash_fen >= 0)`` on ``business_day``); a count is by
denomination, validated by ``count_total``; the close entry carries what the drawer should hold (``expected``),
what was counted and their difference: ``close_preview`` computes the same ``CloseCount`` before the agent
confirms. A revoked station, or one whose clock is not set, neither opens nor closes a day
(``station.device_state.refuse_new_operations``).

A variance beyond the policy's ``day_close_tolerance_fen`` (either way: a shortage or an overage) closes the day
only with a reason and a supervisor's approval (the supervisor's own session: the PIN is checked by
``station.agents.login_agent`` and never journaled); the close entry then carries ``reason`` and ``supervisor``,
and the bank refuses a close beyond the tolerance without them (``variance_not_approved``).
"""

from __future__ import annotations

from dataclasses import dataclass

from station import errors
from station.agents import AgentSession, check_session
from station.context import Station, bound_station
from station.db import BusinessDay, Operation
from station.device_state import refuse_new_operations
from station.journal import append_entry
from station.protocol.entry_types import N_, EntryType, printable
from station.protocol.money import MAX_AMOUNT_FEN, format_yuan
from station.receipts import Receipt, entry_receipt

#: Denominations a drawer count accepts, in fen: 100, 50, 20, 10, 5, 1 yuan notes/coins, 5 and 1 jiao coins.
DENOMINATIONS_FEN = (10_000, 5_000, 2_000, 1_000, 500, 100, 50, 10)
#: The longest reason for a variance the close entry carries (a short sentence for the bank's cash reconciliation).
MAX_VARIANCE_REASON = 200
#: Why a drawer is out, as the agent picks it (the msgid is what the close entry records, then any typed words
#: after ": ", as reversal reasons are recorded).
VARIANCE_REASONS = (N_("Wrong change"), N_("Fake note"), N_("Miscount"), N_("Unknown"))


def check_drawer(day: BusinessDay, cash_fen: int) -> None:
    """Refuse a change of ``cash_fen`` that would take the drawer below zero."""
    if day.cash_fen + cash_fen < 0:
        raise errors.InsufficientCash(cash=format_yuan(day.cash_fen))


@bound_station
def current_day(st: Station) -> BusinessDay | None:
    """The open business day, if any (at most one is open: ``open_day`` refuses a second)."""
    query = BusinessDay.raw("SELECT * FROM business_day WHERE closed_at IS NULL ORDER BY id DESC LIMIT 1")
    return next(iter(query), None)


def open_day_or_refuse(st: Station) -> BusinessDay:
    """The open business day; refuses when none is open."""
    day = current_day(st)
    if day is None:
        raise errors.DayNotOpen()
    return day


def drawer_cash(st: Station) -> int | None:
    """The cash the drawer should hold now, or None when no day is open."""
    day = current_day(st)
    return None if day is None else day.cash_fen


def count_total(counts: dict) -> tuple[dict, int]:
    """Validate a count by denomination ({fen: pieces}); return the cleaned count and its total in fen."""
    cleaned = {}
    for key, pieces in (counts or {}).items():
        try:
            denomination = int(key)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidCashCount() from exc
        if denomination not in DENOMINATIONS_FEN:
            raise errors.InvalidCashCount()
        if isinstance(pieces, str):
            pieces = pieces.strip() or "0"
            if not pieces.isdecimal():
                raise errors.InvalidCashCount()
            pieces = int(pieces)
        if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 0 or pieces > 1_000_000:
            raise errors.InvalidCashCount()
        if pieces:
            cleaned[str(denomination)] = pieces
    total = sum(int(d) * n for d, n in cleaned.items())
    if total > MAX_AMOUNT_FEN:
        # No drawer holds that much, and no entry may carry it (the bank would reject it as an invalid amount).
        raise errors.CashCountTooLarge(limit=format_yuan(MAX_AMOUNT_FEN))
    return cleaned, total


@bound_station
def open_day(st: Station, session: AgentSession, counts: dict) -> Receipt:
    """Open the business day with the counted cash float."""
    with st.write():
        check_session(st, session)
        refuse_new_operations(st)
        if current_day(st) is not None:
            raise errors.DayAlreadyOpen()
        cleaned, total = count_total(counts)
        now = st.now()
        BusinessDay.create(
            business_date=st.local_date(now).isoformat(),
            opened_at=now,
            opened_by=session.agent_id,
            float_fen=total,
            open_counts=cleaned,
            cash_fen=total,
        )
        body = {"agent": session.agent_id, "amount": total, "counts": cleaned}
        entry = append_entry(st, EntryType.DAY_OPEN, now, body)
    return entry_receipt(entry, total, {"counts": cleaned})


@dataclass(frozen=True)
class CloseCount:
    """The figures of a day close: what the drawer should hold, what was counted, their difference, and whether
    the difference is beyond the tolerance (a reason and a supervisor's approval needed)."""

    expected_fen: int
    counted_fen: int
    variance_fen: int
    counts: dict
    needs_approval: bool = False


def variance_tolerance(st: Station) -> int:
    """The variance (fen, either way) a day closes with and no supervisor (policy ``day_close_tolerance_fen``)."""
    return int(st.policy["day_close_tolerance_fen"])


def _close_count(st: Station, day: BusinessDay, counts: dict) -> CloseCount:
    cleaned, counted = count_total(counts)
    variance = counted - day.cash_fen
    return CloseCount(day.cash_fen, counted, variance, cleaned, abs(variance) > variance_tolerance(st))


def clean_variance_reason(reason: str | None) -> str:
    """The reason for a variance as the entry carries it (spaces trimmed; "" for none); refuses one that is too
    long or not printable (``InvalidVarianceReason``)."""
    text = " ".join(str(reason or "").split())
    if len(text) > MAX_VARIANCE_REASON or not printable(text):
        raise errors.InvalidVarianceReason()
    return text


def check_variance_approval(st: Station, count: CloseCount, reason: str, supervisor: AgentSession | None) -> None:
    """Refuse a close whose variance is beyond the tolerance without a reason (``VarianceReasonRequired``) or a
    supervisor (``VarianceApprovalRequired``, ``SupervisorRequired`` for an agent's session)."""
    if not count.needs_approval:
        return
    words = {"variance": format_yuan(abs(count.variance_fen)), "tolerance": format_yuan(variance_tolerance(st))}
    if not reason:
        raise errors.VarianceReasonRequired(**words)
    if supervisor is None:
        raise errors.VarianceApprovalRequired(**words)
    check_session(st, supervisor)
    if supervisor.role != "supervisor":
        raise errors.SupervisorRequired()


@bound_station
def close_preview(st: Station, counts: dict) -> CloseCount:
    """What ``close_day`` with ``counts`` would record (expected, counted, variance), recording nothing."""
    return _close_count(st, open_day_or_refuse(st), counts)


@dataclass(frozen=True)
class DayClose:
    """A recorded day close: its receipt and the figures the close entry carries."""

    receipt: Receipt
    expected_fen: int
    counted_fen: int
    variance_fen: int


@bound_station
def close_day(st: Station, session: AgentSession, counts: dict, *, reason: str = "",
              supervisor: AgentSession | None = None) -> DayClose:
    """Close the day: the counted cash against what the drawer should hold; the variance is recorded. Beyond the
    tolerance it needs ``reason`` and the approving ``supervisor``'s session (module docstring); a reason given
    for a smaller variance is recorded too."""
    reason = clean_variance_reason(reason)
    with st.write():
        check_session(st, session)
        refuse_new_operations(st)
        day = open_day_or_refuse(st)
        count = _close_count(st, day, counts)
        check_variance_approval(st, count, reason, supervisor)
        now = st.now()
        BusinessDay.update(
            closed_at=now, closed_by=session.agent_id, counted_fen=count.counted_fen,
            variance_fen=count.variance_fen, close_counts=count.counts,
        ).where(BusinessDay.id == day.id).execute()
        operations = Operation.select().where(Operation.day == day.id).count()
        body = {
            "agent": session.agent_id,
            "amount": count.counted_fen,
            "expected": count.expected_fen,
            "variance": count.variance_fen,
            "counts": count.counts,
            "operations": operations,
            "business_date": day.business_date,
        }
        if reason:
            body["reason"] = reason
        if count.needs_approval:
            body["supervisor"] = supervisor.agent_id
        entry = append_entry(st, EntryType.DAY_CLOSE, now, body)
    # The receipt's details as the receipts screen reads them back from the entry (the reason and approver too).
    details = {"expected": count.expected_fen, "variance": count.variance_fen, "counts": count.counts,
               **{key: body[key] for key in ("reason", "supervisor") if key in body}}
    receipt = entry_receipt(entry, count.counted_fen, details)
    return DayClose(receipt, count.expected_fen, count.counted_fen, count.variance_fen)
