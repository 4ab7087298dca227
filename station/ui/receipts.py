"""Receipts: one receipt with its QR, today's list, print and reprint, supervisor reversal, transfer cancel.

A receipt says where the operation stands with the bank: settled ("confirmed by the bank") once its signed ack
arrived, rejected with the reason in words, otherwise recorded offline and waiting. A transfer says until when it
can be cancelled (the bank's ``execute_after`` from its grant, in local time; otherwise "until the bank sends it");
a cancellation asks the bank in real time after the customer's PIN, and its refusal shows at once.
"""

from __future__ import annotations

import functools

import segno
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from markupsafe import Markup

from station import agents, online, operations, printing, receipts
from station.complaints import complaint_receipt
from station.db import Agent, Biller, Customer, JournalEntry, Operation, PrintedReceipt
from station.errors import REJECTION_REASONS, StationError, StorageFull
from station.link import should_ask_bank
from station.protocol.entry_types import SPECS, STATE_LABELS, EntryType, OperationState, printable_text
from station.protocol.times import parse_utc
from station.protocol.tokens import unverified_payload
from station.ui.common import current_agent, local_time, login_required, station, translate_error
from station.ui.complaints import CATEGORY_LABELS

bp = Blueprint("receipts", __name__, url_prefix="/receipts")

#: The label (msgid) of each entry type that has a receipt screen, from the registry.
TYPE_LABELS = {entry_type: spec.label for entry_type, spec in SPECS.items() if spec.label}
#: The label (msgid) of each operation state, from the registry.
STATUS_LABELS = {state: label.label for state, label in STATE_LABELS.items()}
REVERSAL_REASONS = receipts.REVERSAL_REASONS


@functools.lru_cache(maxsize=64)
def qr_svg(token: str) -> Markup:
    """The receipt token as an inline SVG QR code (segno's output holds only path data, no text).

    Cached by token: a journal entry never changes, and encoding a 700-character token takes tens of ms on a Pi.
    """
    # No width/height, only a viewBox: the stylesheet sizes it, and the browser scales the modules crisply.
    return Markup(segno.make_qr(token, error="l").svg_inline(border=2, dark="#000", light="#fff", omitsize=True))


def receipt_at(seq: int) -> receipts.Receipt | None:
    """The receipt of journal entry ``seq``: a customer operation, or a day or customer-voice entry."""
    op = Operation.get_or_none(Operation.seq == seq)
    if op is not None:
        return receipts.receipt_for(station(), op)
    entry = JournalEntry.get_or_none(JournalEntry.seq == seq)
    if entry is None or entry.type not in TYPE_LABELS:
        return None
    if entry.type == EntryType.COMPLAINT_12315:
        return complaint_receipt(entry)
    if entry.type == EntryType.TRANSFER_STOPPED:
        account = unverified_payload(entry.token).get("account")
        return operations.stopped_receipt(entry, Customer.get_or_none(Customer.account_id == account))
    payload = unverified_payload(entry.token)
    details = {k: v for k, v in payload.items() if k in ("expected", "variance", "category", "text", "counts", "reason",
                                                           "supervisor")}
    return receipts.Receipt(seq=entry.seq, txn=entry.txn, type=entry.type, token=entry.token,
                            amount_fen=payload.get("amount", 0), fee_fen=0, status=OperationState.RECORDED,
                            account_masked=None, recorded_at=entry.recorded_at, details=details)


def agent_of(seq: int) -> str:
    """The name of the agent who recorded journal entry ``seq``."""
    entry = JournalEntry.get_by_id(seq)
    agent_id = unverified_payload(entry.token).get("agent")
    agent = Agent.get_or_none(Agent.agent_id == agent_id) if agent_id else None
    return agent.name if agent else (agent_id or "-")


#: Longest search the list accepts (a card number is 19 digits; an amount fewer).
SEARCH_LIMIT = 19


