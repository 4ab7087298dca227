"""The posting rules: how one verified entry of a station becomes an outcome and the legs it posts.

A station's signature proves which device wrote an entry, not that the bank agrees: every entry is checked against
the bank's own rules here, and one that fails is settled as ``rejected`` with a reason in the signed ack (never
posted, never a crashed batch). Invariants and where they are enforced:
- only an entry the registry knows, in the shape it declares, is applied: ``entry_problem`` first, then the
  handler of its type in ``Applier.HANDLERS``, one per registered type (a test holds the table to the registry);
- an entry posts only to the customer account it names, never another kind of account: ``Applier._customer``;
- a customer's **available** balance (balance minus every station's hold) never goes negative: a debit first
  consumes the hold of the station that recorded it (the offline allowance it was spent from), and what exceeds
  the hold must fit in the available balance, or the entry is rejected (``insufficient_funds``):
  ``Applier._debit_customer``; the customer debit of a reversal or a cancellation must fit it too:
  ``Applier._inverse``;
- an operation is reversed at most once (``Applier.already_reversed``), a transfer cancelled at most once and only
  while the bank has not executed it (``Applier._transfer_cancel``);
- an entry's legs sum to zero and leave no balance or hold negative: ``Book.post`` and ``Book.set_hold``
  (``sync_server.book``); entries, postings and transfers are inserted once: ``Applier.write`` raises
  ``LedgerError`` when the rows are already there (another worker applied the batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from peewee import fn

from station.protocol.entry_types import MALFORMED_ENTRY, MAX_ID, EntryType, entry_problem, printable, spec_of
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import unverified_payload
from sync_server.book import Book, LedgerError, insert_new_rows, station_account
from sync_server.db import Biller, BlockedPayee, Customer, Entry, Posting, Transfer


@dataclass
class Outcome:
    outcome: str
    reason: str | None = None
    legs: list[tuple[str, int, str]] = field(default_factory=list)


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
        #: The txns this batch has reversed (its rows are written only at the end).
        self._reversed: set[str] = set()

    def already_reversed(self, ref_txn: str) -> bool:
        """Whether a settled reversal of ``ref_txn`` exists at this station, in this batch or in the database.

        A reversal settles only once its original is applied, so only the settled reversals after this station's
        first entry with ``ref_txn`` are read: a range of the primary key, its start found through the
        ``(station_id, txn)`` index. The reversal's ``ref_txn`` is inside its token only, hence the payloads read.
        """
        if ref_txn in self._reversed:
            return True
        first = Entry.select(fn.MIN(Entry.seq)).where(
            (Entry.station_id == self.station_id) & (Entry.txn == ref_txn)).scalar()
        if first is None:
            return False
        reversals = Entry.select(Entry.token).where(
            (Entry.station_id == self.station_id) & (Entry.seq > first) & (Entry.type == "reversal")
            & (Entry.outcome == "settled")).tuples()
        return any(unverified_payload(token).get("ref_txn") == ref_txn for (token,) in reversals)

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

    def apply(self, seq: int, token: str, payload: dict, form_problem: str | None = None) -> Outcome:
        """Decide one entry's outcome and postings (in memory; ``write`` stores them).

        ``form_problem``: the envelope found the signed payload not in canonical form (``OpenedEntry``).
        """
        # Signed by the station's key, yet not an entry the registry knows in that shape: a tampered device or a
        # newer station. Rejected with the reason in the signed ack, never posted, never a crashed batch.
        problem = MALFORMED_ENTRY if form_problem else entry_problem(payload)
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
        execute_after = utc_text(parse_utc(self.book.now) + timedelta(seconds=delay))
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
