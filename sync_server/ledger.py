"""The central double-entry ledger: each applied journal entry becomes postings that sum to zero.

Amounts of postings are debit-positive. Invariants and where they are enforced:
- the legs of one entry sum to zero: ``Book.post`` refuses otherwise, before anything is written;
- a posting is never zero, a customer's balance and a hold are never negative: CHECK constraints (``db``)
  and ``Book`` before the write;
- a customer's **available** balance (balance minus every station's hold) never goes negative: a debit first
  consumes the hold of the station that recorded it (the offline allowance it was spent from), and what exceeds
  the hold must fit in the available balance, or the entry is rejected (``insufficient_funds``).

Accounts other than customers' are per station (``cash:ST-0001``, ``fees:ST-0001``, ``biller:CODE:ST-0001``),
so that ingest from different stations only ever contends on the customer accounts both touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from peewee import BigIntegerField, IntegerField, fn

from station.protocol.entry_types import MAX_ID, EntryType, entry_problem, printable, spec_of
from station.protocol.tokens import unverified_payload
from sync_server.db import (
    DEBIT_NORMAL,
    Account,
    Biller,
    BlockedPayee,
    Customer,
    Entry,
    Hold,
    HomeStation,
    KnownPayee,
    Posting,
    ServerSetting,
    Transfer,
    db_proxy,
    is_postgres,
)

DEFAULT_SERVER_POLICY: dict = {
    #: What each station a customer calls home may pay out offline: about one day's withdrawal cap.
    "offline_allowance_fen": 100_000,
    #: Agent commission per operation type (fen), paid to the station's agent.
    "commission": {"withdrawal": 100, "deposit": 50, "transfer": 100, "bill_payment": 50},
    "transfer_delay_seconds": 0,
    #: Transfers at or above this wait ``risky_transfer_delay_seconds`` before the bank executes them.
    "risky_transfer_fen": 500_000,
    "risky_transfer_delay_seconds": 3600,
    #: Overrides of the station's own policy, sent down in every downlink (see station/policy.py).
    "station": {},
}


class LedgerError(RuntimeError):
    """A posting set that would break an invariant: a bug, never a customer's fault."""


def server_policy() -> dict:
    """The server policy: stored overrides laid over ``DEFAULT_SERVER_POLICY``."""
    row = ServerSetting.get_or_none(ServerSetting.key == "policy")
    policy = {**DEFAULT_SERVER_POLICY, **(row.value if row else {})}
    policy["commission"] = {**DEFAULT_SERVER_POLICY["commission"], **policy.get("commission", {})}
    return policy


def station_account(kind: str, station_id: str, extra: str | None = None) -> tuple[str, str]:
    """(account id, kind) of a station's own ledger account of ``kind``."""
    prefix = {
        "station_cash": "cash", "float_funding": "float", "cash_variance": "variance", "agent_payable": "agent",
        "commission_expense": "commission", "fee_income": "fees", "transfer_clearing": "transfers",
        "external_clearing": "external", "biller_payable": "biller",
    }[kind]
    name = f"{prefix}:{extra}:{station_id}" if extra else f"{prefix}:{station_id}"
    return name, kind


@dataclass
class Outcome:
    outcome: str
    reason: str | None = None
    legs: list[tuple[str, int, str]] = field(default_factory=list)