@bp.get("/")
@login_required
def index():
    """Today's receipts, newest first: operations and day open/close entries; ``q`` searches them."""
    query = printable_text(request.args.get("q", ""))[:SEARCH_LIMIT].strip()
    return render_template("receipts.html", rows=receipts.todays_receipts(station(), query), query=query,
                           types=TYPE_LABELS, statuses=STATUS_LABELS)


def rejection_words(op: Operation | None) -> str | None:
    """Why the bank rejected ``op``, in the person's language (the bank's code when it has no words here)."""
    if op is None or op.status != OperationState.REJECTED or not op.outcome_reason:
        return None
    words = REJECTION_REASONS.get(op.outcome_reason)
    return gettext(words) if words else op.outcome_reason


def balance_shown(receipt: receipts.Receipt, op: Operation | None) -> dict | None:
    """A balance enquiry's figures as its receipt shows them: live (the bank answered) or as of the snapshot."""
    if receipt.type != EntryType.BALANCE_ENQUIRY:
        return None
    as_of = receipt.details.get("as_of")
    moment = parse_utc(as_of) if as_of else None
    # A snapshot of an earlier day than the enquiry's says which day: "as of 14:05" alone would read as that day.
    same_day = moment is None or station().local_date(moment) == station().local_date(receipt.recorded_at)
    style = "HH:mm" if same_day else "yyyy-MM-dd HH:mm"
    return {"live": bool(op is not None and op.auth_id), "as_of": local_time(moment, style) if moment else None}


def reversal_shown(receipt: receipts.Receipt) -> dict | None:
    """A reversal's or cancellation's original (its seq and type), its reason in words and the cash it moved.

    ``cash_back``: cash the agent takes back from the customer (a reversed withdrawal); ``cash_paid``: cash the
    agent pays back (a reversed deposit or cash bill payment). Neither for one that moved no cash.
    """
    if receipt.type not in (EntryType.REVERSAL, EntryType.TRANSFER_CANCEL) or "ref_seq" not in receipt.details:
        return None
    original = Operation.get_or_none(Operation.seq == receipt.details["ref_seq"])
    reason = receipt.details.get("reason") or ""
    return {"seq": receipt.details["ref_seq"], "type": original.type if original else None,
            "reason": gettext(reason) if reason in REVERSAL_REASONS else reason,
            "cash_back": max(receipt.cash_fen, 0), "cash_paid": max(-receipt.cash_fen, 0)}


def unsaved_print_marks() -> set[int]:
    """Receipts printed while the storage was full, whose "printed" mark could not be saved: kept in memory, so
    their later copies are still marked 重印 DUPLICATE."""
    return current_app.extensions.setdefault("unsaved_print_marks", set())


def printed_before(seq: int) -> bool:
    """A paper copy of receipt ``seq`` came out before."""
    return seq in unsaved_print_marks() or PrintedReceipt.get_or_none(PrintedReceipt.seq == seq) is not None


def _show(seq: int, error: str | None = None, status: int = 200):
    receipt = receipt_at(seq)
    if receipt is None:
        abort(404)
    op = Operation.get_or_none(Operation.seq == seq)
    until = online.transfer_cancel_until(station(), op) if op is not None else None
    return render_template(
        "receipt.html",
        receipt=receipt,
        op=op,
        agent_name=agent_of(seq),
        # A complaint's token holds the complainant's phone in full (for the regulator): never shown as a QR code.
        qr=qr_svg(receipt.token) if receipt.type != EntryType.COMPLAINT_12315 else None,
        complaint_categories=CATEGORY_LABELS,
        types=TYPE_LABELS,
        statuses=STATUS_LABELS,
        printed=printed_before(seq),
        reversible=op is not None and operations.may_reverse(station(), op),
        cancellable=op is not None and online.transfer_cancellable(station(), op),
        cancel_until=local_time(until, "HH:mm") if until else None,
        rejection=rejection_words(op),
        balance=balance_shown(receipt, op),
        biller=Biller.get_or_none(Biller.code == receipt.details.get("biller"))
        if receipt.type == EntryType.BILL_PAYMENT else None,
        reversal=reversal_shown(receipt),
        error=error,
    ), status


