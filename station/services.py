"""The station's operations: every function the UI, the CLI and the simulator call.

Each operation runs in one IMMEDIATE SQLite transaction that checks, writes its business rows and appends
its signed journal entry, so nothing is recorded without its entry and no entry without its rows. Checks run
in one fixed order, each with its own refusal (``station.errors``):

    agent session, customer status and PIN, amount format, per-transaction limit, per-customer daily limit,
    offline allowance, station unsynced exposure (amount and count), offline age, drawer cash.

Idempotency: the caller passes a transaction UUID. The same UUID with the same request returns the original
receipt and records nothing; the same UUID with a different request is refused (``TxnConflict``).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from stdnum import luhn

from station import errors
from station.context import Station
from station.db import Agent, Biller, BlockedPayee, BusinessDay, Customer, JournalEntry, Operation, Payee, db_proxy
from station.journal import append_entry
from station.protocol.entry_types import LIVE_STATES, EntryType, spec_of
from station.protocol.money import AmountError, format_yuan, parse_amount
from station.protocol.pins import check_pin, make_pin_verifier
from station.protocol.tokens import canonical_json

#: Denominations a drawer count accepts, in fen: 100, 50, 20, 10, 5, 1 yuan notes/coins, 5 and 1 jiao coins.
DENOMINATIONS_FEN = (10_000, 5_000, 2_000, 1_000, 500, 100, 50, 10)
AGENT_SESSION_HOURS = 12
#: ``LIVE_STATES`` as an SQL list, for the hand-written queries of the hot path.
_LIVE_SQL = "(" + ", ".join(f"'{state}'" for state in LIVE_STATES) + ")"

_CARD_RE = re.compile(r"^\d{16,19}$")
_PASSBOOK_RE = re.compile(r"^\d{8,15}$")
_PAYEE_ACCOUNT_RE = re.compile(r"^\d{10,19}$")


# -- values handed to callers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AgentSession:
    agent_id: str
    name: str
    role: str
    station_id: str
    started_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class CustomerAuth:
    """Proof that a customer typed the right PIN, for one agent session, for a short while."""

    customer_id: int
    account_id: str
    agent_id: str
    verified_at: datetime


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


@dataclass(frozen=True)
class Balance:
    receipt: Receipt
    balance_fen: int | None
    balance_as_of: datetime | None
    offline_available_fen: int


# -- helpers ----------------------------------------------------------------------------------------------
def mask_number(number: str | None) -> str | None:
    """A card or passbook number as a receipt may show it: first four and last four digits."""
    if not number:
        return None
    if len(number) <= 8:
        return "*" * (len(number) - 4) + number[-4:]
    return f"{number[:4]} **** {number[-4:]}"


def customer_masked(customer: Customer | None) -> str | None:
    if customer is None:
        return None
    return mask_number(customer.card_number or customer.passbook_number)


def new_txn_id() -> str:
    return str(uuid.uuid4())


def _check_txn_id(txn: str) -> str:
    try:
        parsed = uuid.UUID(str(txn))
    except ValueError as exc:
        raise errors.InvalidTxnId() from exc
    if str(parsed) != str(txn).lower():
        raise errors.InvalidTxnId()
    return str(parsed)


def _request_hash(request: dict) -> str:
    return hashlib.sha256(canonical_json(request)).hexdigest()


def _yuan(fen: int) -> str:
    return format_yuan(fen)


def _parse(amount) -> int:
    try:
        return parse_amount(amount)
    except AmountError as exc:
        raise errors.InvalidAmount(exc.code) from exc


def receipt_for(op: Operation, token: str | None = None) -> Receipt:
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


def _entry_receipt(entry: JournalEntry, amount_fen: int = 0, details: dict | None = None) -> Receipt:
    return Receipt(
        seq=entry.seq,
        txn=entry.txn,
        type=entry.type,
        token=entry.token,
        amount_fen=amount_fen,
        fee_fen=0,
        status="recorded",
        account_masked=None,
        recorded_at=entry.recorded_at,
        details=details or {},
    )


# -- agents -----------------------------------------------------------------------------------------------
def add_agent(st: Station, agent_id: str, name: str, role: str, pin: str) -> None:
    """Register an agent (journaled, without the PIN verifier)."""
    st.activate()
    verifier = make_pin_verifier(pin)
    with st.write():
        Agent.create(agent_id=agent_id, name=name, role=role, pin_verifier=verifier)
        append_entry(st.signer, st.station_id, EntryType.AGENT_ADDED, st.now(), {"agent": agent_id, "role": role})


def login_agent(st: Station, agent_id: str, pin: str) -> AgentSession:
    """Check an agent's PIN; five wrong PINs in a row lock the agent (each failure is journaled)."""
    st.activate()
    agent = Agent.get_or_none(Agent.agent_id == agent_id)
    if agent is None:
        raise errors.AgentUnknown()
    if agent.locked:
        raise errors.AgentLocked()
    now = st.now()
    if check_pin(pin, agent.pin_verifier):
        # The slow hash ran outside any lock: parallel guesses may have locked the agent meanwhile.
        with st.write():
            agent = Agent.get_by_id(agent_id)
            if agent.locked:
                raise errors.AgentLocked()
            if agent.failed_pins:
                Agent.update(failed_pins=0).where(Agent.agent_id == agent_id).execute()
        return AgentSession(
            agent_id=agent.agent_id,
            name=agent.name,
            role=agent.role,
            station_id=st.station_id,
            started_at=now,
            expires_at=now + timedelta(hours=AGENT_SESSION_HOURS),
        )
    tries = st.policy["agent_pin_tries"]
    with st.write():
        agent = Agent.get_by_id(agent_id)
        failures = agent.failed_pins + 1
        locked = failures >= tries
        Agent.update(failed_pins=failures, locked=locked).where(Agent.agent_id == agent_id).execute()
        append_entry(
            st.signer, st.station_id, EntryType.AGENT_PIN_FAILED, now, {"agent": agent_id, "failures": failures,
                                                                "locked": locked}
        )
    if locked:
        raise errors.AgentLocked()
    raise errors.WrongAgentPin(remaining=tries - failures)