class Book:
    """The accounts one batch touches, loaded (and on PostgreSQL row-locked) once, changed in memory, written once.

    Customer accounts are locked in account id order so two batches touching the same customers cannot deadlock.
    """

    def __init__(self, station_id: str, customer_ids: set[str], now: str):
        self.station_id = station_id
        self.now = now
        query = Account.select().where(Account.account_id.in_(sorted(customer_ids))).order_by(Account.account_id)
        if is_postgres():
            query = query.for_update()
        self.accounts = {a.account_id: a for a in query}
        self.customers = {c.account_id: c for c in Customer.select().where(Customer.account_id.in_(
            sorted(customer_ids)))}
        self.holds: dict[tuple[str, str], int] = {}
        for hold in Hold.select().where(Hold.account_id.in_(sorted(customer_ids))):
            self.holds[(hold.station_id, hold.account_id)] = hold.amount_fen
        self.changed_accounts: set[str] = set()
        self.changed_holds: set[tuple[str, str]] = set()

    # -- reading ------------------------------------------------------------------------------------------
    def balance(self, account_id: str) -> int:
        """The account's balance on its normal side."""
        return self.accounts[account_id].balance_fen

    def held(self, account_id: str) -> int:
        """All holds on a customer's account, at every station."""
        return sum(amount for (_, acct), amount in self.holds.items() if acct == account_id)

    def available(self, account_id: str) -> int:
        """Balance minus every hold: what may still be spent online or newly held."""
        return self.balance(account_id) - self.held(account_id)

    def hold(self, account_id: str, station_id: str | None = None) -> int:
        """The hold for this (or ``station_id``'s) offline allowance of the customer."""
        return self.holds.get((station_id or self.station_id, account_id), 0)

    # -- writing in memory --------------------------------------------------------------------------------
    def ensure_account(self, account_id: str, kind: str) -> None:
        """Create the account when missing, and load (and lock) it."""
        if account_id in self.accounts:
            return
        Account.insert(account_id=account_id, kind=kind, name=account_id).on_conflict(
            conflict_target=[Account.account_id], action="NOTHING").execute()
        self.load_account(account_id)

    def load_account(self, account_id: str) -> None:
        """Load (and on PostgreSQL lock) an existing account the batch did not name up front."""
        if account_id not in self.accounts:
            query = Account.select().where(Account.account_id == account_id)
            self.accounts[account_id] = (query.for_update() if is_postgres() else query).get()

    def set_hold(self, account_id: str, amount: int) -> None:
        """Set this station's hold on a customer (written by ``flush``)."""
        if amount < 0:
            raise LedgerError("a hold is never negative")
        key = (self.station_id, account_id)
        if self.holds.get(key, 0) != amount:
            self.holds[key] = amount
            self.changed_holds.add(key)

    def post(self, legs: list[tuple[str, int, str]]) -> None:
        """Apply legs ``(account_id, debit-positive fen, memo)`` to the balances; they must sum to zero."""
        if sum(amount for _, amount, _ in legs) != 0:
            raise LedgerError(f"postings do not sum to zero: {legs}")
        for account_id, amount, _ in legs:
            if amount == 0:
                raise LedgerError("a posting is never zero")
            account = self.accounts[account_id]
            account.balance_fen += amount if account.kind in DEBIT_NORMAL else -amount
            if account.kind == "customer" and account.balance_fen < 0:
                raise LedgerError(f"{account_id} would go below zero")
            self.changed_accounts.add(account_id)

    def flush(self) -> None:
        """Write the changed balances and holds."""
        for account_id in sorted(self.changed_accounts):
            account = self.accounts[account_id]
            Account.update(balance_fen=account.balance_fen).where(Account.account_id == account_id).execute()
        for station_id, account_id in sorted(self.changed_holds):
            amount = self.holds[(station_id, account_id)]
            Hold.insert(station_id=station_id, account_id=account_id, amount_fen=amount, updated_at=self.now
                        ).on_conflict(conflict_target=[Hold.station_id, Hold.account_id],
                                      update={Hold.amount_fen: amount, Hold.updated_at: self.now}).execute()
        self.changed_accounts.clear()
        self.changed_holds.clear()


def _stored_type(entry_type) -> str:
    """What ``Entry.type`` stores: the payload's type when it is short printable text, else ``malformed``."""
    if isinstance(entry_type, str) and 0 < len(entry_type) <= MAX_ID and printable(entry_type):
        return entry_type
    return "malformed"


def _legs(*items: tuple[str, int, str]) -> list[tuple[str, int, str]]:
    return [leg for leg in items if leg[1] != 0]