@bp.get("/<int:seq>")
@login_required
def show(seq):
    """One receipt with its QR code."""
    return _show(seq)


@bp.post("/<int:seq>/print")
@login_required
def print_copy(seq):
    """Print the customer and agent copies; any print after the first successful one is marked 重印 DUPLICATE."""
    st = station()
    receipt = receipt_at(seq)
    if receipt is None:
        abort(404)
    try:
        printing.print_receipt(st, receipt, duplicate=printed_before(seq))
    except StationError as err:
        # The operation stays recorded; the person can retry once the printer is fixed.
        return _show(seq, translate_error(err), 503)
    try:
        with st.write():
            PrintedReceipt.insert(seq=seq, first_printed_at=st.now()).on_conflict(
                conflict_target=[PrintedReceipt.seq], update={PrintedReceipt.prints: PrintedReceipt.prints + 1}
            ).execute()
    except StorageFull:
        # The paper came out all the same: a reprint is no new operation, and the mark waits in memory.
        unsaved_print_marks().add(seq)
    else:
        unsaved_print_marks().discard(seq)
    flash(gettext("Printed."))
    return redirect(url_for("receipts.show", seq=seq))


@bp.route("/<int:seq>/reverse", methods=["GET", "POST"])
@login_required
def reverse(seq):
    """A supervisor types their PIN to undo one of today's operations. The screen says first what happens to the
    cash: a withdrawal's is taken back from the customer before the supervisor confirms, a deposit's (or a bill
    paid in cash) given back to the customer once they have (``cash_back``: the drawer's change, fen)."""
    st = station()
    op = Operation.get_or_none(Operation.seq == seq)
    if op is None:
        abort(404)
    supervisors = list(Agent.select().where(Agent.role == "supervisor").order_by(Agent.agent_id))
    supervisor_id = request.form.get("supervisor_id", supervisors[0].agent_id if supervisors else "")
    reason = request.form.get("reason", REVERSAL_REASONS[0])
    txn = request.form.get("txn") or receipts.new_txn_id()
    error = None
    if request.method == "POST":
        try:
            supervisor = agents.login_agent(st, supervisor_id, request.form.get("pin", ""))
            receipt = operations.reverse(st, supervisor, op.txn, txn, reason)
        except StationError as err:
            error = translate_error(err)
        else:
            return redirect(url_for("receipts.show", seq=receipt.seq))
    return render_template("reverse.html", op=op, supervisors=supervisors, supervisor_id=supervisor_id,
                           reasons=REVERSAL_REASONS, reason=reason, txn=txn, types=TYPE_LABELS, error=error,
                           cash_back=-op.cash_fen)


@bp.route("/<int:seq>/cancel", methods=["GET", "POST"])
@login_required
def cancel_transfer(seq):
    """The customer types their PIN to withdraw a transfer the bank has not executed yet."""
    st = station()
    op = Operation.get_or_none((Operation.seq == seq) & (Operation.type == "transfer"))
    if op is None:
        abort(404)
    txn = request.form.get("txn") or receipts.new_txn_id()
    error = None
    if request.method == "POST":
        agent = current_agent()
        try:
            auth = agents.authenticate_customer(st, agent, op.customer, request.form.get("pin", ""))
            # The bank first (after the PIN: a cancellation is the customer's decision): its refusal (already
            # sent) shows here at once; no answer leaves it to the offline rules and the bank's ack.
            grant = online.authorize(st, EntryType.TRANSFER_CANCEL, txn=txn, agent=agent.agent_id,
                                     account=op.customer.account_id, amount=op.amount_fen, fee=0, ref_txn=op.txn)
            receipt = operations.cancel_transfer(st, agent, auth, op.txn, txn, authorization=grant)
        except StationError as err:
            error = translate_error(err)
            # A refused txn is spent: another try is another request.
            txn = receipts.new_txn_id()
        else:
            if grant is not None or should_ask_bank(st):
                online.push_now(st)
            return redirect(url_for("receipts.show", seq=receipt.seq))
    return render_template("cancel_transfer.html", op=op, txn=txn, error=error)