def unlock_agent(st: Station, supervisor: AgentSession, agent_id: str) -> Receipt:
    """A supervisor unlocks an agent locked by wrong PINs (journaled)."""
    st.activate()
    with st.write():
        check_session(st, supervisor)
        if supervisor.role != "supervisor":
            raise errors.SupervisorRequired()
        if Agent.get_or_none(Agent.agent_id == agent_id) is None:
            raise errors.AgentUnknown()
        Agent.update(failed_pins=0, locked=False).where(Agent.agent_id == agent_id).execute()
        body = {"agent": agent_id, "supervisor": supervisor.agent_id}
        entry = append_entry(st.signer, st.station_id, EntryType.AGENT_UNLOCKED, st.now(), body)
    return _entry_receipt(entry)


def check_session(st: Station, session: AgentSession | None) -> None:
    """Refuse an ended, foreign or locked-out agent session (step 1 of every operation)."""
    if session is None or session.station_id != st.station_id or st.now() >= session.expires_at:
        raise errors.AgentSessionInvalid()
    row = st.db.execute_sql("SELECT locked FROM agent WHERE agent_id = ?", (session.agent_id,)).fetchone()
    if row is None or row[0]:
        raise errors.AgentSessionInvalid()


# -- customers --------------------------------------------------------------------------------------------
def identify_customer(st: Station, number: str, kind: str = "card") -> Customer:
    """Find a customer by bank card number (Luhn-checked) or passbook number."""
    st.activate()
    number = re.sub(r"\s+", "", str(number or ""))
    if kind == "card":
        if not _CARD_RE.match(number) or not luhn.is_valid(number):
            raise errors.InvalidCardNumber()
        customer = Customer.get_or_none(Customer.card_number == number)
    elif kind == "passbook":
        if not _PASSBOOK_RE.match(number):
            raise errors.InvalidPassbookNumber()
        customer = Customer.get_or_none(Customer.passbook_number == number)
    else:
        raise ValueError(f"unknown identifier kind {kind!r}")
    if customer is None:
        raise errors.CustomerNotFound()
    return customer


