"""The write path shared by every customer operation: replay check, checks in order, one transaction.

Each operation runs in one IMMEDIATE SQLite transaction that checks, writes its business rows and appends its
signed journal entry, so nothing is recorded without its entry and no entry without its rows. An operation is
a ``request`` (what the caller asked, hashed for idempotency) and a ``plan`` function that runs the checks of
its type and returns a ``Plan`` (what will be written); ``customer_operation`` runs them in the fixed order.

Idempotency: the caller passes a transaction UUID. The same UUID with the same request returns the original
receipt and records nothing; the same UUID with a different request is refused (``TxnConflict``).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

from station import errors
from station.agents import AgentSession, authorised_customer, check_session
from station.business_day import open_day_or_refuse
from station.context import Station, bound_station
from station.db import BusinessDay, Customer, Operation
from station.device_state import refuse_new_operations
from station.journal import append_entry
from station.protocol.entry_types import OperationState
from station.protocol.tokens import canonical_json
from station.receipts import Receipt, customer_masked, receipt_for


@dataclass
class Plan:
    """What an operation will write, once every check has passed."""

    op_type: str
    customer: Customer | None
    amount_fen: int
    fee_fen: int = 0
    debit_fen: int = 0
    cash_fen: int = 0
    details: dict = field(default_factory=dict)
    ref_txn: str | None = None
    #: The bank's real-time authorization it is recorded under (``station.online.usable_grant``), or None.
    auth_id: str | None = None


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


def _txn_recorded(st: Station, txn: str) -> tuple | None:
    return st.db.execute_sql("SELECT request_hash FROM operation WHERE txn = ?", (txn,)).fetchone()


def _replay(st: Station, txn: str, request: dict) -> Receipt | None:
    """The original receipt when ``txn`` was already recorded with the same request; refuse a different one."""
    row = _txn_recorded(st, txn)
    if row is None:
        return None
    if row[0] != _request_hash(request):
        raise errors.TxnConflict()
    return receipt_for(st, Operation.get_by_id(txn))


_INSERT_OPERATION = (
    "INSERT INTO operation (txn, seq, type, request_hash, customer_id, day_id, agent_id, business_date, amount_fen,"
    " fee_fen, debit_fen, cash_fen, status, ref_txn, details, created_at, auth_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _write(st: Station, session: AgentSession, txn: str, request: dict, plan: Plan, day: BusinessDay | None
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
    if plan.auth_id:
        body["auth"] = plan.auth_id
    entry = append_entry(st, plan.op_type, now, body, txn=txn)
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
            OperationState.RECORDED.value,
            plan.ref_txn,
            Operation.details.db_value(plan.details),
            Operation.created_at.db_value(now),
            plan.auth_id,
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
        status=OperationState.RECORDED,
        account_masked=customer_masked(plan.customer),
        recorded_at=now,
        details=dict(plan.details),
        cash_fen=plan.cash_fen,
    )


@bound_station
def customer_operation(st, session, auth, txn, request, plan_fn, *, needs_customer=True) -> Receipt:
    """Run one customer operation: replay check, checks in order (``plan_fn`` does 3 to 9), write.

    A replay still answers; otherwise a revoked station, or one whose clock is not set, records nothing
    (``station.device_state``)."""
    with st.write():
        check_session(st, session)
        txn = _check_txn_id(txn)
        customer = authorised_customer(st, session, auth) if (needs_customer or auth is not None) else None
        try:
            replay = _replay(st, txn, request(customer))
        except errors.InvalidAmount as exc:
            if _txn_recorded(st, txn):
                raise errors.TxnConflict() from exc
            raise
        if replay is not None:
            return replay
        refuse_new_operations(st)
        day = open_day_or_refuse(st)
        plan = plan_fn(customer, day)
        return _write(st, session, txn, request(customer), plan, day)
