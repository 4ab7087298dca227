"""Customer operations as short step-by-step flows: identify, amount, confirm, customer PIN, receipt.

The operation being keyed in is ``session["op"]``: only ids and typed values, never a PIN or a full card
number. A step whose data is missing sends the person back to it, so no step can be skipped. Changing a typed
value drops the confirmation and the transaction UUID, so the next confirm screen issues a fresh one; the
PIN form carries that UUID, and a second tap on it replays the first receipt (the core is idempotent).

Online (``station.online``): the bank is asked before the customer types a PIN, with the operation's txn (the
authorization is bound to it): a withdrawal when its amount is submitted, a transfer when its confirm screen is
(after the fraud warning), a wealth-product order when its confirm screen is (after the risk statement), a balance
enquiry and a bill paid from the account when the customer is identified.
``op["bank"]`` says how it went: ``granted`` (``op["auth_id"]``, the grant's id: the cookie holds only ids),
``no_answer`` (the bank did not answer in time: the offline rules run now, and the screens say so before the
PIN) or ``offline`` (the link is known down: not asked). A refusal shows on the same screen and nothing goes on.
Changing a typed value drops the authorization with the confirmations.

A withdrawal above the policy's ``id_check_fen``, or marked as made by a proxy (代办, ``op["proxy"]``, a toggle on
the amount screen), has an ID card step after the amount: ``op`` then holds only the number's keyed hash and last
4 characters (``station.identity``), never the number. After recording, the outbox is pushed at
once (``station.online.push_now``) when the bank was asked or should be.

A wealth-product order (``station.wmp``) chooses a product of the bank's catalogue after the customer (one above
the customer's risk level is refused there), and has the risk statement, read together with the customer, after the
amount; online the bank is asked when its confirm screen is submitted (the product, its window, the customer's risk
level, the quota left and the money: a refusal shows there and nothing is recorded), and the order is recorded under
the grant; offline it is recorded within the offline allowance and the bank decides it when it arrives.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext

from station import agents, errors, identity, limits, online, operations, receipts, wmp
from station.db import Agent, Biller, Customer, Payee, WmpProduct
from station.device_state import refuse_new_operations
from station.errors import N_, StationError
from station.link import should_ask_bank
from station.protocol.entry_types import EntryType
from station.protocol.money import AmountError, parse_amount
from station.protocol.times import parse_utc, utc_text
from station.speech import SPOKEN_TYPES, SpeechFailed, amount_speech, speech_available, speech_wav
from station.ui.common import NoOperationInProgress, current_agent, login_required, station, translate_error

bp = Blueprint("ops", __name__, url_prefix="/op")

QUICK_WITHDRAWALS = ("100", "200", "500", "1000")


class ApprovalExpired(StationError):
    """The supervisor's approval past the fraud warning ran out (``customer_auth_seconds``) before the PIN."""

    code = "fraud_approval_expired"
    template = N_("The supervisor's approval has run out: the supervisor types their PIN again.")

#: The steps of each flow, keyed by the entry type it records (every type the registry puts on a home tile has
#: one), in order. A bill paid from the customer's account adds "customer" and "pin".
FLOWS = {
    EntryType.WITHDRAWAL: ("customer", "amount", "identity", "confirm", "pin"),
    EntryType.DEPOSIT: ("customer", "amount", "confirm", "pin"),
    EntryType.TRANSFER: ("customer", "payee", "amount", "warning", "confirm", "pin"),
    EntryType.BILL_PAYMENT: ("biller", "reference", "amount", "confirm"),
    EntryType.BALANCE_ENQUIRY: ("customer", "pin"),
    EntryType.WMP_ORDER: ("customer", "product", "amount", "statement", "confirm", "pin"),
}
#: What a step stores in the pending operation once done.
STEP_KEYS = {
    "customer": "customer_id",
    "payee": "payee_account",
    "amount": "amount",
    "biller": "biller",
    "reference": "ref",
    "warning": "warning_done",
    "identity": "identity_done",
    "product": "product",
    "statement": "statement_done",
    "confirm": "confirmed",
}
#: Typed values each step's change invalidates (later confirmations, the ID card recorded for the amount, the
#: transaction UUID, the bank's answer).
CONFIRMATIONS = ("warning_done", "fraud_ok", "approval", "stop_txn", "identity_done", "id_hash", "id_last4",
                 "statement_done", "confirmed", "txn", "bank", "auth_id")