def _refuse_inactive(customer: Customer) -> None:
    if customer.status == "locked":
        raise errors.CustomerLocked()
    if customer.status != "active":
        raise errors.CustomerNotActive()


def authenticate_customer(st: Station, session: AgentSession, customer: Customer, pin: str) -> CustomerAuth:
    """Check the customer's PIN. Three wrong PINs lock the customer; each failure is journaled."""
    st.activate()
    check_session(st, session)
    customer = Customer.get_by_id(customer.id)
    _refuse_inactive(customer)
    now = st.now()
    if check_pin(pin, customer.pin_verifier):
        # The slow hash ran outside any lock: parallel guesses may have locked the customer meanwhile.
        with st.write():
            customer = Customer.get_by_id(customer.id)
            _refuse_inactive(customer)
            if customer.pin_failures:
                Customer.update(pin_failures=0).where(Customer.id == customer.id).execute()
        return CustomerAuth(customer.id, customer.account_id, session.agent_id, now)
    tries = st.policy["customer_pin_tries"]
    with st.write():
        customer = Customer.get_by_id(customer.id)
        failures = customer.pin_failures + 1
        locked = failures >= tries
        Customer.update(pin_failures=failures, status="locked" if locked else customer.status).where(
            Customer.id == customer.id
        ).execute()
        append_entry(
            st.signer,
            st.station_id,
            EntryType.CUSTOMER_PIN_FAILED,
            now,
            {"account": customer.account_id, "agent": session.agent_id, "failures": failures, "locked": locked},
        )
    if locked:
        raise errors.CustomerLocked()
    raise errors.WrongCustomerPin(remaining=tries - failures)


def _check_customer(st: Station, session: AgentSession, auth: CustomerAuth | None) -> Customer:
    if auth is None or auth.agent_id != session.agent_id:
        raise errors.CustomerPinRequired()
    if st.now() - auth.verified_at > timedelta(seconds=st.policy["customer_auth_seconds"]):
        raise errors.CustomerPinRequired()
    customer = next(iter(Customer.raw("SELECT * FROM customer WHERE id = ?", auth.customer_id)), None)
    if customer is None:
        raise errors.CustomerNotFound()
    _refuse_inactive(customer)
    return customer


# -- limits -----------------------------------------------------------------------------------------------
def offline_available(st: Station, customer: Customer) -> int:
    """The customer's offline allowance left: the bank's hold minus debits recorded since it was set."""
    spent = st.db.execute_sql(
        "SELECT COALESCE(SUM(debit_fen), 0) FROM operation"
        f" WHERE customer_id = ? AND seq > ? AND status IN {_LIVE_SQL}",
        (customer.id, customer.allowance_seq),
    ).fetchone()[0]
    return max(customer.allowance_fen - spent, 0)


def unsynced_exposure(st: Station) -> tuple[int, int]:
    """(fen, count) of live debits the bank has not acknowledged yet."""
    total, count = st.db.execute_sql(
        "SELECT COALESCE(SUM(debit_fen), 0), COUNT(*) FROM operation"
        f" WHERE seq > ? AND debit_fen > 0 AND status IN {_LIVE_SQL}",
        (st.setting("acked_seq", 0),),
    ).fetchone()
    return total, count


def last_sync_at(st: Station) -> datetime | None:
    value = st.setting("last_sync_at")
    return datetime.fromisoformat(value) if value else None


def offline_since(st: Station) -> datetime:
    """When the station last heard from the bank: last sync, or its start entry if it never synced."""
    synced = last_sync_at(st)
    if synced is not None:
        return synced
    started = st.db.execute_sql("SELECT recorded_at FROM journal_entry WHERE seq = 1").fetchone()[0]
    return JournalEntry.recorded_at.python_value(started)


