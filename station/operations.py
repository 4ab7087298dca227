"""The customer operations: withdraw, deposit, transfer, pay a bill, balance enquiry, cancel, reverse.

Every operation goes through ``station.writepath.customer_operation``: one IMMEDIATE transaction that checks,
writes its business rows and appends its signed journal entry. Checks run in one fixed order, each with its own
refusal (``station.errors``):

    agent session, customer status and PIN, amount format, per-transaction limit, per-customer daily limit,
    offline allowance, station unsynced exposure (amount and count), offline age, drawer cash, and for a
    withdrawal above the policy's ``id_check_fen`` or by a proxy the ID card of the person present
    (``station.identity``).

Steps 1 and 2 are ``station.agents``', 4 to 8 ``station.limits``', 9 ``station.business_day``'s. The fee of an
operation comes from the bank's policy through ``quote_fee`` only: the confirm screen shows that quote and the
plan charges it. What may be reversed is ``may_reverse``'s to say, and ``reverse`` refuses exactly what it refuses.

Online: a withdrawal, transfer, bill paid from the account, balance enquiry or transfer cancellation (and a
wealth-product order, ``station.wmp``) may be given the bank's real-time authorization (``authorization=``, from
``station.online.authorize``). When it is the bank's grant of exactly this operation and has not expired
(``station.online.usable_grant``), steps 6 to 8 (the offline rules) are skipped and the entry names it (``auth``);
otherwise the operation is checked and recorded offline.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from station import errors
from station.agents import AgentSession, CustomerAuth, check_session, login_agent, refuse_inactive
from station.business_day import check_drawer, current_day, open_day_or_refuse
from station.context import Station, bound_station
from station.db import Biller, BlockedPayee, BusinessDay, Customer, JournalEntry, Operation, Payee
from station.device_state import refuse_new_operations
from station.identity import refuse_without_identity
from station.journal import append_entry
from station.limits import check_debit_limits, check_station_deposits, offline_available
from station.online import live_balance, usable_grant
from station.protocol.entry_types import LIVE_STATES, MAX_ID, EntryType, OperationState, printable, spec_of
from station.protocol.money import AmountError, format_yuan, parse_amount
from station.protocol.scams import FraudWarning, is_elderly, warning_for
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import unverified_payload
from station.receipts import Receipt, customer_masked
from station.writepath import Plan, customer_operation

_PAYEE_ACCOUNT_RE = re.compile(r"^\d{10,19}$")
#: A biller's reference pattern made of digits only: fixed leading digits, then ``\d`` or ``[0-9]`` with an
#: optional ``{n}`` or ``{m,n}`` (what ``bill_reference_refusal`` can put in words).
_DIGITS_ONLY = re.compile(r"(?P<prefix>\d*)(?:\\d|\[0-9\])(?:\{(?P<low>\d+)(?:,(?P<high>\d+))?\})?")


@dataclass(frozen=True)
class Balance:
    """A balance enquiry's receipt and what it showed: the balance (the bank's snapshot minus this station's debits
    since), the snapshot's time, the offline allowance left, and whether the bank answered live (``online``)."""

    receipt: Receipt
    balance_fen: int | None
    balance_as_of: datetime | None
    offline_available_fen: int
    online: bool = False


def _parse(amount) -> int:
    """A typed amount in fen (``parse_amount``), its refusal as the station's ``InvalidAmount``."""
    try:
        return parse_amount(amount)
    except AmountError as exc:
        raise errors.InvalidAmount(exc.code) from exc


def quote_fee(st: Station, op_type: str) -> int:
    """The fee (fen) the bank's policy charges for an operation of ``op_type``: what the confirm screen shows
    and what the operation's plan charges (a bill paid in cash or from the account pays the same fee)."""
    return st.policy["fees"].get(op_type, 0)


def _granted(st: Station, authorization, kind: str, txn: str | None, customer: Customer | None, amount_fen: int,
             fee: int) -> str | None:
    """The auth_id the operation is recorded under: ``authorization`` when it is usable for exactly this one."""
    if authorization is None or customer is None or txn is None:
        return None
    return usable_grant(st, authorization, kind=kind, txn=str(txn).lower(), account=customer.account_id,
                        amount=amount_fen, fee=fee)