class Applier:
    """Turns one station's verified entries into outcomes and postings (in memory, then one bulk write)."""

    def __init__(self, book: Book, policy: dict):
        self.book = book
        self.policy = policy
        self.station_id = book.station_id
        self.entry_rows: list[dict] = []
        self.posting_rows: list[dict] = []
        self.transfer_rows: list[dict] = []
        self.by_txn: dict[str, tuple[dict, Outcome]] = {}
        self.rejected: dict[int, str] = {}
        self._billers: dict[str, bool] = {}
        self._blocked: dict[str, bool] = {}
        self._reversed: set[str] | None = None

    def already_reversed(self, ref_txn: str) -> bool:
        """Whether a settled reversal of ``ref_txn`` exists at this station (loaded once per batch)."""
        if self._reversed is None:
            self._reversed = {unverified_payload(token).get("ref_txn") for (token,) in Entry.select(Entry.token).where(
                (Entry.station_id == self.station_id) & (Entry.type == "reversal")
                & (Entry.outcome == "settled")).tuples()}
        return ref_txn in self._reversed

    def biller_known(self, code) -> bool:
        """Whether the biller exists (looked up once per batch)."""
        if code not in self._billers:
            self._billers[code] = isinstance(code, str) and Biller.get_or_none(Biller.code == code) is not None
        return self._billers[code]

    def payee_blocked(self, account) -> bool:
        """Whether transfers to ``account`` are blocked (looked up once per batch)."""
        if account not in self._blocked:
            self._blocked[account] = BlockedPayee.get_or_none(BlockedPayee.account == account) is not None
        return self._blocked[account]

    def acct(self, kind: str, extra: str | None = None) -> str:
        """This station's account of ``kind`` (created on first use)."""
        account_id, kind = station_account(kind, self.station_id, extra)
        self.book.ensure_account(account_id, kind)
        return account_id

    def apply(self, seq: int, token: str, payload: dict) -> Outcome:
        """Decide one entry's outcome and postings (in memory; ``write`` stores them)."""
        # Signed by the station's key, yet not an entry the registry knows in that shape: a tampered device or a
        # newer station. Rejected with the reason in the signed ack, never posted, never a crashed batch.
        problem = entry_problem(payload)
        if problem:
            outcome = Outcome("rejected", problem)
        else:
            outcome = self.HANDLERS[EntryType(payload["type"])](self, seq, payload)
        if outcome.outcome != "rejected" and outcome.legs:
            self.book.post(outcome.legs)
            for leg, (account_id, amount, memo) in enumerate(outcome.legs):
                self.posting_rows.append(dict(station_id=self.station_id, seq=seq, leg=leg, account_id=account_id,
                                              amount_fen=amount, memo=memo))
        if outcome.outcome == "rejected":
            self.rejected[seq] = outcome.reason
        # Only a well-formed entry's txn is stored and may be referenced by a later reversal or cancellation.
        txn = payload.get("txn") if problem is None else None
        self.entry_rows.append(dict(station_id=self.station_id, seq=seq, type=_stored_type(payload.get("type")),
                                    txn=txn,
                                    token=token, received_at=self.book.now, outcome=outcome.outcome,
                                    reason=outcome.reason))
        if txn:
            self.by_txn[txn] = (payload, outcome)
        return outcome

    # -- helpers --------------------------------------------------------------------------------------------
    def _customer(self, payload: dict) -> str | None:
        """The customer account an entry names; never another kind of account, whatever a payload claims."""
        account = self.book.accounts.get(payload.get("account"))
        return account.account_id if account is not None and account.kind == "customer" else None

    def _commission(self, entry_type: str) -> list[tuple[str, int, str]]:
        fen = int(self.policy["commission"].get(entry_type, 0))
        if fen <= 0:
            return []
        return [(self.acct("commission_expense"), fen, "agent commission"),
                (self.acct("agent_payable"), -fen, "agent commission")]

    def _debit_customer(self, account_id: str, amount: int, from_allowance: bool) -> str | None:
        """Take ``amount`` for a debit: the station's hold first, then the available balance; None or a reason."""
        customer = self.book.customers.get(account_id)
        if customer is not None and customer.status == "closed":
            return "account_closed"
        held = self.book.hold(account_id) if from_allowance else 0
        from_hold = min(held, amount)
        # Consuming the hold leaves the available balance as it was; only the rest must fit in it.
        if amount - from_hold > self.book.available(account_id):
            return "insufficient_funds"
        if from_hold:
            self.book.set_hold(account_id, held - from_hold)
        return None

    # -- entry types ------------------------------------------------------------------------------------------
    def _withdrawal(self, seq, p):
        account = self._customer(p)
        if account is None:
            return Outcome("rejected", "unknown_account")
        amount, fee = int(p["amount"]), int(p.get("fee", 0))
        refusal = self._debit_customer(account, amount + fee, True)
        if refusal:
            return Outcome("rejected", refusal)
        return Outcome("settled", legs=_legs(
            (account, amount + fee, "withdrawal"), (self.acct("station_cash"), -amount, "cash paid out"),
            (self.acct("fee_income"), -fee, "fee"), *self._commission("withdrawal")))

    def _deposit(self, seq, p):
        account = self._customer(p)
        if account is None:
            return Outcome("rejected", "unknown_account")
        if self.book.customers.get(account) is not None and self.book.customers[account].status == "closed":
            return Outcome("rejected", "account_closed")
        amount = int(p["amount"])
        return Outcome("settled", legs=_legs(
            (self.acct("station_cash"), amount, "cash taken in"), (account, -amount, "deposit"),
            *self._commission("deposit")))

    def _bill_payment(self, seq, p):
        if not self.biller_known(p.get("biller")):
            return Outcome("rejected", "unknown_biller")
        amount, fee = int(p["amount"]), int(p.get("fee", 0))
        biller = self.acct("biller_payable", p["biller"])
        if p.get("funding") == "account":
            account = self._customer(p)
            if account is None:
                return Outcome("rejected", "unknown_account")
            refusal = self._debit_customer(account, amount + fee, True)
            if refusal:
                return Outcome("rejected", refusal)
            source = account
        else:
            source = self.acct("station_cash")
        return Outcome("settled", legs=_legs(
            (source, amount + fee, f"bill {p['biller']} {p.get('ref', '')}"), (biller, -amount, "bill payable"),
            (self.acct("fee_income"), -fee, "fee"), *self._commission("bill_payment")))

    def _transfer(self, seq, p):
        account = self._customer(p)
        if account is None:
            return Outcome("rejected", "unknown_account")
        if self.payee_blocked(p.get("payee_account")):
            return Outcome("rejected", "payee_blocked")
        amount, fee = int(p["amount"]), int(p.get("fee", 0))
        refusal = self._debit_customer(account, amount + fee, True)
        if refusal:
            return Outcome("rejected", refusal)
        risky = amount >= int(self.policy["risky_transfer_fen"])
        delay = int(self.policy["risky_transfer_delay_seconds" if risky else "transfer_delay_seconds"])
        execute_after = (datetime.fromisoformat(self.book.now) + timedelta(seconds=delay)).isoformat(
            timespec="milliseconds")
        self.transfer_rows.append(dict(station_id=self.station_id, seq=seq, txn=p["txn"], account_id=account,
                                       payee_account=p["payee_account"], payee_name=p.get("payee_name", ""),
                                       amount_fen=amount, fee_fen=fee, status="pending",
                                       execute_after=execute_after))
        return Outcome("settled", legs=_legs(
            (account, amount + fee, "transfer"), (self.acct("transfer_clearing"), -amount, "transfer to execute"),
            (self.acct("fee_income"), -fee, "fee"), *self._commission("transfer")))

    def _original(self, ref_txn: str) -> tuple[str | None, str | None, list[tuple[str, int, str]]]:
        """(type, outcome, legs) of the entry with ``ref_txn`` at this station, from this batch or the database."""
        if ref_txn in self.by_txn:
            payload, outcome = self.by_txn[ref_txn]
            return payload.get("type"), outcome.outcome, outcome.legs
        entry = Entry.get_or_none((Entry.station_id == self.station_id) & (Entry.txn == ref_txn))
        if entry is None:
            return None, None, []
        legs = [(row.account_id, row.amount_fen, row.memo) for row in Posting.select().where(
            (Posting.station_id == self.station_id) & (Posting.seq == entry.seq)).order_by(Posting.leg)]
        return entry.type, entry.outcome, legs

    def _inverse(self, legs, memo) -> Outcome | None:
        """The inverse of ``legs``; a customer debit in it must fit the available balance."""
        inverse = [(account_id, -amount, memo) for account_id, amount, _ in legs]
        for account_id, amount, _ in inverse:
            self.book.load_account(account_id)
            if self.book.accounts[account_id].kind == "customer" and amount > 0:
                if amount > self.book.available(account_id):
                    return Outcome("rejected", "insufficient_funds")
        return Outcome("settled", legs=inverse)

    def _transfer_cancel(self, seq, p):
        ref = p.get("ref_txn")
        original_type, original_outcome, legs = self._original(ref)
        if original_type != "transfer":
            return Outcome("rejected", "unknown_original")
        if original_outcome != "settled":
            return Outcome("settled")
        pending = next((row for row in self.transfer_rows if row["txn"] == ref), None)
        if pending is not None:
            if pending["status"] != "pending":
                # A second cancellation in the same batch must not refund the transfer twice.
                return Outcome("rejected", "already_cancelled")
            pending["status"] = "cancelled"
        else:
            cancelled = Transfer.update(status="cancelled").where(
                (Transfer.station_id == self.station_id) & (Transfer.txn == ref) & (Transfer.status == "pending")
            ).execute()
            if cancelled != 1:
                status = Transfer.select(Transfer.status).where(
                    (Transfer.station_id == self.station_id) & (Transfer.txn == ref)).scalar()
                return Outcome("rejected", "already_cancelled" if status == "cancelled" else "already_executed")
        return self._inverse(legs, "transfer cancelled")

    def _reversal(self, seq, p):
        ref = p.get("ref_txn")
        original_type, original_outcome, legs = self._original(ref)
        if original_type is None:
            return Outcome("rejected", "unknown_original")
        spec = spec_of(original_type)
        if spec is None or not spec.reversible:
            return Outcome("rejected", "not_reversible")
        if self.already_reversed(ref):
            return Outcome("rejected", "already_reversed")
        outcome = Outcome("settled") if original_outcome != "settled" or not legs else self._inverse(legs, "reversal")
        if outcome.outcome == "settled":
            self._reversed.add(ref)
        return outcome

    def _day_open(self, seq, p):
        cash = self.acct("station_cash")
        delta = int(p["amount"]) - self.book.balance(cash)
        return Outcome("acknowledged", legs=_legs((cash, delta, "float counted in"),
                                                  (self.acct("float_funding"), -delta, "float counted in")))

    def _day_close(self, seq, p):
        cash = self.acct("station_cash")
        delta = int(p["amount"]) - self.book.balance(cash)
        return Outcome("acknowledged", legs=_legs((cash, delta, "day close count"),
                                                  (self.acct("cash_variance"), -delta, "cash over/short")))

    def _balance_enquiry(self, seq, p):
        return Outcome("settled")

    def _customer_pin_failed(self, seq, p):
        """Wrong PINs locked the customer at the station: lock them centrally too (a branch unlocks)."""
        customer = self.book.customers.get(p.get("account"))
        if p.get("locked") is True and customer is not None and customer.status == "active":
            Customer.update(status="locked").where(Customer.account_id == customer.account_id).execute()
            customer.status = "locked"
        return Outcome("acknowledged")

    def _acknowledge(self, seq, p):
        """An entry the bank records without postings (the station's own housekeeping, a customer's voice)."""
        return Outcome("acknowledged")

    #: The handler of each entry type: every registered type has one, and no other type is applied.
    HANDLERS = {
        EntryType.START: _acknowledge,
        EntryType.AGENT_ADDED: _acknowledge,
        EntryType.AGENT_PIN_FAILED: _acknowledge,
        EntryType.AGENT_UNLOCKED: _acknowledge,
        EntryType.CUSTOMER_PIN_FAILED: _customer_pin_failed,
        EntryType.DAY_OPEN: _day_open,
        EntryType.DAY_CLOSE: _day_close,
        EntryType.WITHDRAWAL: _withdrawal,
        EntryType.DEPOSIT: _deposit,
        EntryType.TRANSFER: _transfer,
        EntryType.TRANSFER_CANCEL: _transfer_cancel,
        EntryType.BILL_PAYMENT: _bill_payment,
        EntryType.BALANCE_ENQUIRY: _balance_enquiry,
        EntryType.REVERSAL: _reversal,
        EntryType.FEEDBACK: _acknowledge,
    }

    # -- writing ----------------------------------------------------------------------------------------------
    def write(self) -> None:
        """Bulk insert entries, postings and transfers; then the changed balances and holds."""
        for rows, model in ((self.entry_rows, Entry), (self.posting_rows, Posting), (self.transfer_rows, Transfer)):
            inserted = insert_new_rows(model, rows)
            if inserted != len(rows):
                raise LedgerError(f"{model.__name__}: rows already present; the batch was applied elsewhere")
        self.book.flush()


