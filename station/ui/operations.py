"""Customer operations as short step-by-step flows: identify, amount, confirm, customer PIN, receipt.

The operation being keyed in is ``session["op"]``: only ids and typed values, never a PIN or a full card
number. A step whose data is missing sends the person back to it, so no step can be skipped. Changing a typed
value drops the confirmation and the transaction UUID, so the next confirm screen issues a fresh one; the
PIN form carries that UUID, and a second tap on it replays the first receipt (the core is idempotent).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext

from station import agents, errors, operations, receipts
from station.db import Biller, Customer, Payee
from station.device_state import refuse_new_operations
from station.errors import StationError
from station.protocol.entry_types import EntryType
from station.protocol.money import AmountError, parse_amount
from station.ui.common import NoOperationInProgress, current_agent, login_required, station, translate_error

bp = Blueprint("ops", __name__, url_prefix="/op")

QUICK_WITHDRAWALS = ("100", "200", "500", "1000")
BILLER_ICONS = {"electricity": "⚡", "water": "💧", "gas": "🔥", "mobile": "📱"}

#: The steps of each flow, keyed by the entry type it records (every type the registry puts on a home tile has
#: one), in order. A bill paid from the customer's account adds "customer" and "pin".
FLOWS = {
    EntryType.WITHDRAWAL: ("customer", "amount", "confirm", "pin"),
    EntryType.DEPOSIT: ("customer", "amount", "confirm", "pin"),
    EntryType.TRANSFER: ("customer", "payee", "amount", "warning", "confirm", "pin"),
    EntryType.BILL_PAYMENT: ("biller", "reference", "amount", "confirm"),
    EntryType.BALANCE_ENQUIRY: ("customer", "pin"),
}
#: What a step stores in the pending operation once done.
STEP_KEYS = {
    "customer": "customer_id",
    "payee": "payee_account",
    "amount": "amount",
    "biller": "biller",
    "reference": "ref",
    "warning": "warning_done",
    "confirm": "confirmed",
}
#: Typed values each step's change invalidates (later confirmations and the transaction UUID).
CONFIRMATIONS = ("warning_done", "fraud_ok", "confirmed", "txn")


def flow_steps(op: dict) -> tuple[str, ...]:
    """The steps of this operation's flow."""
    steps = FLOWS[op["kind"]]
    if op["kind"] == EntryType.BILL_PAYMENT and op.get("funding") == "account":
        steps = steps + ("customer", "pin")
    return steps


def next_step(op: dict) -> str:
    """The first step whose data is still missing (the PIN step is never 'done')."""
    for step in flow_steps(op):
        if step == "pin" or op.get(STEP_KEYS[step]) in (None, ""):
            return step
    return "confirm"


def half_done() -> bool:
    """An operation is being keyed in and not yet recorded (day close refuses meanwhile)."""
    op = session.get("op")
    return bool(op) and not op.get("done_seq")


def pending(kind: str) -> dict:
    """The operation being keyed in, if it is of ``kind``."""
    op = session.get("op")
    if not op or op.get("kind") != kind:
        raise NoOperationInProgress()
    return op


def save(op: dict, **changes) -> None:
    """Store typed values; a change to what the customer confirmed voids the confirmations and the UUID."""
    steps = flow_steps(op)
    step_of = {key: step for step, key in STEP_KEYS.items()}
    confirmed_before = steps.index("confirm") if "confirm" in steps else len(steps)
    changed = [key for key, value in changes.items() if op.get(key) != value]
    if any(steps.index(step_of[key]) < confirmed_before if key in step_of else True for key in changed):
        for key in CONFIRMATIONS:
            op.pop(key, None)
    op.update(changes)
    session["op"] = op


def go_next(op: dict):
    """Redirect to the next step to do."""
    return redirect(url_for("ops.step", kind=op["kind"], step=next_step(op)))


def customer_of(op: dict) -> Customer | None:
    """The identified customer of the operation, if any."""
    return Customer.get_or_none(Customer.id == op["customer_id"]) if op.get("customer_id") else None


def parsed_amount(text: str) -> int:
    """Typed yuan as fen, refusing what the money parser refuses."""
    try:
        return parse_amount(text)
    except AmountError as exc:
        raise errors.InvalidAmount(exc.code) from exc


@bp.post("/<kind>/start")
@login_required
def start(kind):
    """Start a new operation of ``kind`` (a tile on the home screen)."""
    if kind not in FLOWS:
        abort(404)
    # The core refuses again when it records; refusing here spares the customer the steps and the PIN.
    refuse_new_operations(station())
    session["op"] = {"kind": kind}
    return go_next(session["op"])