def _plan_withdrawal(st: Station, customer: Customer, day: BusinessDay, amount, *, authorization=None,
                     txn: str | None = None, ask_bank: bool = False, identity: dict | None = None,
                     check_identity: bool = True) -> Plan:
    amount_fen = _parse(amount)
    limits = st.policy["limits"]["withdrawal"]
    if amount_fen < limits["min"] or amount_fen % limits["multiple"]:
        raise errors.WithdrawalAmountRule(minimum=format_yuan(limits["min"]), multiple=format_yuan(limits["multiple"]))
    fee = quote_fee(st, EntryType.WITHDRAWAL)
    auth_id = _granted(st, authorization, EntryType.WITHDRAWAL, txn, customer, amount_fen, fee)
    check_debit_limits(st, customer, "withdrawal", amount_fen, amount_fen + fee, authorized=ask_bank or bool(auth_id))
    check_drawer(day, -amount_fen)
    if check_identity:
        refuse_without_identity(st, amount_fen, identity)
    details = {key: identity[key] for key in ("id_hash", "id_last4", "proxy") if identity and key in identity}
    return Plan(EntryType.WITHDRAWAL, customer, amount_fen, fee, amount_fen + fee, -amount_fen, details,
                auth_id=auth_id)


def _plan_deposit(st: Station, customer: Customer, day: BusinessDay, amount) -> Plan:
    amount_fen = _parse(amount)
    minimum = st.policy["limits"]["deposit"]["min"]
    if amount_fen < minimum:
        raise errors.DepositAmountRule(minimum=format_yuan(minimum))
    check_debit_limits(st, customer, "deposit", amount_fen, 0)
    check_station_deposits(st, amount_fen)
    return Plan(EntryType.DEPOSIT, customer, amount_fen, 0, 0, amount_fen)


def _transfer_amount(st: Station, customer: Customer, amount, *, authorization=None, txn: str | None = None,
                     ask_bank: bool = False) -> tuple[int, int, str | None]:
    """(amount, fee, auth_id) of a transfer, once the amount and every limit have been checked."""
    amount_fen = _parse(amount)
    fee = quote_fee(st, EntryType.TRANSFER)
    auth_id = _granted(st, authorization, EntryType.TRANSFER, txn, customer, amount_fen, fee)
    check_debit_limits(st, customer, "transfer", amount_fen, amount_fen + fee, authorized=ask_bank or bool(auth_id))
    return amount_fen, fee, auth_id


@bound_station
def check_amount(st: Station, session: AgentSession, customer: Customer, op_type: str, amount, *,
                 ask_bank: bool = False) -> int:
    """Every check of a withdrawal, deposit or transfer of ``amount`` except the PIN (and, for a transfer, the
    payee and the fraud warning), so the agent learns of a refusal (over a limit, not enough cash in the drawer)
    before the customer types a PIN. ``ask_bank``: the bank is asked next, so the offline rules (allowance,
    exposure, offline age) are left to it. Returns the amount in fen; records nothing."""
    check_session(st, session)
    customer = Customer.get_by_id(customer.id)
    refuse_inactive(customer)
    day = open_day_or_refuse(st)
    if op_type == "transfer":
        return _transfer_amount(st, customer, amount, ask_bank=ask_bank)[0]
    if op_type == "withdrawal":
        # The ID card, when one is needed, is typed after the amount: withdraw_cash refuses without it.
        return _plan_withdrawal(st, customer, day, amount, ask_bank=ask_bank, check_identity=False).amount_fen
    return _plan_deposit(st, customer, day, amount).amount_fen


def withdraw_cash(st: Station, session: AgentSession, auth: CustomerAuth, amount, txn: str, *,
                  authorization=None, identity: dict | None = None) -> Receipt:
    """Pay cash out of the drawer, debited from the customer's account (under the bank's ``authorization``
    when it is usable: module docstring). ``identity``: the ID card fields of the person present
    (``station.identity.identity_fields``), required above the policy's ``id_check_fen`` or for a proxy."""

    def request(customer):
        return {"type": "withdrawal", "customer": customer.id, "amount": _parse(amount), **(identity or {})}

    def plan(customer, day):
        return _plan_withdrawal(st, customer, day, amount, authorization=authorization, txn=txn, identity=identity)

    return customer_operation(st, session, auth, txn, request, plan)