#: Kinds the bank is asked about (``station.protocol.authorizations.KINDS``) and the step whose submission asks.
ASKED_AT = {
    EntryType.WITHDRAWAL: "amount",
    EntryType.TRANSFER: "confirm",
    EntryType.BALANCE_ENQUIRY: "customer",
    EntryType.BILL_PAYMENT: "customer",  # only when paid from the account: the customer is identified last
    EntryType.WMP_ORDER: "confirm",  # after the risk statement: the customer has chosen what to buy
}


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


def half_done_summary() -> dict | None:
    """The operation left half done, as the home and day close screens list it with Resume and Cancel: its kind,
    its customer (name and masked number) and its amount once typed, and where Resume leads; None when none is."""
    if not half_done() or session["op"].get("kind") not in FLOWS:
        return None
    op = session["op"]
    amount = None
    if op.get("amount"):
        try:
            amount = parsed_amount(op["amount"])
        except StationError:
            amount = None
    return {"kind": op["kind"], "customer": customer_of(op), "amount_fen": amount,
            "resume": url_for("ops.step", kind=op["kind"], step=next_step(op))}


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
    """Drop the operation being keyed in; back to the day close screen when it was cancelled from there."""
    session.pop("op", None)
    return redirect(url_for("day.close_day" if request.form.get("back") == "day" else "home.home"))


@bp.post("/withdrawal/proxy")
@login_required
def toggle_proxy():
    """Mark the withdrawal being keyed in as made by a proxy (代办), or not: the ID card step follows the amount.
    The amount is typed again after a change (it may need the bank asked again, and the ID card then)."""
    op = session.get("op")
    if not op or op.get("kind") != EntryType.WITHDRAWAL or op.get("done_seq"):
        return redirect(url_for("home.home"))
    forget_amount(op)
    op["proxy"] = not op.get("proxy")
    session["op"] = op
    return redirect(url_for("ops.step", kind=EntryType.WITHDRAWAL, step="amount"))