def _check_debit_limits(st: Station, customer: Customer, op_type: str, amount_fen: int, debit_fen: int) -> None:
    """Steps 4 to 8 of the check order, for an operation of ``op_type``."""
    policy = st.policy
    limits = policy["limits"][op_type]
    if amount_fen > limits["per_txn"]:
        raise errors.OverTransactionLimit(operation=op_type.replace("_", " "), limit=_yuan(limits["per_txn"]))
    if customer is not None:
        today = st.local_date().isoformat()
        used_today = st.db.execute_sql(
            "SELECT COALESCE(SUM(amount_fen), 0) FROM operation WHERE customer_id = ? AND business_date = ?"
            f" AND type = ? AND status IN {_LIVE_SQL}",
            (customer.id, today, op_type),
        ).fetchone()[0]
        if used_today + amount_fen > limits["daily"]:
            raise errors.OverDailyLimit(
                limit=_yuan(limits["daily"]), left=_yuan(max(limits["daily"] - used_today, 0))
            )
    if debit_fen == 0:
        return
    left = offline_available(st, customer)
    if debit_fen > left:
        raise errors.OverOfflineAllowance(left=_yuan(left))
    exposure_fen, exposure_count = unsynced_exposure(st)
    if exposure_fen + debit_fen > policy["max_unsynced_fen"] or exposure_count + 1 > policy["max_unsynced_count"]:
        raise errors.StationExposureLimit()
    hours = policy["max_offline_hours"]
    if st.now() - offline_since(st) > timedelta(hours=hours):
        raise errors.OfflineTooLong(hours=hours)


def _check_drawer(day: BusinessDay, cash_fen: int) -> None:
    if day.cash_fen + cash_fen < 0:
        raise errors.InsufficientCash(cash=_yuan(day.cash_fen))


def current_day() -> BusinessDay | None:
    """The open business day, if any (at most one is open: ``open_day`` refuses a second)."""
    query = BusinessDay.raw("SELECT * FROM business_day WHERE closed_at IS NULL ORDER BY id DESC LIMIT 1")
    return next(iter(query), None)


def _open_day_or_refuse() -> BusinessDay:
    day = current_day()
    if day is None:
        raise errors.DayNotOpen()
    return day


# -- the write path shared by every customer operation ----------------------------------------------------
@dataclass
class _Plan:
    """What an operation will write, once every check has passed."""

    op_type: str
    customer: Customer | None
    amount_fen: int
    fee_fen: int = 0
    debit_fen: int = 0
    cash_fen: int = 0
    details: dict = field(default_factory=dict)
    ref_txn: str | None = None


def _txn_recorded(txn: str) -> tuple | None:
    return db_proxy.execute_sql("SELECT request_hash FROM operation WHERE txn = ?", (txn,)).fetchone()


def _replay(txn: str, request: dict) -> Receipt | None:
    """The original receipt when ``txn`` was already recorded with the same request; refuse a different one."""
    row = _txn_recorded(txn)
    if row is None:
        return None
    if row[0] != _request_hash(request):
        raise errors.TxnConflict()
    return receipt_for(Operation.get_by_id(txn))


_INSERT_OPERATION = (
    "INSERT INTO operation (txn, seq, type, request_hash, customer_id, day_id, agent_id, business_date, amount_fen,"
    " fee_fen, debit_fen, cash_fen, status, ref_txn, details, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'recorded', ?, ?, ?)"
)


def _write(st: Station, session: AgentSession, txn: str, request: dict, plan: _Plan, day: BusinessDay | None
           ) -> Receipt:
    """Append the entry and write the operation's rows (hand-written SQL: this is the hot path)."""
    now = st.now()
    body = {"agent": session.agent_id, "amount": plan.amount_fen, **plan.details}
    if plan.customer is not None:
        body["account"] = plan.customer.account_id
    if plan.fee_fen:
        body["fee"] = plan.fee_fen
    if plan.ref_txn:
        body["ref_txn"] = plan.ref_txn
    entry = append_entry(st.signer, st.station_id, plan.op_type, now, body, txn=txn)
    st.db.execute_sql(
        _INSERT_OPERATION,
        (
            txn,
            entry.seq,
            plan.op_type,
            _request_hash(request),
            plan.customer.id if plan.customer is not None else None,
            day.id if day is not None else None,
            session.agent_id,
            st.local_date(now).isoformat(),
            plan.amount_fen,
            plan.fee_fen,
            plan.debit_fen,
            plan.cash_fen,
            plan.ref_txn,
            Operation.details.db_value(plan.details),
            Operation.created_at.db_value(now),
        ),
    )
    if plan.cash_fen:
        st.db.execute_sql("UPDATE business_day SET cash_fen = cash_fen + ? WHERE id = ?", (plan.cash_fen, day.id))
    return Receipt(
        seq=entry.seq,
        txn=txn,
        type=plan.op_type,
        token=entry.token,
        amount_fen=plan.amount_fen,
        fee_fen=plan.fee_fen,
        status="recorded",
        account_masked=customer_masked(plan.customer),
        recorded_at=now,
        details=dict(plan.details),
    )