def deposit_cash(st: Station, session: AgentSession, auth: CustomerAuth, amount, txn: str) -> Receipt:
    """Take cash into the drawer for the customer's account (a credit: allowed even when offline long)."""

    def request(customer):
        return {"type": "deposit", "customer": customer.id, "amount": _parse(amount)}

    def plan(customer, day):
        return _plan_deposit(st, customer, day, amount)

    return customer_operation(st, session, auth, txn, request, plan)


@bound_station
def fraud_warning(st: Station, customer: Customer, payee_account: str, payee_name: str, amount_fen: int
                  ) -> FraudWarning:
    """Why this transfer gets the fraud warning (a first-time payee, a large amount, a scam marker in the payee's
    name), and whether going past it needs a supervisor's PIN: ``station.protocol.scams``, the bank's rule too."""
    known = Payee.select().where((Payee.customer == customer.id) & (Payee.account == payee_account)).exists()
    return warning_for(st.policy, known_payee=known, amount_fen=amount_fen, payee_name=payee_name)


def needs_fraud_warning(st: Station, customer: Customer, payee_account: str, amount_fen: int, payee_name: str = ""
                        ) -> bool:
    """Whether the agent must read the fraud warning with the customer before this transfer."""
    return bool(fraud_warning(st, customer, payee_account, payee_name, amount_fen))


@bound_station
def customer_is_elderly(st: Station, customer: Customer) -> bool:
    """Whether the customer is ``elderly_age`` or older this year (by the birth year the bank sent)."""
    return is_elderly(customer.birth_year, st.local_date().year, st.policy["elderly_age"])


@dataclass(frozen=True)
class SupervisorApproval:
    """A supervisor typed their PIN to let ``agent_id``'s transfer past the fraud warning, at ``approved_at``."""

    supervisor_id: str
    agent_id: str
    approved_at: datetime


@bound_station
def approve_past_warning(st: Station, session: AgentSession, supervisor_id: str, pin: str) -> SupervisorApproval:
    """A supervisor's PIN (checked and journaled like a login: wrong ones count towards the lock) lets the agent's
    transfer past the fraud warning; an agent who is not a supervisor is refused."""
    check_session(st, session)
    supervisor = login_agent(st, supervisor_id, pin)
    if supervisor.role != "supervisor":
        raise errors.SupervisorRequired()
    return SupervisorApproval(supervisor.agent_id, session.agent_id, st.now())


def _check_approval(st: Station, session: AgentSession, approval: SupervisorApproval | None) -> str:
    """The approving supervisor's id; refuses a missing, stale or foreign approval, or one whose supervisor is no
    longer one (or is locked)."""
    if approval is None or approval.agent_id != session.agent_id:
        raise errors.FraudSupervisorRequired(amount=format_yuan(st.policy["fraud_supervisor_fen"]))
    age = (st.now() - approval.approved_at).total_seconds()
    row = st.db.execute_sql("SELECT role, locked FROM agent WHERE agent_id = ?", (approval.supervisor_id,)).fetchone()
    if not 0 <= age <= st.policy["customer_auth_seconds"] or row is None or row[0] != "supervisor" or row[1]:
        raise errors.FraudSupervisorRequired(amount=format_yuan(st.policy["fraud_supervisor_fen"]))
    return approval.supervisor_id


def stop_transfer(st: Station, session: AgentSession, customer: Customer, payee_account: str, payee_name: str,
                  amount, txn: str) -> Receipt:
    """The customer decided not to send at the fraud warning: journal it (``transfer_stopped``: the amount, the
    payee, why the warning showed; no PIN was typed) so the bank sees the attempted scam. ``txn`` is the warning
    screen's UUID: a second tap returns the first receipt."""
    amount_fen = _parse(amount)
    try:
        txn = str(uuid.UUID(str(txn)))
    except ValueError as exc:
        raise errors.InvalidTxnId() from exc
    with st.write():
        check_session(st, session)
        customer = Customer.get_by_id(customer.id)
        account, name = check_payee(st, customer, payee_account, payee_name)
        earlier = JournalEntry.get_or_none(JournalEntry.txn == txn)
        if earlier is None:
            refuse_new_operations(st)
            warning = fraud_warning(st, customer, account, name, amount_fen)
            body = {"agent": session.agent_id, "account": customer.account_id, "amount": amount_fen,
                    "payee_account": account, "payee_name": name, "new_payee": warning.new_payee,
                    "over_threshold": warning.over_threshold, "markers": list(warning.markers)}
            earlier = append_entry(st, EntryType.TRANSFER_STOPPED, st.now(), body, txn=txn)
        elif earlier.type != EntryType.TRANSFER_STOPPED:
            raise errors.TxnConflict()
    return stopped_receipt(earlier, customer)