def insert_new_rows(model, rows: list[dict]) -> int:
    """``INSERT ... ON CONFLICT (<primary key>) DO NOTHING`` for many rows; returns how many were inserted.

    One prepared statement run with ``executemany`` (psycopg 3 pipelines it): peewee's query builder costs more
    than the database for thousands of rows. The columns are plain text and integers, passed as they are.
    """
    if not rows:
        return 0
    meta = model._meta
    columns = list(rows[0])
    target = ", ".join(f'"{meta.fields[name].column_name}"' for name in meta.primary_key.field_names)
    names = ", ".join(f'"{meta.fields[c].column_name}"' for c in columns)
    cursor = db_proxy.cursor()
    if is_postgres():
        # One statement for the whole batch: each column travels as one array.
        arrays = ", ".join(f"%s::{'bigint' if isinstance(meta.fields[c], BigIntegerField | IntegerField) else 'text'}[]"
                           for c in columns)
        cursor.execute(f'INSERT INTO "{meta.table_name}" ({names}) SELECT * FROM unnest({arrays}) '
                       f"ON CONFLICT ({target}) DO NOTHING", [[row[c] for row in rows] for c in columns],
                       binary=True)
        return cursor.rowcount
    placeholders = ", ".join([db_proxy.obj.param] * len(columns))
    cursor.executemany(f'INSERT INTO "{meta.table_name}" ({names}) VALUES ({placeholders}) '
                       f"ON CONFLICT ({target}) DO NOTHING", [tuple(row[c] for c in columns) for row in rows])
    return cursor.rowcount