@bp.post("/cancel")
@login_required
def cancel():
    """Drop the operation being keyed in."""
    session.pop("op", None)
    return redirect(url_for("home.home"))


@bp.route("/<kind>/<step>", methods=["GET", "POST"])
@login_required
def step(kind, step):
    """Show or submit one step of an operation."""
    if kind not in FLOWS or step not in STEP_VIEWS:
        abort(404)
    try:
        op = pending(kind)
    except NoOperationInProgress as err:
        return render_template("error.html", message=translate_error(err)), 409
    if op.get("done_seq"):
        return redirect(url_for("receipts.show", seq=op["done_seq"]))
    steps = flow_steps(op)
    if step not in steps:
        abort(404)
    # No skipping ahead: a step is open only once every earlier step is done.
    wanted = next_step(op)
    if steps.index(step) > steps.index(wanted):
        return redirect(url_for("ops.step", kind=kind, step=wanted))
    return STEP_VIEWS[step](op)


def render_step(template: str, op: dict, **context):
    """Render a step's template with the operation and its customer."""
    context.setdefault("error", None)
    return render_template(template, op=op, customer=customer_of(op), steps=flow_steps(op), **context)


# -- the steps --------------------------------------------------------------------------------------------
def customer_step(op: dict):
    """Card or passbook number on the keypad."""
    number = request.form.get("number", "")
    id_kind = request.values.get("id_kind", "card")
    if id_kind not in ("card", "passbook"):
        id_kind = "card"
    error = None
    if request.method == "POST":
        try:
            customer = agents.identify_customer(station(), number, id_kind)
        except StationError as err:
            error = translate_error(err)
        else:
            save(op, customer_id=customer.id)
            return go_next(op)
    return render_step("op_customer.html", op, number=number, id_kind=id_kind, error=error)