def stopped_receipt(entry: JournalEntry, customer: Customer | None) -> Receipt:
    """The receipt of a ``transfer_stopped`` entry: the amount not sent, to whom, and why the warning showed."""
    payload = unverified_payload(entry.token)
    details = {k: payload[k] for k in ("payee_account", "payee_name", "new_payee", "over_threshold", "markers")
               if k in payload}
    return Receipt(seq=entry.seq, txn=entry.txn, type=entry.type, token=entry.token, amount_fen=payload["amount"],
                   fee_fen=0, status=OperationState.RECORDED, account_masked=customer_masked(customer),
                   recorded_at=entry.recorded_at, details=details)


@bound_station
def check_payee(st: Station, customer: Customer, payee_account: str, payee_name: str) -> tuple[str, str]:
    """The cleaned (account, name) of a transfer's payee; refuses a malformed, own or blocked account."""
    account = re.sub(r"\s+", "", str(payee_account or ""))
    if not _PAYEE_ACCOUNT_RE.match(account):
        raise errors.InvalidPayeeAccount()
    name = str(payee_name or "").strip()
    # Printable only: the name goes into a signed entry, onto paper and to the bank.
    if not name or len(name) > 30 or not printable(name):
        raise errors.InvalidPayeeName()
    if account in (customer.card_number, customer.passbook_number, customer.account_id):
        raise errors.OwnAccountTransfer()
    if BlockedPayee.get_or_none(BlockedPayee.account == account) is not None:
        raise errors.PayeeBlocked()
    return account, name


def transfer(
    st: Station,
    session: AgentSession,
    auth: CustomerAuth,
    payee_account: str,
    payee_name: str,
    amount,
    txn: str,
    *,
    fraud_warning_confirmed: bool = False,
    approval: SupervisorApproval | None = None,
    authorization=None,
) -> Receipt:
    """Record a transfer for the bank to execute; it stays cancellable until the bank has executed it.

    When the fraud warning is due (``fraud_warning``) the agent must have read it with the customer
    (``fraud_warning_confirmed``) and, at or above ``fraud_supervisor_fen``, a supervisor must have approved going
    past it (``approval``, from ``approve_past_warning``); the entry says so (``warned``, ``approved_by``)."""

    def request(customer):
        return {
            "type": "transfer",
            "customer": customer.id,
            "payee": re.sub(r"\s+", "", str(payee_account or "")),
            "name": str(payee_name or "").strip(),
            "amount": _parse(amount),
        }

    def plan(customer, day):
        account, name = check_payee(st, customer, payee_account, payee_name)
        # The warning before the limits: a scam's amount must meet the warning, as on the touchscreen.
        warning = fraud_warning(st, customer, account, name, _parse(amount))
        details = {"payee_account": account, "payee_name": name}
        if warning:
            if not fraud_warning_confirmed:
                raise errors.FraudWarningRequired()
            details["warned"] = True
            if warning.needs_supervisor:
                details["approved_by"] = _check_approval(st, session, approval)
        amount_fen, fee, auth_id = _transfer_amount(st, customer, amount, authorization=authorization, txn=txn)
        return Plan(EntryType.TRANSFER, customer, amount_fen, fee, amount_fen + fee, 0, details, auth_id=auth_id)

    return customer_operation(st, session, auth, txn, request, plan)