def refresh_allowances(book: Book, policy: dict) -> dict[str, int]:
    """Set this station's hold for each customer it serves to the allowance it may pay out offline now.

    The new hold is the policy's allowance, capped by what the customer has available besides this hold.
    """
    target = int(policy["offline_allowance_fen"])
    allowances = {}
    homes = home_customer_ids(book.station_id)
    # A customer no longer served by this station: release what was held for it (the station zeroes it too).
    stale = (Hold.station_id == book.station_id) & (Hold.amount_fen > 0)
    if homes:
        stale &= Hold.account_id.not_in(sorted(homes))
    Hold.update(amount_fen=0, updated_at=book.now).where(stale).execute()
    for account_id, customer in book.customers.items():
        if account_id not in homes:
            continue
        others = book.held(account_id) - book.hold(account_id)
        allowance = 0 if customer.status != "active" else max(0, min(target, book.balance(account_id) - others))
        book.set_hold(account_id, allowance)
        allowances[account_id] = allowance
    return allowances


def home_customer_ids(station_id: str) -> set[str]:
    """Account ids of customers whose home stations include ``station_id``."""
    query = HomeStation.select(HomeStation.account_id).where(HomeStation.station_id == station_id)
    return {account_id for (account_id,) in query.tuples()}


def build_downlink(book: Book, allowances: dict[str, int] | None, policy: dict, acked_seq: int, server_time: str
                   ) -> dict:
    """What the station needs next: policy, its customers with allowances, billers, blocked and known payees.

    Without ``allowances`` (more batches follow) only the policy is sent: the station keeps its allowances, which
    stay consistent because the holds were consumed but not refreshed either.
    """
    if allowances is None:
        return {"v": 1, "acked_seq": acked_seq, "server_time": server_time, "policy": policy.get("station", {})}
    payees: dict[str, list] = {}
    if allowances:
        for row in KnownPayee.select().where(KnownPayee.account_id.in_(sorted(allowances))):
            payees.setdefault(row.account_id, []).append([row.payee_account, row.name])
    customers = []
    for account_id in sorted(allowances):
        customer = book.customers[account_id]
        customers.append({
            "account_id": account_id, "name": customer.name, "card_number": customer.card_number,
            "passbook_number": customer.passbook_number, "status": customer.status,
            "pin_verifier": customer.pin_verifier, "allowance_fen": allowances[account_id],
            "balance_fen": book.balance(account_id), "payees": sorted(payees.get(account_id, [])),
        })
    billers = [
        {"code": b.code, "kind": b.kind, "name_zh": b.name_zh, "name_en": b.name_en, "ref_pattern": b.ref_pattern,
         "ref_prefixes": b.ref_prefixes, "min_fen": b.min_fen, "max_fen": b.max_fen, "denominations": b.denominations}
        for b in Biller.select().order_by(Biller.code)
    ]
    return {
        "v": 1,
        "acked_seq": acked_seq,
        "server_time": server_time,
        "policy": policy.get("station", {}),
        "customers": customers,
        "billers": billers,
        "blocked_payees": [b.account for b in BlockedPayee.select().order_by(BlockedPayee.account)],
    }


def ledger_totals() -> dict[str, int]:
    """Sum of postings per account (debit-positive): for checks and reconciliation."""
    return dict(Posting.select(Posting.account_id, fn.SUM(Posting.amount_fen)).group_by(Posting.account_id).tuples())