def _customer_operation(st, session, auth, txn, request, plan_fn, *, needs_customer=True) -> Receipt:
    """Run one customer operation: replay check, checks in order (``plan_fn`` does 3 to 9), write."""
    st.activate()
    with st.write():
        check_session(st, session)
        txn = _check_txn_id(txn)
        customer = _check_customer(st, session, auth) if (needs_customer or auth is not None) else None
        try:
            replay = _replay(txn, request(customer))
        except errors.InvalidAmount as exc:
            if _txn_recorded(txn):
                raise errors.TxnConflict() from exc
            raise
        if replay is not None:
            return replay
        day = _open_day_or_refuse()
        plan = plan_fn(customer, day)
        return _write(st, session, txn, request(customer), plan, day)


# -- operations -------------------------------------------------------------------------------------------
def _plan_withdrawal(st: Station, customer: Customer, day: BusinessDay, amount) -> _Plan:
    amount_fen = _parse(amount)
    limits = st.policy["limits"]["withdrawal"]
    if amount_fen < limits["min"] or amount_fen % limits["multiple"]:
        raise errors.WithdrawalAmountRule(minimum=_yuan(limits["min"]), multiple=_yuan(limits["multiple"]))
    fee = st.policy["fees"].get("withdrawal", 0)
    _check_debit_limits(st, customer, "withdrawal", amount_fen, amount_fen + fee)
    _check_drawer(day, -amount_fen)
    return _Plan(EntryType.WITHDRAWAL, customer, amount_fen, fee, amount_fen + fee, -amount_fen)


def _plan_deposit(st: Station, customer: Customer, day: BusinessDay, amount) -> _Plan:
    amount_fen = _parse(amount)
    _check_debit_limits(st, customer, "deposit", amount_fen, 0)
    return _Plan(EntryType.DEPOSIT, customer, amount_fen, 0, 0, amount_fen)


def _transfer_amount(st: Station, customer: Customer, amount) -> tuple[int, int]:
    """(amount, fee) of a transfer, once the amount and every limit have been checked."""
    amount_fen = _parse(amount)
    fee = st.policy["fees"].get("transfer", 0)
    _check_debit_limits(st, customer, "transfer", amount_fen, amount_fen + fee)
    return amount_fen, fee


def check_amount(st: Station, session: AgentSession, customer: Customer, op_type: str, amount) -> int:
    """Every check of a withdrawal, deposit or transfer of ``amount`` except the PIN (and, for a transfer, the
    payee and the fraud warning), so the agent learns of a refusal (over a limit, not enough cash in the drawer)
    before the customer types a PIN. Returns the amount in fen; records nothing."""
    st.activate()
    check_session(st, session)
    customer = Customer.get_by_id(customer.id)
    _refuse_inactive(customer)
    day = _open_day_or_refuse()
    if op_type == "transfer":
        return _transfer_amount(st, customer, amount)[0]
    plans = {"withdrawal": _plan_withdrawal, "deposit": _plan_deposit}
    return plans[op_type](st, customer, day, amount).amount_fen


def withdraw_cash(st: Station, session: AgentSession, auth: CustomerAuth, amount, txn: str) -> Receipt:
    """Pay cash out of the drawer, debited from the customer's account."""

    def request(customer):
        return {"type": "withdrawal", "customer": customer.id, "amount": _parse(amount)}

    def plan(customer, day):
        return _plan_withdrawal(st, customer, day, amount)

    return _customer_operation(st, session, auth, txn, request, plan)