def bill_reference_refusal(biller: Biller) -> errors.InvalidBillReference:
    """The refusal of a reference ``biller`` does not accept, saying what it expects when its pattern says it.

    A pattern of digits only (``\\d{10}``, ``1\\d{10}``, ``[0-9]{10,12}``: leading fixed digits, then a run of
    digits) is described by its length and, for a phone, its first digits; any other pattern gets the general
    "check the number on the bill".
    """
    shape = _DIGITS_ONLY.fullmatch(biller.ref_pattern or "")
    phone = biller.kind == "mobile"
    if shape is None:
        return errors.InvalidBillReference(errors.InvalidBillReference.PHONE if phone else None)
    fixed, low = len(shape["prefix"]), int(shape["low"] or 1)
    high = int(shape["high"] or low)
    digits = str(fixed + low) if low == high else f"{fixed + low}-{fixed + high}"
    if phone and shape["prefix"]:
        return errors.InvalidBillReference(errors.InvalidBillReference.PHONE_DIGITS_PREFIX, digits=digits,
                                           prefix=shape["prefix"])
    template = errors.InvalidBillReference.PHONE_DIGITS if phone else errors.InvalidBillReference.ACCOUNT_DIGITS
    return errors.InvalidBillReference(template, digits=digits)


def validate_bill_reference(biller: Biller, reference: str) -> str:
    """The cleaned bill reference (account or phone number); refuses one the biller's pattern rejects."""
    reference = re.sub(r"\s+", "", str(reference or ""))
    try:
        pattern = re.compile(biller.ref_pattern)
    except re.error as exc:
        # The bank checks patterns on import; one broken all the same must not turn every bill into an error page.
        raise errors.BillerRulesBroken() from exc
    # The biller's pattern comes from the bank and may be loose: the reference is signed and printed all the same,
    # so it must be printable and short whatever the pattern allows.
    if len(reference) > MAX_ID or not printable(reference) or not pattern.fullmatch(reference):
        raise bill_reference_refusal(biller)
    if biller.ref_prefixes and not any(reference.startswith(p) for p in biller.ref_prefixes):
        raise errors.WrongCarrier(biller=biller.name_en)
    return reference


def _check_bill_amount(biller: Biller, amount_fen: int) -> None:
    if biller.denominations:
        if amount_fen not in biller.denominations:
            raise errors.TopUpDenominationRule(
                choices=", ".join(format_yuan(d).removesuffix(".00") for d in biller.denominations)
            )
    elif not biller.min_fen <= amount_fen <= biller.max_fen:
        raise errors.BillAmountRule(minimum=format_yuan(biller.min_fen), maximum=format_yuan(biller.max_fen))


def pay_bill(
    st: Station,
    session: AgentSession,
    auth: CustomerAuth | None,
    biller_code: str,
    reference: str,
    amount,
    txn: str,
    *,
    funding: str = "cash",
    authorization=None,
) -> Receipt:
    """Pay a utility bill or a mobile top-up, in cash (no customer PIN needed) or from the customer's account."""
    if funding not in ("cash", "account"):
        raise ValueError("funding is 'cash' or 'account'")

    def request(customer):
        return {
            "type": "bill_payment",
            "customer": customer.id if customer else None,
            "biller": biller_code,
            "ref": re.sub(r"\s+", "", str(reference or "")),
            "amount": _parse(amount),
            "funding": funding,
        }

    def plan(customer, day):
        biller = Biller.get_or_none(Biller.code == biller_code)
        if biller is None:
            raise errors.UnknownBiller()
        ref = validate_bill_reference(biller, reference)
        amount_fen = _parse(amount)
        _check_bill_amount(biller, amount_fen)
        fee = quote_fee(st, EntryType.BILL_PAYMENT)
        debit = amount_fen + fee if funding == "account" else 0
        auth_id = _granted(st, authorization, EntryType.BILL_PAYMENT, txn, customer, amount_fen, fee) if debit else None
        check_debit_limits(st, customer, "bill_payment", amount_fen, debit, authorized=bool(auth_id))
        details = {"biller": biller.code, "ref": ref, "funding": funding}
        cash = amount_fen + fee if funding == "cash" else 0
        return Plan(EntryType.BILL_PAYMENT, customer, amount_fen, fee, debit, cash, details, auth_id=auth_id)

    return customer_operation(st, session, auth, txn, request, plan, needs_customer=funding == "account")