def amount_step(op: dict):
    """The amount on the keypad, quick amounts, or a top-up's denominations."""
    amount = request.form.get("amount", op.get("amount", "")) if request.method == "POST" else op.get("amount", "")
    biller = Biller.get_or_none(Biller.code == op.get("biller")) if op["kind"] == EntryType.BILL_PAYMENT else None
    error = None
    if request.method == "POST":
        try:
            if op["kind"] in ("withdrawal", "deposit"):
                # Every check but the PIN (limits, the drawer): a refusal here spares the customer typing a PIN.
                # The core checks again when it records. A transfer's come at the confirmation, after the fraud
                # warning: a scam's amount should meet the warning, not a limit that only sends it elsewhere.
                operations.check_amount(station(), current_agent(), customer_of(op), op["kind"], amount)
            else:
                parsed_amount(amount)
        except StationError as err:
            error = translate_error(err)
        else:
            save(op, amount=amount.strip())
            return go_next(op)
    quick = QUICK_WITHDRAWALS if op["kind"] == "withdrawal" else ()
    choices = [str(d // 100) for d in biller.denominations] if biller and biller.denominations else ()
    return render_step("op_amount.html", op, amount=amount, quick=quick, choices=choices, biller=biller,
                       error=error)


def payee_step(op: dict):
    """A known payee by a tap, or a new payee's account and name."""
    customer = customer_of(op)
    account = request.form.get("payee_account", "")
    name = request.form.get("payee_name", "")
    error = None
    if request.method == "POST":
        try:
            account, name = operations.check_payee(station(), customer, account, name)
        except StationError as err:
            error = translate_error(err)
        else:
            save(op, payee_account=account, payee_name=name)
            return go_next(op)
    known = list(Payee.select().where(Payee.customer == customer.id).order_by(Payee.name))
    return render_step("op_payee.html", op, known=known, account=account, name=name, error=error)


def warning_step(op: dict):
    """The fraud warning, when the core says this transfer needs it."""
    fen = parsed_amount(op["amount"])
    if not operations.needs_fraud_warning(station(), customer_of(op), op["payee_account"], fen):
        save(op, warning_done=True)
        return go_next(op)
    if request.method == "POST":
        if request.form.get("decision") == "send":
            op.update(warning_done=True, fraud_ok=True)
            session["op"] = op
            return go_next(op)
        session.pop("op", None)
        flash(gettext("Good decision: nothing was sent."))
        return redirect(url_for("home.home"))
    return render_step("op_warning.html", op, amount_fen=fen)


def biller_step(op: dict):
    """Choose the biller."""
    if request.method == "POST":
        biller = Biller.get_or_none(Biller.code == request.form.get("biller"))
        if biller is not None:
            save(op, biller=biller.code)
            return go_next(op)
    billers = list(Biller.select().order_by(Biller.kind, Biller.code))
    return render_step("op_biller.html", op, billers=billers, icons=BILLER_ICONS)


def reference_step(op: dict):
    """The bill's account number or the phone number, checked against the biller's rules."""
    biller = Biller.get_by_id(op["biller"])
    reference = request.form.get("reference", op.get("ref", ""))
    error = None
    if request.method == "POST":
        try:
            reference = operations.validate_bill_reference(biller, reference)
        except StationError as err:
            error = translate_error(err)
        else:
            save(op, ref=reference)
            return go_next(op)
    return render_step("op_reference.html", op, biller=biller, reference=reference, icons=BILLER_ICONS,
                       error=error)


def confirm_step(op: dict):
    """Amount in figures and capitals with the fee; a cash bill is recorded from here."""
    fen = parsed_amount(op["amount"])
    policy_fee = operations.quote_fee(station(), op["kind"])
    if request.method == "POST":
        if op["kind"] == EntryType.BILL_PAYMENT:
            funding = request.form.get("funding")
            if funding == "account":
                op.update(funding="account", confirmed=True)
                session["op"] = op
                return go_next(op)
            op.update(funding="cash", confirmed=True)
            session["op"] = op
            return execute(op, None, request.form.get("txn", ""), "op_confirm.html", fen=fen, fee=policy_fee,
                           biller=Biller.get_by_id(op["biller"]))
        if op["kind"] in ("withdrawal", "deposit", "transfer"):
            try:
                operations.check_amount(station(), current_agent(), customer_of(op), op["kind"], op["amount"])
            except StationError as err:
                return render_step("op_confirm.html", op, fen=fen, fee=policy_fee, biller=None,
                                   error=translate_error(err))
        op["confirmed"] = True
        session["op"] = op
        return go_next(op)
    op.setdefault("txn", receipts.new_txn_id())
    session["op"] = op
    biller = Biller.get_or_none(Biller.code == op.get("biller")) if op["kind"] == EntryType.BILL_PAYMENT else None
    return render_step("op_confirm.html", op, fen=fen, fee=policy_fee, biller=biller)



def pin_step(op: dict):
    """The customer's PIN on a masked pad, then the operation is recorded."""
    op.setdefault("txn", receipts.new_txn_id())
    session["op"] = op
    if request.method == "POST":
        st = station()
        try:
            auth = agents.authenticate_customer(st, current_agent(), customer_of(op), request.form.get("pin", ""))
        except StationError as err:
            return render_step("op_pin.html", op, error=translate_error(err))
        return execute(op, auth, request.form.get("txn", ""), "op_pin.html")
    return render_step("op_pin.html", op)


def execute(op: dict, auth, txn: str, template: str, **context):
    """Record the operation with the UUID the form carried; a refusal stays on the same screen."""
    st = station()
    agent = current_agent()
    kind = op["kind"]
    try:
        if kind == "withdrawal":
            receipt = operations.withdraw_cash(st, agent, auth, op["amount"], txn)
        elif kind == "deposit":
            receipt = operations.deposit_cash(st, agent, auth, op["amount"], txn)
        elif kind == "transfer":
            receipt = operations.transfer(st, agent, auth, op["payee_account"], op["payee_name"], op["amount"], txn,
                                          fraud_warning_confirmed=bool(op.get("fraud_ok")))
        elif kind == EntryType.BILL_PAYMENT:
            receipt = operations.pay_bill(st, agent, auth, op["biller"], op["ref"], op["amount"], txn,
                                          funding=op.get("funding", "cash"))
        else:
            receipt = operations.balance_enquiry(st, agent, auth, txn).receipt
    except StationError as err:
        return render_step(template, op, error=translate_error(err), **context)
    # Keep the finished operation's UUID: a second tap on the same form lands on the same receipt.
    session["op"] = {"kind": kind, "txn": txn, "done_seq": receipt.seq}
    return redirect(url_for("receipts.show", seq=receipt.seq))


STEP_VIEWS = {
    "customer": customer_step,
    "amount": amount_step,
    "payee": payee_step,
    "warning": warning_step,
    "biller": biller_step,
    "reference": reference_step,
    "confirm": confirm_step,
    "pin": pin_step,
}