def deposit_cash(st: Station, session: AgentSession, auth: CustomerAuth, amount, txn: str) -> Receipt:
    """Take cash into the drawer for the customer's account (a credit: allowed even when offline long)."""

    def request(customer):
        return {"type": "deposit", "customer": customer.id, "amount": _parse(amount)}

    def plan(customer, day):
        return _plan_deposit(st, customer, day, amount)

    return _customer_operation(st, session, auth, txn, request, plan)


def needs_fraud_warning(st: Station, customer: Customer, payee_account: str, amount_fen: int) -> bool:
    """A first-time payee or a large amount: the agent must read the fraud warning with the customer."""
    known = Payee.select().where((Payee.customer == customer.id) & (Payee.account == payee_account)).exists()
    return not known or amount_fen >= st.policy["fraud_warning_fen"]


def check_payee(customer: Customer, payee_account: str, payee_name: str) -> tuple[str, str]:
    """The cleaned (account, name) of a transfer's payee; refuses a malformed, own or blocked account."""
    account = re.sub(r"\s+", "", str(payee_account or ""))
    if not _PAYEE_ACCOUNT_RE.match(account):
        raise errors.InvalidPayeeAccount()
    name = str(payee_name or "").strip()
    if not name or len(name) > 30:
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
) -> Receipt:
    """Record a transfer for the bank to execute; it stays cancellable until the bank has executed it."""

    def request(customer):
        return {
            "type": "transfer",
            "customer": customer.id,
            "payee": re.sub(r"\s+", "", str(payee_account or "")),
            "name": str(payee_name or "").strip(),
            "amount": _parse(amount),
        }

    def plan(customer, day):
        account, name = check_payee(customer, payee_account, payee_name)
        # The warning before the limits: a scam's amount must meet the warning, as on the touchscreen.
        if needs_fraud_warning(st, customer, account, _parse(amount)) and not fraud_warning_confirmed:
            raise errors.FraudWarningRequired()
        amount_fen, fee = _transfer_amount(st, customer, amount)
        details = {"payee_account": account, "payee_name": name}
        return _Plan(EntryType.TRANSFER, customer, amount_fen, fee, amount_fen + fee, 0, details)

    return _customer_operation(st, session, auth, txn, request, plan)


def validate_bill_reference(biller: Biller, reference: str) -> str:
    reference = re.sub(r"\s+", "", str(reference or ""))
    if not re.fullmatch(biller.ref_pattern, reference):
        hint = "Mobile numbers have 11 digits and start with 1." if biller.kind == "mobile" else ""
        raise errors.InvalidBillReference(biller=biller.name_en, hint=hint)
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
        raise errors.BillAmountRule(minimum=_yuan(biller.min_fen), maximum=_yuan(biller.max_fen))


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
        fee = st.policy["fees"].get("bill_payment", 0)
        debit = amount_fen + fee if funding == "account" else 0
        _check_debit_limits(st, customer, "bill_payment", amount_fen, debit)
        details = {"biller": biller.code, "ref": ref, "funding": funding}
        cash = amount_fen + fee if funding == "cash" else 0
        return _Plan(EntryType.BILL_PAYMENT, customer, amount_fen, fee, debit, cash, details)

    return _customer_operation(st, session, auth, txn, request, plan, needs_customer=funding == "account")


def balance_enquiry(st: Station, session: AgentSession, auth: CustomerAuth, txn: str) -> Balance:
    """The balance as of the bank's last snapshot, and what is left of the offline allowance (journaled)."""

    def request(customer):
        return {"type": "balance_enquiry", "customer": customer.id}

    def plan(customer, day):
        details = {"balance": customer.balance_fen, "offline_available": offline_available(st, customer)}
        if customer.balance_as_of:
            details["as_of"] = customer.balance_as_of.isoformat()
        return _Plan(EntryType.BALANCE_ENQUIRY, customer, 0, details=details)

    receipt = _customer_operation(st, session, auth, txn, request, plan)
    customer = Customer.get_by_id(auth.customer_id)
    return Balance(receipt, customer.balance_fen, customer.balance_as_of, offline_available(st, customer))