@bound_station
def balance_enquiry(st: Station, session: AgentSession, auth: CustomerAuth, txn: str, *,
                    authorization=None) -> Balance:
    """The balance (the bank's snapshot minus this station's debits since it: live when ``authorization`` is
    the bank's usable answer to this enquiry, which brought a fresh snapshot), its time, and the offline
    allowance left; the entry records what was shown."""

    def request(customer):
        return {"type": "balance_enquiry", "customer": customer.id}

    def plan(customer, day):
        auth_id = _granted(st, authorization, EntryType.BALANCE_ENQUIRY, txn, customer, 0, 0)
        balance = live_balance(st, customer)
        details = {"balance": None if balance is None else max(balance, 0),
                   "offline_available": offline_available(st, customer)}
        if customer.balance_as_of:
            details["as_of"] = utc_text(customer.balance_as_of)
        return Plan(EntryType.BALANCE_ENQUIRY, customer, 0, details=details, auth_id=auth_id)

    receipt = customer_operation(st, session, auth, txn, request, plan)
    shown = receipt.details
    as_of = parse_utc(shown["as_of"]) if shown.get("as_of") else None
    online = Operation.get_by_id(receipt.txn).auth_id is not None
    return Balance(receipt, shown.get("balance"), as_of, shown.get("offline_available", 0), online)


def cancel_transfer(st: Station, session: AgentSession, auth: CustomerAuth, transfer_txn: str, txn: str, *,
                    authorization=None) -> Receipt:
    """The customer withdraws a transfer the bank has not executed yet: offline only one the bank has not
    received (recorded); a settled one only with the bank's real-time grant (kind ``transfer_cancel``, amount
    the transfer's, fee 0), since only the bank knows whether it has executed it."""

    def request(customer):
        return {"type": "transfer_cancel", "customer": customer.id, "ref": transfer_txn}

    def plan(customer, day):
        original = Operation.get_or_none((Operation.txn == transfer_txn) & (Operation.type == "transfer"))
        if original is None or original.customer_id != customer.id:
            raise errors.NoSuchReceipt()
        auth_id = _granted(st, authorization, EntryType.TRANSFER_CANCEL, txn, customer, original.amount_fen, 0)
        if original.status != OperationState.RECORDED and not (auth_id and original.status == OperationState.SETTLED):
            raise errors.NotCancellable()
        Operation.update(status="cancelled").where(Operation.txn == original.txn).execute()
        details = {"ref_seq": original.seq}
        return Plan(EntryType.TRANSFER_CANCEL, customer, original.amount_fen, details=details, ref_txn=original.txn,
                    auth_id=auth_id)

    return customer_operation(st, session, auth, txn, request, plan)


def _refuse_unreversible(original: Operation, day: BusinessDay | None) -> None:
    """Every rule of what may be reversed, in ``reverse``'s order; ``may_reverse`` asks the same questions."""
    if not spec_of(original.type).reversible:
        raise errors.NotReversible()
    if original.status == "reversed":
        raise errors.AlreadyReversed()
    if original.status not in LIVE_STATES:
        raise errors.NotReversible()
    if day is None or original.day_id != day.id:
        raise errors.ReversalTooLate()
    check_drawer(day, -original.cash_fen)


@bound_station
def may_reverse(st: Station, op: Operation) -> bool:
    """Whether a supervisor's ``reverse`` of ``op`` would pass every rule now: a reversible type that still
    stands, recorded in the business day still open, and cash for it in the drawer."""
    try:
        _refuse_unreversible(op, current_day(st))
    except errors.StationError:
        return False
    return True


def reverse(st: Station, supervisor: AgentSession, original_txn: str, txn: str, reason: str = "") -> Receipt:
    """A supervisor undoes one of today's operations with a new entry that points at the original."""

    def request(_customer):
        return {"type": "reversal", "ref": original_txn, "reason": reason}

    # The role comes right after the session: a plain agent learns nothing about the day or the receipt.
    check_session(st, supervisor)
    if supervisor.role != "supervisor":
        raise errors.SupervisorRequired()

    def plan(_customer, day):
        original = Operation.get_or_none(Operation.txn == original_txn)
        if original is None:
            raise errors.NoSuchReceipt()
        _refuse_unreversible(original, day)
        if len(str(reason)) > 200 or not printable(str(reason)):
            raise errors.InvalidReversalReason()
        Operation.update(status="reversed").where(Operation.txn == original.txn).execute()
        details = {"ref_seq": original.seq, "reason": str(reason)}
        return Plan(
            EntryType.REVERSAL,
            original.customer,
            original.amount_fen,
            cash_fen=-original.cash_fen,
            details=details,
            ref_txn=original.txn,
        )

    return customer_operation(st, supervisor, None, txn, request, plan, needs_customer=False)
