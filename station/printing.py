"""Printed receipts and the busy-hours chart: gather what the paper shows, lay it out, send it to the printer.

A printed receipt is a copy of something already recorded: printing never records anything, and a printer that
is missing or out of paper raises a ``station.printer.PrinterError`` whose message tells the agent the operation
is recorded and can be printed again. Nothing here touches the journal.

The only queries of printing are in :func:`receipt_sheet` (the agent's and the biller's names); the layout
(``station.receipt_layout``) is given that data, and the device is ``station.printer``'s.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache, partial
from pathlib import Path

from babel.support import Translations

from station.business_day import VARIANCE_REASONS
from station.context import Station, bound_station
from station.db import Agent, Biller, Operation
from station.errors import REJECTION_REASONS
from station.online import transfer_cancel_until, transfer_cancellable
from station.printer import PrintJob, run_job
from station.protocol.entry_types import EntryType, OperationState
from station.protocol.times import parse_utc
from station.protocol.tokens import unverified_payload
from station.receipt_layout import COPIES, ReceiptSheet, render_busy_hours, render_receipt
from station.receipts import REVERSAL_REASONS, Receipt, mask_number

TRANSLATIONS = Path(__file__).parent / "translations"


@lru_cache(maxsize=1)
def _chinese() -> Translations:
    """The station's zh catalogue: the paper prints the UI's own Chinese words (one source for both)."""
    return Translations.load(str(TRANSLATIONS), ["zh_Hans_CN"])


def _rejection(op: Operation | None) -> tuple[str, str] | None:
    if op is None or op.status != OperationState.REJECTED or not op.outcome_reason:
        return None
    words = REJECTION_REASONS.get(op.outcome_reason)
    return (_chinese().gettext(words), words) if words else (op.outcome_reason, op.outcome_reason)


def _local_hhmm(st: Station, moment: datetime | None) -> str | None:
    return moment.astimezone(st.timezone).strftime("%H:%M") if moment else None


def _as_of(st: Station, moment: datetime, day: date) -> str:
    """A balance's snapshot time on paper: "14:05", or "2026-11-02 14:05" when not of the receipt's ``day``."""
    local = moment.astimezone(st.timezone)
    return local.strftime("%H:%M" if local.date() == day else "%Y-%m-%d %H:%M")


def _reason(receipt: Receipt) -> tuple[str, str] | None:
    """A reversal's or a day close's reason as (Chinese, English): one of the screen's reasons translated, else as
    typed; a day close's typed words follow its reason after ": "."""
    reason = str(receipt.details.get("reason") or "")
    if not reason:
        return None
    if reason in REVERSAL_REASONS:
        return _chinese().gettext(reason), reason
    choice, _, words = reason.partition(": ")
    if choice in VARIANCE_REASONS:
        return _chinese().gettext(choice) + ("：" + words if words else ""), reason
    return reason, reason


def _agent_line(receipt: Receipt) -> str | None:
    agent_id = unverified_payload(receipt.token).get("agent")
    if not agent_id:
        return None
    agent = Agent.get_or_none(Agent.agent_id == agent_id)
    return f"{agent_id} {agent.name}" if agent else agent_id


@bound_station
def receipt_sheet(st: Station, receipt: Receipt, *, duplicate: bool = False) -> ReceiptSheet:
    """What the paper shows of ``receipt`` at station ``st``: the receipt with its agent, biller and local time."""
    recorded_at = receipt.recorded_at
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=UTC)
    local_time = recorded_at.astimezone(st.timezone)
    biller = biller_kind = None
    if receipt.type == "bill_payment":
        row = Biller.get_or_none(Biller.code == receipt.details.get("biller"))
        biller, biller_kind = (f"{row.name_zh} {row.name_en}", row.kind) if row else (None, None)
    original = None
    if receipt.type in (EntryType.REVERSAL, EntryType.TRANSFER_CANCEL) and "ref_seq" in receipt.details:
        original = Operation.get_or_none(Operation.seq == receipt.details["ref_seq"])
    op = Operation.get_or_none(Operation.seq == receipt.seq)
    as_of = receipt.details.get("as_of") if receipt.type == EntryType.BALANCE_ENQUIRY else None
    return ReceiptSheet(
        receipt=receipt,
        station_id=st.station_id,
        local_time=local_time,
        agent=_agent_line(receipt),
        biller=biller,
        biller_kind=biller_kind,
        original_type=original.type if original else None,
        reason=_reason(receipt) if receipt.type in (EntryType.REVERSAL, EntryType.DAY_CLOSE) else None,
        payee_account=(mask_number(receipt.details.get("payee_account"))
                       if receipt.type in ("transfer", "transfer_stopped") else None),
        duplicate=duplicate,
        rejection=_rejection(op),
        cancellable=op is not None and transfer_cancellable(st, op),
        cancel_until=_local_hhmm(st, transfer_cancel_until(st, op)) if op is not None else None,
        balance_as_of=_as_of(st, parse_utc(as_of), local_time.date()) if as_of else None,
        balance_live=bool(op is not None and op.auth_id),
        authorized=bool(op is not None and op.auth_id),
    )


def print_receipt(st: Station, receipt: Receipt, *, duplicate: bool = False) -> PrintJob:
    """Print the customer copy, then the agent copy, each followed by a cut, on the configured printer."""
    sheet = receipt_sheet(st, receipt, duplicate=duplicate)
    return run_job(st, [partial(render_receipt, sheet=sheet, copy=copy) for copy in COPIES])


def print_busy_hours(st: Station, day: date, hours: list[tuple[int, int]]) -> PrintJob:
    """Print today's customers by hour for the station's wall, so people can avoid the rush."""
    return run_job(st, [partial(render_busy_hours, station_id=st.station_id, day=day, hours=hours)])