def cancel_transfer(st: Station, session: AgentSession, auth: CustomerAuth, transfer_txn: str, txn: str
                    ) -> Receipt:
    """The customer withdraws a transfer the bank has not executed yet."""

    def request(customer):
        return {"type": "transfer_cancel", "customer": customer.id, "ref": transfer_txn}

    def plan(customer, day):
        original = Operation.get_or_none((Operation.txn == transfer_txn) & (Operation.type == "transfer"))
        if original is None or original.customer_id != customer.id:
            raise errors.NoSuchReceipt()
        if original.status != "recorded":
            raise errors.NotCancellable()
        Operation.update(status="cancelled").where(Operation.txn == original.txn).execute()
        details = {"ref_seq": original.seq}
        return _Plan(EntryType.TRANSFER_CANCEL, customer, original.amount_fen, details=details, ref_txn=original.txn)

    return _customer_operation(st, session, auth, txn, request, plan)


def may_reverse(op: Operation) -> bool:
    """Whether ``op``'s type may be reversed and it still stands (``reverse`` also refuses another day's)."""
    return spec_of(op.type).reversible and op.status in LIVE_STATES


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
        if not spec_of(original.type).reversible:
            raise errors.NotReversible()
        if original.status == "reversed":
            raise errors.AlreadyReversed()
        if original.status not in LIVE_STATES:
            raise errors.NotReversible()
        if original.day_id != day.id:
            raise errors.ReversalTooLate()
        _check_drawer(day, -original.cash_fen)
        Operation.update(status="reversed").where(Operation.txn == original.txn).execute()
        details = {"ref_seq": original.seq, "reason": str(reason)[:200]}
        return _Plan(
            EntryType.REVERSAL,
            original.customer,
            original.amount_fen,
            cash_fen=-original.cash_fen,
            details=details,
            ref_txn=original.txn,
        )

    return _customer_operation(st, supervisor, None, txn, request, plan, needs_customer=False)


# -- the day and the drawer -------------------------------------------------------------------------------
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
    return cleaned, sum(int(d) * n for d, n in cleaned.items())


def open_day(st: Station, session: AgentSession, counts: dict) -> Receipt:
    """Open the business day with the counted cash float."""
    st.activate()
    with st.write():
        check_session(st, session)
        if current_day() is not None:
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
        entry = append_entry(st.signer, st.station_id, EntryType.DAY_OPEN, now, body)
    return _entry_receipt(entry, total, {"counts": cleaned})


@dataclass(frozen=True)
class DayClose:
    receipt: Receipt
    expected_fen: int
    counted_fen: int
    variance_fen: int


def close_day(st: Station, session: AgentSession, counts: dict) -> DayClose:
    """Close the day: the counted cash against what the drawer should hold; the variance is recorded."""
    st.activate()
    with st.write():
        check_session(st, session)
        day = _open_day_or_refuse()
        cleaned, counted = count_total(counts)
        now = st.now()
        variance = counted - day.cash_fen
        BusinessDay.update(
            closed_at=now, closed_by=session.agent_id, counted_fen=counted, variance_fen=variance,
            close_counts=cleaned,
        ).where(BusinessDay.id == day.id).execute()
        operations = Operation.select().where(Operation.day == day.id).count()
        body = {
            "agent": session.agent_id,
            "amount": counted,
            "expected": day.cash_fen,
            "variance": variance,
            "counts": cleaned,
            "operations": operations,
            "business_date": day.business_date,
        }
        entry = append_entry(st.signer, st.station_id, EntryType.DAY_CLOSE, now, body)
    details = {"expected": day.cash_fen, "variance": variance, "counts": cleaned}
    return DayClose(_entry_receipt(entry, counted, details), day.cash_fen, counted, variance)


def drawer_cash() -> int | None:
    day = current_day()
    return None if day is None else day.cash_fen