@bp.get("/speech.wav")
@login_required
def speech():
    """The pending operation's amount read aloud in Mandarin (a WAV made on the device: ``station.speech``). The
    text comes from the operation in the session, never from the request. 404 on a device without espeak-ng,
    409 without an operation with an amount, 503 when the synthesis fails."""
    if not speech_available():
        abort(404)
    op = session.get("op")
    if not op or op.get("done_seq") or not op.get("amount") or op.get("kind") not in SPOKEN_TYPES:
        return render_template("error.html", message=translate_error(NoOperationInProgress())), 409
    try:
        wav = speech_wav(amount_speech(op["kind"], parsed_amount(op["amount"])))
    except StationError as err:
        return render_template("error.html", message=translate_error(err)), 409
    except SpeechFailed:
        return render_template("error.html", message=gettext("Speech is not available right now.")), 503
    return Response(wav, mimetype="audio/wav", headers={"Cache-Control": "no-store"})


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
    context.setdefault("speech", op.get("kind") in SPOKEN_TYPES and bool(op.get("amount")) and speech_available())
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
            save(op, customer_id=customer.id)
            if ASKED_AT.get(op["kind"]) == "customer" and (op["kind"] == EntryType.BALANCE_ENQUIRY
                                                           or op.get("funding") == "account"):
                ask_bank(op)
        except StationError as err:
            op.pop("customer_id", None)
            session["op"] = op
            error = translate_error(err)
        else:
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
                asking = op["kind"] == EntryType.WITHDRAWAL and should_ask_bank(station())
                operations.check_amount(station(), current_agent(), customer_of(op), op["kind"], amount,
                                        ask_bank=asking)
            elif op["kind"] == EntryType.WMP_ORDER:
                # The product's minimum and step and every debit limit, before the risk statement and the PIN (the
                # offline rules only when the bank will not be asked at the confirmation).
                wmp.check_order(station(), current_agent(), customer_of(op), op["product"], amount,
                                ask_bank=should_ask_bank(station()))
            else:
                parsed_amount(amount)
            save(op, amount=amount.strip())
            if ASKED_AT.get(op["kind"]) == "amount":
                ask_bank(op)
            if op["kind"] == EntryType.WITHDRAWAL and not identity.identity_required(
                    station(), parsed_amount(op["amount"]), bool(op.get("proxy"))):
                op["identity_done"] = True  # no ID card step: straight on to the confirmation
                session["op"] = op
        except StationError as err:
            forget_amount(op)
            error = translate_error(err)
        else:
            return go_next(op)
    quick = QUICK_WITHDRAWALS if op["kind"] == "withdrawal" else ()
    choices = [str(d // 100) for d in biller.denominations] if biller and biller.denominations else ()
    return render_step("op_amount.html", op, amount=amount, quick=quick, choices=choices, biller=biller,
                       error=error, usable=usable_limits(op), product=product_of(op))


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
    """The fraud warning, when the core says this transfer needs it (with why, the 96110 hotline, and for an
    elderly customer a call to the family). The customer stopping is journaled (``transfer_stopped``); going on
    above ``fraud_supervisor_fen`` takes a supervisor's PIN, typed on this screen (a second state of it)."""
    st = station()
    fen = parsed_amount(op["amount"])
    customer = customer_of(op)
    warning = operations.fraud_warning(st, customer, op["payee_account"], op["payee_name"], fen)
    if not warning:
        save(op, warning_done=True)
        return go_next(op)
    op.setdefault("stop_txn", receipts.new_txn_id())
    session["op"] = op
    decision = request.form.get("decision") if request.method == "POST" else None
    supervisors = list(Agent.select().where(Agent.role == "supervisor").order_by(Agent.agent_id))
    context = dict(amount_fen=fen, warning=warning, elderly=operations.customer_is_elderly(st, customer),
                   supervisors=supervisors, supervisor_fen=st.policy["fraud_supervisor_fen"],
                   supervisor_id=request.form.get("supervisor_id") or (supervisors[0].agent_id if supervisors else ""))
    if decision == "stop":
        try:
            operations.stop_transfer(st, current_agent(), customer, op["payee_account"], op["payee_name"],
                                     op["amount"], request.form.get("stop_txn") or op["stop_txn"])
        except StationError as err:
            return render_step("op_warning.html", op, error=translate_error(err), **context)
        session.pop("op", None)
        flash(gettext("Good decision: nothing was sent. The bank is told of the attempt."))
        return redirect(url_for("home.home"))
    if decision == "send" and not warning.needs_supervisor:
        op.update(warning_done=True, fraud_ok=True)
        session["op"] = op
        return go_next(op)
    if decision == "send":
        return render_step("op_warning.html", op, asking_supervisor=True, **context)
    if op.pop("approval_expired", False):
        session["op"] = op
        if warning.needs_supervisor:
            return render_step("op_warning.html", op, asking_supervisor=True,
                               error=translate_error(ApprovalExpired()), **context)
    if decision == "approve" and warning.needs_supervisor:
        if request.form.get("stop_txn") != op["stop_txn"]:
            # The PIN pad of another transfer's warning (a second tab, a page from before a change): the supervisor
            # approves only what this screen shows, so it shows this transfer's amount and payee, and asks again.
            return render_step("op_warning.html", op, asking_supervisor=True, **context)
        try:
            approval = operations.approve_past_warning(st, current_agent(), context["supervisor_id"],
                                                       request.form.get("pin", ""))
        except StationError as err:
            return render_step("op_warning.html", op, asking_supervisor=True, error=translate_error(err), **context)
        op.update(warning_done=True, fraud_ok=True,
                  approval={"supervisor_id": approval.supervisor_id, "approved_at": utc_text(approval.approved_at)})
        session["op"] = op
        return go_next(op)
    return render_step("op_warning.html", op, **context)


def identity_step(op: dict):
    """The ID card number of the person present, for a withdrawal above the policy's ``id_check_fen`` or by a
    proxy; skipped otherwise. Only its keyed hash and last 4 characters are kept (``station.identity``)."""
    fen = parsed_amount(op["amount"])
    proxy = bool(op.get("proxy"))
    if not identity.identity_required(station(), fen, proxy):
        op.update(identity_done=True)
        session["op"] = op
        return go_next(op)
    error = None
    typed = ""
    if request.method == "POST":
        typed = request.form.get("id_number", "")
        try:
            fields = identity.identity_fields(station(), typed, proxy=proxy)
        except StationError as err:
            error = translate_error(err)
        else:
            # Not save(): this step comes after the bank was asked about the amount, and keeps its answer (and the
            # txn it is bound to). A different card typed once confirmed (the back button, a second tab) voids that
            # confirmation: the confirm screen shows the card's last 4, and the PIN must not record one unseen.
            if op.get("id_hash") not in (None, fields["id_hash"]):
                op.pop("confirmed", None)
            op.update(identity_done=True, id_hash=fields["id_hash"], id_last4=fields["id_last4"])
            session["op"] = op
            return go_next(op)
    # Shown again to be corrected (only in this answer), at most what the pad types.
    return render_step("op_identity.html", op, typed=typed[:18], fen=fen, proxy=proxy, error=error,
                       limit=station().policy["id_check_fen"])


def product_of(op: dict) -> WmpProduct | None:
    """The wealth product the operation is for, if one was chosen (and the bank's catalogue still has it)."""
    return WmpProduct.get_or_none(WmpProduct.code == op["product"]) if op.get("product") else None


def product_step(op: dict):
    """The bank's open wealth products (name, risk level, minimum and step, window, the bank's own plain
    description: no advice, no return figures); a product above the customer's risk level is refused here, and
    nothing is recorded."""
    st = station()
    error = None
    if request.method == "POST":
        try:
            product = wmp.check_customer(st, current_agent(), customer_of(op), request.form.get("product"))
        except StationError as err:
            error = translate_error(err)
        else:
            save(op, product=product.code)
            return go_next(op)
    return render_step("op_product.html", op, products=wmp.open_products(st), error=error)


def statement_step(op: dict):
    """The risk statement, read together with the customer (as the fraud warning is): the agent confirms it was."""
    product = product_of(op)
    if product is None:
        save(op, product=None)
        return go_next(op)
    if request.method == "POST" and request.form.get("read") == "yes":
        op.update(statement_done=True)
        session["op"] = op
        return go_next(op)
    return render_step("op_statement.html", op, product=product, fen=parsed_amount(op["amount"]))


def biller_step(op: dict):
    """Choose the biller."""
    if request.method == "POST":
        biller = Biller.get_or_none(Biller.code == request.form.get("biller"))
        if biller is not None:
            save(op, biller=biller.code)
            return go_next(op)
    billers = list(Biller.select().order_by(Biller.kind, Biller.code))
    return render_step("op_biller.html", op, billers=billers)


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
    return render_step("op_reference.html", op, biller=biller, reference=reference, error=error)


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
                asking = op["kind"] == EntryType.TRANSFER and should_ask_bank(station())
                operations.check_amount(station(), current_agent(), customer_of(op), op["kind"], op["amount"],
                                        ask_bank=asking or op.get("bank") == "granted")
                if ASKED_AT.get(op["kind"]) == "confirm":
                    op.setdefault("txn", request.form.get("txn") or receipts.new_txn_id())
                    ask_bank(op)
            except StationError as err:
                if op["kind"] == EntryType.TRANSFER:
                    # A refusal spends the txn: another try is another request (the bank refuses a txn reused
                    # with other fields).
                    for key in ("txn", "bank", "auth_id"):
                        op.pop(key, None)
                    op["txn"] = receipts.new_txn_id()
                    session["op"] = op
                return render_step("op_confirm.html", op, fen=fen, fee=policy_fee, biller=None,
                                   error=translate_error(err))
        if op["kind"] == EntryType.WMP_ORDER:
            try:
                asking = should_ask_bank(station())
                wmp.check_order(station(), current_agent(), customer_of(op), op["product"], op["amount"],
                                ask_bank=asking or op.get("bank") == "granted")
                op.setdefault("txn", request.form.get("txn") or receipts.new_txn_id())
                ask_bank(op)
            except StationError as err:
                # As a transfer's: a refusal spends the txn, another try is another request.
                for key in ("txn", "bank", "auth_id"):
                    op.pop(key, None)
                op["txn"] = receipts.new_txn_id()
                session["op"] = op
                return render_step("op_confirm.html", op, fen=fen, fee=policy_fee, biller=None,
                                   product=product_of(op), error=translate_error(err),
                                   asking=should_ask_bank(station()))
        op["confirmed"] = True
        session["op"] = op
        return go_next(op)
    op.setdefault("txn", receipts.new_txn_id())
    session["op"] = op
    biller = Biller.get_or_none(Biller.code == op.get("biller")) if op["kind"] == EntryType.BILL_PAYMENT else None
    return render_step("op_confirm.html", op, fen=fen, fee=policy_fee, biller=biller, product=product_of(op),
                       asking=should_ask_bank(station()))



# -- the bank -------------------------------------------------------------------------------------------------
def ask_bank(op: dict) -> None:
    """Ask the bank about the operation now (its txn is made first: the answer is bound to it) and note how it
    went in ``op["bank"]``; a refusal is raised (``BankRefused``). With no answer the offline checks run here, so
    a refusal by them also shows before the PIN."""
    st = station()
    op.setdefault("txn", receipts.new_txn_id())
    op.pop("auth_id", None)
    session["op"] = op
    if not should_ask_bank(st):
        op["bank"] = "offline"
        session["op"] = op
        return
    grant = online.authorize(st, op["kind"], **bank_request(op))
    if grant is None:
        op["bank"] = "no_answer"
        session["op"] = op
        if op["kind"] in (EntryType.WITHDRAWAL, EntryType.TRANSFER):
            operations.check_amount(st, current_agent(), customer_of(op), op["kind"], op["amount"])
        elif op["kind"] == EntryType.WMP_ORDER:
            wmp.check_order(st, current_agent(), customer_of(op), op["product"], op["amount"])
        return
    op.update(bank="granted", auth_id=grant.auth_id)
    session["op"] = op


def bank_request(op: dict) -> dict:
    """The fields of the operation's authorization request (the operation's own, and its fee from the policy)."""
    kind = op["kind"]
    request = {"txn": op["txn"], "agent": current_agent().agent_id, "account": customer_of(op).account_id,
               "amount": 0, "fee": 0}
    if kind == EntryType.WMP_ORDER:
        # An order carries no fee (its entry has none): the grant's fee is 0, as ``wmp.place_order`` records it.
        request.update(amount=parsed_amount(op["amount"]), product=op["product"])
    elif kind != EntryType.BALANCE_ENQUIRY:
        request.update(amount=parsed_amount(op["amount"]), fee=operations.quote_fee(station(), kind))
    if kind == EntryType.TRANSFER:
        request["payee_account"] = op["payee_account"]
    elif kind == EntryType.BILL_PAYMENT:
        request["biller"] = op["biller"]
    return request


def withdrawal_identity(op: dict) -> dict | None:
    """The ID card fields of a withdrawal as the journal carries them, or None when none was recorded."""
    fields = {key: op[key] for key in ("id_hash", "id_last4") if op.get(key)}
    if op.get("proxy"):
        fields["proxy"] = True
    return fields or None


def forget_amount(op: dict) -> None:
    """A refused amount is not kept (nor its txn or the bank's answer): the step is to be done again."""
    if op.get("kind") in (EntryType.WITHDRAWAL, EntryType.DEPOSIT, EntryType.TRANSFER, EntryType.BILL_PAYMENT,
                          EntryType.WMP_ORDER):
        for key in ("amount", *CONFIRMATIONS):
            op.pop(key, None)
        session["op"] = op


def usable_limits(op: dict) -> dict | None:
    """What the customer can use, shown on the amount screen before the PIN: online the bank's limits (per
    transaction and what is left today), offline the offline allowance left. None without a customer."""
    customer = customer_of(op)
    kind = op["kind"]
    if customer is None or kind not in (EntryType.WITHDRAWAL, EntryType.TRANSFER):
        return None
    st = station()
    policy_limits = st.policy["limits"][kind]
    left_today = max(policy_limits["daily"] - limits.used_today(st, customer, kind), 0)
    if should_ask_bank(st):
        return {"online": True, "per_txn": policy_limits["per_txn"], "left_today": left_today}
    return {"online": False, "offline_left": limits.offline_available(st, customer), "left_today": left_today}


def pin_step(op: dict):
    """The customer's PIN on a masked pad, then the operation is recorded. Once the customer is locked (the last
    wrong PIN, or since: a reload) the pad and OK are gone: the screen says so and offers only Cancel and Home."""
    op.setdefault("txn", receipts.new_txn_id())
    session["op"] = op
    customer = customer_of(op)
    try:
        if customer is not None:
            agents.refuse_inactive(customer)
    except StationError as err:
        return render_step("op_pin.html", op, error=translate_error(err), locked=True)
    if request.method == "POST":
        st = station()
        try:
            auth = agents.authenticate_customer(st, current_agent(), customer_of(op), request.form.get("pin", ""))
        except (errors.CustomerLocked, errors.CustomerNotActive) as err:
            return render_step("op_pin.html", op, error=translate_error(err), locked=True)
        except StationError as err:
            return render_step("op_pin.html", op, error=translate_error(err))
        return execute(op, auth, request.form.get("txn", ""), "op_pin.html")
    return render_step("op_pin.html", op)


def execute(op: dict, auth, txn: str, template: str, **context):
    """Record the operation with the UUID the form carried; a refusal stays on the same screen."""
    st = station()
    agent = current_agent()
    kind = op["kind"]
    # The bank's grant, by its id, for the txn it was given for (a grant for another txn is never used).
    grant = op.get("auth_id") if txn == op.get("txn") else None
    try:
        if kind == "withdrawal":
            receipt = operations.withdraw_cash(st, agent, auth, op["amount"], txn, authorization=grant,
                                               identity=withdrawal_identity(op))
        elif kind == "deposit":
            receipt = operations.deposit_cash(st, agent, auth, op["amount"], txn)
        elif kind == "transfer":
            receipt = operations.transfer(st, agent, auth, op["payee_account"], op["payee_name"], op["amount"], txn,
                                          fraud_warning_confirmed=bool(op.get("fraud_ok")),
                                          approval=approval_of(op, agent), authorization=grant)
        elif kind == EntryType.BILL_PAYMENT:
            receipt = operations.pay_bill(st, agent, auth, op["biller"], op["ref"], op["amount"], txn,
                                          funding=op.get("funding", "cash"), authorization=grant)
        elif kind == EntryType.WMP_ORDER:
            receipt = wmp.place_order(st, agent, auth, op["product"], op["amount"], txn,
                                      risk_statement_read=bool(op.get("statement_done")), authorization=grant)
        else:
            receipt = operations.balance_enquiry(st, agent, auth, txn, authorization=grant).receipt
    except (errors.FraudWarningRequired, errors.FraudSupervisorRequired) as err:
        # The warning's answer no longer holds (the supervisor's approval ran out while the customer got to the
        # PIN, or the bank's policy changed meanwhile): back to the warning, not a refusal the PIN screen repeats.
        for key in ("warning_done", "fraud_ok", "approval"):
            op.pop(key, None)
        op["approval_expired"] = isinstance(err, errors.FraudSupervisorRequired)
        session["op"] = op
        return redirect(url_for("ops.step", kind=kind, step="warning"))
    except errors.WmpRiskStatementRequired:
        op.pop("statement_done", None)
        session["op"] = op
        return redirect(url_for("ops.step", kind=kind, step="statement"))
    except errors.IdentityRequired:
        # The policy's id_check_fen came down (a sync) since the amount step skipped the ID card: ask for it now,
        # then the confirmation again (it shows the card), not a refusal the PIN screen repeats.
        for key in ("identity_done", "confirmed"):
            op.pop(key, None)
        session["op"] = op
        return redirect(url_for("ops.step", kind=kind, step="identity"))
    except StationError as err:
        return render_step(template, op, error=translate_error(err), **context)
    # Keep the finished operation's UUID: a second tap on the same form lands on the same receipt.
    session["op"] = {"kind": kind, "txn": txn, "done_seq": receipt.seq}
    if grant or should_ask_bank(st):
        online.push_now(st)
    return redirect(url_for("receipts.show", seq=receipt.seq))


def approval_of(op: dict, agent) -> operations.SupervisorApproval | None:
    """The supervisor's approval the warning step noted (the core checks it is still good), or None."""
    noted = op.get("approval")
    if not noted or agent is None:
        return None
    return operations.SupervisorApproval(noted["supervisor_id"], agent.agent_id, parse_utc(noted["approved_at"]))


STEP_VIEWS = {
    "customer": customer_step,
    "amount": amount_step,
    "payee": payee_step,
    "warning": warning_step,
    "identity": identity_step,
    "product": product_step,
    "statement": statement_step,
    "biller": biller_step,
    "reference": reference_step,
    "confirm": confirm_step,
    "pin": pin_step,
}
