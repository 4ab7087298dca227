"""The posting rules: how one verified entry of a station becomes an outcome and the legs it posts.

A station's signature proves which device wrote an entry, not that the bank agrees: every entry is checked against
the bank's own rules here, in code, before any posting, and one that fails is settled as ``rejected`` with a reason
in the signed ack (never posted, never a crashed batch; the station marks it rejected and never sends it again).
The rules are the station's own offline policy as the bank sent it down (``sync_server.policy.station_policy``,
the same ``merged_policy`` the station applies) and the server policy (commission).

The order of the checks, the first failing one giving the reason:
1. the registry: a type it knows, in the shape it declares (``unknown_type``, ``invalid_amount`` for an amount
   that is not positive integer fen in range, ``malformed_entry``: ``entry_problem``), and a ``ts`` that is a UTC
   time (``malformed_entry``);
2. the txn of a customer operation is new bank-wide, this batch included (``duplicate_txn``: ``seen_txn``);
3. what the entry names exists and may be used: the customer account (``unknown_account``, never another kind of
   account: ``Applier._customer``), the biller (``unknown_biller``), the payee (``payee_blocked``), an open
   account (``account_closed``); a transfer the fraud warning was due for (the station's rule,
   ``station.protocol.scams``, with the bank's known payees) says it was gone past (``fraud_warning_skipped``),
   and one that went past it at ``fraud_supervisor_fen`` or more names a supervisor of this station
   (``supervisor_approval_missing``): ``Applier._fraud_warning``;
4. a debit (withdrawal, transfer, bill paid from the account) is for a home customer of this station and
   amount + fee fits this station's hold for the customer, the offline allowance the bank authorized
   (``not_authorized``); never settled from the available balance. An entry that names a real-time
   authorization (``auth``) is checked against it instead (``Applier._claim``): it must be this station's grant,
   not used yet, of the entry's type, txn, account, amount and fee (and payee, biller, transfer cancelled or
   wealth product) (``not_authorized``). A live grant settles the debit from its own hold (neither the station's
   offline hold nor its unsynced exposure is touched, nor the daily limit checked again: the grant counted it); a
   grant that expired before the entry came settles it only when amount + fee fits what the bank would grant now,
   the available balance plus this station's offline hold (``authorization_expired``). Either way the grant is
   consumed (``used``), and the checks 5, 7 and 8 below still apply; an entry rejected after naming its own live
   grant consumes it too (``_end_grant``: the operation is over, so its hold goes at once);
5. ``over_transaction_limit``: the amount exceeds ``limits[type].per_txn``;
6. ``over_daily_limit``: the customer's settled amounts of the type at this station on the entry's local date
   (``ts`` in the policy's ``timezone``), less those reversed or cancelled, plus this one exceed
   ``limits[type].daily`` (as the station counts them: its own operations);
7. ``amount_rule``: a withdrawal below ``min`` or not a multiple of ``multiple``, a deposit below ``min``;
   ``id_required``: a withdrawal above the policy's ``id_check_fen``, or with ``proxy`` true, without the ID card
   fields ``id_hash`` and ``id_last4`` (``malformed_entry`` when only one is there or either is ill-formed:
   ``station.protocol.id_card.identity_problem``);
8. ``wrong_fee``: the fee (absent: 0) differs from ``fees[type]``;
9. ``over_exposure_limit``: a debit taking the station's settled debits since its last complete sync (those
   settled under a real-time authorization do not count) past
   ``max_unsynced_fen`` or ``max_unsynced_count``; ``over_deposit_limit``: a deposit taking the station's
   deposits of the local day past ``deposit_station_daily_fen``.
A rejected debit that is well-formed also becomes a reconciliation item ``rejected_offline_debit`` (the agent may
already have paid the cash out; ``recon_item``), except a wealth-product order, whose refusal takes nothing and pays
nothing out. A wealth-product order (``wmp_order``) has its own checks before check 4 (``_wmp_order``:
``station.protocol.wmp``). A customer's wrong-PIN lockout applies at the bank only for a home
customer of the station (else ``not_authorized``). Commission (``Applier._commission``) is earned only on an
amount of at least ``commission_min_amount_fen[type]`` and at most ``commission_daily_cap_fen`` per agent per
station per local day; past them the operation still settles, without commission.
A day close whose variance (``amount - expected``, and the ``variance`` it states) is beyond the station policy's
``day_close_tolerance_fen`` needs a ``reason`` and a ``supervisor`` the station added as one (its ``agent_added``
entries): else ``variance_not_approved``, and nothing is posted.

Invariants and where they are enforced:
- only an entry the registry knows, in the shape it declares, is applied: ``entry_problem`` first, then the
  handler of its type in ``Applier.HANDLERS``, one per registered type (a test holds the table to the registry);
- a station debits a customer only within the hold the bank placed for it, its offline hold or its real-time
  authorization's (so a customer's **available** balance, balance minus every station's hold and every live
  authorization, never goes negative): ``Applier._authorize_debit``; the customer debit of a
  reversal or a cancellation must fit the available balance (``insufficient_funds``): ``Applier._inverse``;
- an operation is reversed at most once (``Applier.already_reversed``), a transfer cancelled at most once and only
  while the bank has not executed it (``Applier._transfer_cancel``);
- an entry's legs sum to zero and leave no balance or hold negative: ``Book.post`` and ``Book.set_hold``
  (``sync_server.book``); entries, postings, transfers and seen txns are inserted once: ``Applier.write`` raises
  ``LedgerError`` when the rows are already there (another worker applied the batch, or another station's batch
  took the txn meanwhile: the batch is run again and finds it a duplicate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from peewee import fn

from station.protocol.clock_corrections import correction_problem
from station.protocol.complaints import complaint_entry_problem
from station.protocol.entry_types import (
    MALFORMED_ENTRY,
    MAX_ID,
    Effect,
    EntryType,
    Kind,
    entry_problem,
    fits,
    printable,
    spec_of,
    types_where,
)
from station.protocol.id_card import identity_problem
from station.protocol.policy import DEFAULT_POLICY
from station.protocol.scams import matched_markers, warning_for
from station.protocol.times import parse_utc, utc_text
from station.protocol.tokens import rotation_key, unverified_payload
from station.protocol.wmp import (
    RISK_STATEMENT_UNREAD,
    SOLD_OUT,
    UNKNOWN_PRODUCT,
    amount_problem,
    risk_problem,
    window_problem,
)
from sync_server.book import (
    Book,
    LedgerError,
    insert_rows,
    present_values,
    reserved_quota,
    station_account,
    upsert_rows,
)
from sync_server.db import (
    Authorization,
    Biller,
    BlockedPayee,
    Complaint,
    ComplaintEvent,
    Customer,
    DailyTotal,
    Entry,
    KnownPayee,
    Posting,
    ReconItem,
    SeenTxn,
    Transfer,
    WmpProduct,
    arg,
    cached_execute,
    cached_rows,
    locked,
    one_of,
)
from sync_server.unlock_codes import code_issued

#: The types whose amounts the station's limits bound (per transaction, per customer per day).
LIMITED_TYPES = tuple(EntryType(op_type) for op_type in DEFAULT_POLICY["limits"])
#: The types that debit a customer's account (a bill only when paid from the account), from the registry.
DEBIT_TYPES = types_where(customer_effect=Effect.DEBIT)
#: A ``DailyTotal`` subject: the station's own total of a kind (account ids are never empty).
STATION_TOTAL = ""
REJECTED_OFFLINE_DEBIT = "rejected_offline_debit"


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


#: Not worked out yet (``Applier._local_date``: None is an answer).
_UNKNOWN = object()


def _legs(*items: tuple[str, int, str]) -> list[tuple[str, int, str]]:
    return [leg for leg in items if leg[1] != 0]


#: What a grant and the entry that names it must agree on, besides the type: (grant column, payload field, the
#: payload's value when absent).
_GRANT_FIELDS = (("txn", "txn", None), ("account_id", "account", None), ("amount_fen", "amount", 0),
                 ("fee_fen", "fee", 0), ("payee_account", "payee_account", None), ("biller", "biller", None),
                 ("ref_txn", "ref_txn", None), ("product", "product", None))


def _grant_matches(grant: Authorization, p: dict) -> bool:
    """Whether the entry is the operation the grant was given for: its type, txn, account, amount, fee, payee (a
    transfer), biller (a bill, paid from the account), transfer cancelled or product (a wealth-product order)."""
    if grant.kind != p["type"] or (p["type"] == EntryType.BILL_PAYMENT and p.get("funding") != "account"):
        return False
    return all(getattr(grant, column) == p.get(field, absent) for column, field, absent in _GRANT_FIELDS
               if column in ("txn", "account_id", "amount_fen", "fee_fen") or getattr(grant, column) is not None)


class Applier:
    """Turns one station's verified entries into outcomes and postings (in memory, then one bulk write)."""

    def __init__(self, book: Book, policy: dict, station_policy: dict, home_ids: set[str],
                 exposure: tuple[int, int]):
        """``policy``: the server policy; ``station_policy``: the station's, as it applies it; ``home_ids``: the
        accounts this station is home to; ``exposure``: (fen, count) of the offline debits the bank settled for
        the station since its last complete sync (``Station.unsynced_debit_fen``, ``unsynced_debit_count``); the
        batch's own settled debits are added to it (``exposure_fen``, ``exposure_count``)."""
        self.book = book
        self.policy = policy
        self.station_policy = station_policy
        self.home_ids = home_ids
        self.timezone = ZoneInfo(station_policy["timezone"])
        self.station_id = book.station_id
        self.recon_rows: list[dict] = []
        self.seen_rows: list[dict] = []
        self._seen: set[str] = set()
        self._totals: dict[tuple[str, str, str], int] = {}
        self._changed_totals: set[tuple[str, str, str]] = set()
        self._local_dates: dict[str, str | None] = {}
        #: The local days whose every running total is in ``_totals`` (``load_daily_totals``): absent means 0.
        self._loaded_dates: set[str] = set()
        self.exposure_fen, self.exposure_count = exposure
        self.entry_rows: list[dict] = []
        self.posting_rows: list[dict] = []
        self.transfer_rows: list[dict] = []
        #: The 12315 complaints this batch acknowledged (``_complaint``), written with the entries.
        self.complaint_rows: list[dict] = []
        self.by_txn: dict[str, tuple[dict, Outcome]] = {}
        self.rejected: dict[int, str] = {}
        self._billers: dict[str, bool] = {}
        self._blocked: dict[str, bool] = {}
        self._known_payees: dict[tuple[str, str], bool] = {}
        #: The station's supervisors (``supervisors``: None until an entry asks; this batch's added to them).
        self._supervisors: set[str] | None = None
        #: (kind, extra) -> this station's account id, once the book holds it (``acct``).
        self._own_accounts: dict[tuple[str, str | None], str] = {}
        #: The txns this batch has reversed (its rows are written only at the end).
        self._reversed: set[str] = set()
        #: This station's authorizations the batch's entries name (``load_authorizations``), and those consumed:
        #: auth_id -> the seq of the entry that used it.
        self.authorizations: dict[str, Authorization] = {}
        self.used_authorizations: dict[str, int] = {}
        #: Wealth-management products the batch's orders name (``wmp_product``: None for an unknown code), and what
        #: this batch's settled orders took off each one's quota (written by ``write``).
        self._products: dict[str, WmpProduct | None] = {}
        self.wmp_sold: dict[str, int] = {}
        #: code -> (auth_id -> amount) of the product's live real-time grants, at any station, read with the
        #: product's row lock (``load_products``): what they hold of its quota until their entries arrive.
        self._product_grants: dict[str, dict[str, int]] = {}

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

    def payee_known(self, account_id: str, payee_account) -> bool:
        """Whether the bank lists ``payee_account`` as a known payee of the customer (looked up once per batch)."""
        key = (account_id, payee_account)
        if key not in self._known_payees:
            self._known_payees[key] = KnownPayee.select().where(
                (KnownPayee.account_id == account_id) & (KnownPayee.payee_account == payee_account)).exists()
        return self._known_payees[key]

    def supervisors(self) -> set[str]:
        """The agent ids this station added as supervisors (``agent_added`` entries the bank acknowledged, and
        those earlier in this batch: ``_agent_added``), read once per batch."""
        if self._supervisors is None:
            rows = Entry.select(Entry.token).where((Entry.station_id == self.station_id)
                                                   & (Entry.type == EntryType.AGENT_ADDED)
                                                   & (Entry.outcome == "acknowledged")).tuples()
            self._supervisors = {payload["agent"] for (token,) in rows
                                 if (payload := unverified_payload(token)).get("role") == "supervisor"}
        return self._supervisors

    def acct(self, kind: str, extra: str | None = None) -> str:
        """This station's account of ``kind`` (created on first use)."""
        account_id = self._own_accounts.get((kind, extra))
        if account_id is None:
            account_id, _ = station_account(kind, self.station_id, extra)
            self.book.ensure_account(account_id, kind)
            self._own_accounts[(kind, extra)] = account_id
        return account_id

    def apply(self, seq: int, token: str, payload: dict, form_problem: str | None = None) -> Outcome:
        """Decide one entry's outcome and postings (in memory; ``write`` stores them).

        ``form_problem``: the envelope found the signed payload not in canonical form (``OpenedEntry``).
        """
        # Signed by the station's key, yet not an entry the registry knows in that shape: a tampered device or a
        # newer station. Rejected with the reason in the signed ack, never posted, never a crashed batch.
        problem = MALFORMED_ENTRY if form_problem else entry_problem(payload)
        if problem is None and self._local_date(payload) is None:
            problem = MALFORMED_ENTRY
        duplicate = problem is None and self._duplicate(payload)
        if problem:
            outcome = Outcome("rejected", problem)
        elif duplicate:
            outcome = Outcome("rejected", "duplicate_txn")
        else:
            # A known type (``entry_problem``): its text finds its handler (EntryType is a StrEnum, hashed as its text).
            outcome = self.HANDLERS[payload["type"]](self, seq, payload)
            if outcome.outcome == "settled" and payload["type"] in LIMITED_TYPES:
                self._count(payload, 1)
        # A refused wealth-product order is the bank's ordinary answer (nothing was paid out, nothing is taken):
        # no reconciliation item.
        if (problem is None and outcome.outcome == "rejected" and self._debits_customer(payload)
                and payload["type"] != EntryType.WMP_ORDER):
            self.recon_rows.append(dict(
                station_id=self.station_id, seq=seq, kind=REJECTED_OFFLINE_DEBIT, account_id=payload.get("account"),
                amount_fen=payload["amount"] + payload.get("fee", 0), reason=outcome.reason, created_at=self.book.now))
        if outcome.outcome != "rejected" and outcome.legs:
            self.book.post(outcome.legs)
            for leg, (account_id, amount, memo) in enumerate(outcome.legs):
                self.posting_rows.append(dict(station_id=self.station_id, seq=seq, leg=leg, account_id=account_id,
                                              amount_fen=amount, memo=memo))
        if outcome.outcome == "rejected":
            self.rejected[seq] = outcome.reason
            if problem is None and not duplicate and "auth" in payload:
                self._end_grant(seq, payload)
        # Only a well-formed entry's txn is stored and may be referenced by a later reversal or cancellation; a
        # duplicate's is not (the txn stays the first entry's).
        txn = payload.get("txn") if problem is None and not duplicate else None
        self.entry_rows.append(dict(station_id=self.station_id, seq=seq,
                                    type=payload["type"] if problem is None else _stored_type(payload.get("type")),
                                    txn=txn,
                                    token=token, received_at=self.book.now, outcome=outcome.outcome,
                                    reason=outcome.reason))
        if txn:
            self.by_txn[txn] = (payload, outcome)
        return outcome

    # -- the bank's own rules ---------------------------------------------------------------------------------
    def _local_date(self, payload: dict) -> str | None:
        """The local date (policy timezone) of the entry's ``ts``; None when ``ts`` is not a UTC time. Worked out
        once per ``ts`` (every limit and total of an entry asks)."""
        ts = payload["ts"]
        if not isinstance(ts, str):
            return None
        local_date = self._local_dates.get(ts, _UNKNOWN)
        if local_date is _UNKNOWN:
            try:
                local_date = parse_utc(ts).astimezone(self.timezone).date().isoformat()
            except (ValueError, OverflowError):
                local_date = None
            self._local_dates[ts] = local_date
        return local_date

    def load_seen_txns(self, payloads: list[dict]) -> None:
        """Read once which txns of the batch's customer operations the bank has already recorded (any station)."""
        txns = sorted({p["txn"] for p in payloads if isinstance(p, dict) and isinstance(p.get("txn"), str)
                       and printable(p["txn"]) and len(p["txn"]) <= MAX_ID})
        self._seen.update(present_values(SeenTxn.txn, txns))

    def load_authorizations(self, payloads: list[dict]) -> None:
        """Read once the station's authorizations that the batch's entries name (another station's are not read:
        to this station they do not exist)."""
        # Most entries name none: ``fits`` is asked only of those that do (None is no id).
        auth_ids = sorted({auth for p in payloads
                           if isinstance(p, dict) and (auth := p.get("auth")) is not None and fits(Kind.ID, auth)})
        if auth_ids:  # most batches name none: no statement
            self.authorizations.update({row.auth_id: row for row in cached_rows(
                "station authorizations", lambda: Authorization.select().where(
                    (Authorization.station_id == arg(0)) & one_of(Authorization.auth_id, 1)),
                self.station_id, auth_ids)})

    def _claim(self, p: dict) -> tuple[str | None, Authorization | None]:
        """(refusal, grant) for an entry that names an authorization: ``not_authorized`` unless the grant is this
        station's, unused, and for exactly this operation. The caller consumes it (``_consume``) once it settles."""
        row = self.authorizations.get(p["auth"])
        if (row is None or row.status not in ("active", "expired") or row.auth_id in self.used_authorizations
                or not _grant_matches(row, p)):
            return "not_authorized", None
        return None, row

    def _end_grant(self, seq: int, p: dict) -> None:
        """A rejected entry that names its own live grant (this station's, unused, for exactly this operation) ends
        it: the operation the grant was given for is over, so its hold goes now rather than at its expiry. A grant
        the entry does not match is left alone (it may be another operation's), and an expired one, which holds
        nothing, stays ``expired``."""
        refusal, row = self._claim(p)
        if refusal is None and self._live(row):
            self._consume(seq, row)

    def _live(self, row: Authorization) -> bool:
        """Whether the grant still holds its money at the book's time."""
        return row.status == "active" and row.expires_at > self.book.now

    def _consume(self, seq: int, row: Authorization) -> None:
        """The grant is used by entry ``seq``: its hold is gone with it (written by ``write``)."""
        self.used_authorizations[row.auth_id] = seq
        self.book.release_authorization(row.auth_id)

    def _duplicate(self, payload: dict) -> bool:
        """Whether a customer operation's txn was already recorded bank-wide (or earlier in this batch)."""
        spec = spec_of(payload["type"])
        if not spec.customer_operation:
            return False
        txn = payload["txn"]
        if txn in self._seen:
            return True
        self._seen.add(txn)
        self.seen_rows.append(dict(txn=txn, station_id=self.station_id, seq=payload["seq"]))
        return False

    @staticmethod
    def _debits_customer(payload: dict) -> bool:
        """Whether a well-formed entry takes money from a customer's account (cash may already be paid out)."""
        return payload["type"] in DEBIT_TYPES and (
            payload["type"] != EntryType.BILL_PAYMENT or payload.get("funding") == "account")

    def load_daily_totals(self, payloads: list[dict]) -> None:
        """Read at once this station's running totals of the local days the batch's entries fall on (other days,
        such as a reversed operation's, are read when asked: ``_total``)."""
        dates = sorted({date for p in payloads
                        if isinstance(p, dict) and "ts" in p and (date := self._local_date(p)) is not None})
        if dates:
            self._totals.update({(local_date, kind, subject): amount for local_date, kind, subject, amount in (
                cached_execute("daily totals", lambda: DailyTotal.select(
                    DailyTotal.local_date, DailyTotal.kind, DailyTotal.subject, DailyTotal.amount_fen).where(
                    (DailyTotal.station_id == arg(0)) & one_of(DailyTotal.local_date, 1)),
                    self.station_id, dates).fetchall())})
            self._loaded_dates.update(dates)

    def _total(self, key: tuple[str, str, str]) -> int:
        """A running total of this station's local day: (local_date, kind, subject), read once per batch."""
        if key not in self._totals:
            local_date, kind, subject = key
            if local_date in self._loaded_dates:
                self._totals[key] = 0  # every total of that day was read: there is none of this one yet
            else:
                self._totals[key] = DailyTotal.select(DailyTotal.amount_fen).where(
                    (DailyTotal.station_id == self.station_id) & (DailyTotal.local_date == local_date)
                    & (DailyTotal.kind == kind) & (DailyTotal.subject == subject)).scalar() or 0
        return self._totals[key]

    def _add_total(self, key: tuple[str, str, str], amount: int) -> None:
        self._totals[key] = self._total(key) + amount
        self._changed_totals.add(key)

    def _count(self, payload: dict, sign: int) -> None:
        """Count a settled operation in (or, ``sign`` -1, a reversed one out of) its day's totals."""
        local_date, entry_type = self._local_date(payload), payload["type"]
        if isinstance(payload.get("account"), str):
            self._add_total((local_date, entry_type, payload["account"]), sign * payload["amount"])
        if entry_type == EntryType.DEPOSIT:
            self._add_total((local_date, entry_type, STATION_TOTAL), sign * payload["amount"])

    def _limits(self, op_type: str, p: dict, fee: int | None, *, daily: bool = True) -> str | None:
        """Checks 5 to 8 (per transaction, daily unless ``daily`` is false, amount rule and a withdrawal's ID card,
        fee) of an operation; the reason or None."""
        limits = self.station_policy["limits"][op_type]
        amount = p["amount"]
        if amount > limits["per_txn"]:
            return "over_transaction_limit"
        if daily and isinstance(p.get("account"), str):
            used = self._total((self._local_date(p), op_type, p["account"]))
            if used + amount > limits["daily"]:
                return "over_daily_limit"
        if amount < limits.get("min", 0) or amount % limits.get("multiple", 1):
            return "amount_rule"
        if op_type == EntryType.WITHDRAWAL and (problem := identity_problem(self.station_policy, p)):
            return problem
        if fee is not None and fee != int(self.station_policy["fees"].get(op_type, 0)):
            return "wrong_fee"
        return None

    def _authorize_debit(self, account_id: str, op_type: str, p: dict) -> str | None:
        """Checks 4 to 9 of a customer debit; when all pass, the station's hold is consumed. The reason or None."""
        amount, fee = p["amount"], p.get("fee", 0)
        if "auth" in p:
            return self._authorized_debit(account_id, op_type, p)
        if account_id not in self.home_ids or amount + fee > self.book.hold(account_id):
            return "not_authorized"
        refusal = self._limits(op_type, p, fee)
        if refusal:
            return refusal
        if (self.exposure_fen + amount + fee > self.station_policy["max_unsynced_fen"]
                or self.exposure_count + 1 > self.station_policy["max_unsynced_count"]):
            return "over_exposure_limit"
        self.book.set_hold(account_id, self.book.hold(account_id) - amount - fee)
        self.exposure_fen += amount + fee
        self.exposure_count += 1
        return None

    def _authorized_debit(self, account_id: str, op_type: str, p: dict) -> str | None:
        """Check 4 of a debit that names a real-time authorization, then 5, 7 and 8; when all pass, the grant is
        consumed (an expired one's amount + fee taken as the bank would grant it now). The reason or None."""
        refusal, row = self._claim(p)
        if refusal:
            return refusal
        debit = p["amount"] + p.get("fee", 0)
        from_offline_hold = 0
        if not self._live(row):
            from_offline_hold = max(0, debit - max(0, self.book.available(account_id)))
            if from_offline_hold > self.book.hold(account_id):
                return "authorization_expired"
        refusal = self._limits(op_type, p, p.get("fee", 0), daily=False)
        if refusal:
            return refusal
        if from_offline_hold:
            self.book.set_hold(account_id, self.book.hold(account_id) - from_offline_hold)
        self._consume(p["seq"], row)
        return None

    def _authorized_entry(self, p: dict) -> tuple[str | None, Authorization | None]:
        """(refusal, grant) of an entry without money of its own (a balance enquiry, a transfer cancellation):
        no ``auth``, nothing to check; else the grant it names (consumed by the caller once it settles)."""
        if "auth" not in p:
            return None, None
        return self._claim(p)

    # -- helpers --------------------------------------------------------------------------------------------
    def _customer(self, payload: dict) -> str | None:
        """The customer account an entry names; never another kind of account, whatever a payload claims."""
        account = self.book.accounts.get(payload.get("account"))
        return account.account_id if account is not None and account.kind == "customer" else None

    def _commission(self, entry_type: str, p: dict) -> list[tuple[str, int, str]]:
        """The agent's commission legs for a settling operation: none on an amount below the type's minimum (or
        zero), and only up to the agent's daily cap at this station."""
        amount = p["amount"]
        if amount <= 0 or amount < int(self.policy["commission_min_amount_fen"].get(entry_type, 0)):
            return []
        key = (self._local_date(p), "commission", p["agent"])
        fen = min(int(self.policy["commission"].get(entry_type, 0)),
                  int(self.policy["commission_daily_cap_fen"]) - self._total(key))
        if fen <= 0:
            return []
        self._add_total(key, fen)
        return [(self.acct("commission_expense"), fen, "agent commission"),
                (self.acct("agent_payable"), -fen, "agent commission")]

    def _open_account(self, account_id: str) -> str | None:
        """``account_closed`` for a closed customer account, else None."""
        customer = self.book.customers.get(account_id)
        return "account_closed" if customer is not None and customer.status == "closed" else None

    # -- entry types ------------------------------------------------------------------------------------------
    def _withdrawal(self, seq, p):
        account = self._customer(p)
        if account is None:
            return Outcome("rejected", "unknown_account")
        refusal = self._open_account(account) or self._authorize_debit(account, EntryType.WITHDRAWAL, p)
        if refusal:
            return Outcome("rejected", refusal)
        amount, fee = p["amount"], p.get("fee", 0)
        return Outcome("settled", legs=_legs(
            (account, amount + fee, "withdrawal"), (self.acct("station_cash"), -amount, "cash paid out"),
            (self.acct("fee_income"), -fee, "fee"), *self._commission("withdrawal", p)))

    def _deposit(self, seq, p):
        account = self._customer(p)
        if account is None:
            return Outcome("rejected", "unknown_account")
        refusal = self._open_account(account) or self._limits(EntryType.DEPOSIT, p, None)
        amount = p["amount"]
        limit = self.station_policy["deposit_station_daily_fen"]
        if refusal is None and self._total((self._local_date(p), EntryType.DEPOSIT, STATION_TOTAL)) + amount > limit:
            refusal = "over_deposit_limit"
        if refusal:
            return Outcome("rejected", refusal)
        return Outcome("settled", legs=_legs(
            (self.acct("station_cash"), amount, "cash taken in"), (account, -amount, "deposit"),
            *self._commission("deposit", p)))

    def _bill_payment(self, seq, p):
        if not self.biller_known(p.get("biller")):
            return Outcome("rejected", "unknown_biller")
        amount, fee = p["amount"], p.get("fee", 0)
        if p.get("funding") == "account":
            account = self._customer(p)
            if account is None:
                return Outcome("rejected", "unknown_account")
            refusal = self._open_account(account) or self._authorize_debit(account, EntryType.BILL_PAYMENT, p)
            source = account
        elif "auth" in p:
            # The bank authorizes bills paid from the account only: a cash bill naming a grant is not the one granted.
            refusal = "not_authorized"
            source = None
        else:
            # Paid in cash at the counter: the customer's money is not touched, the station's limits still apply.
            refusal = self._limits(EntryType.BILL_PAYMENT, p, fee)
            source = self.acct("station_cash")
        if refusal:
            return Outcome("rejected", refusal)
        biller = self.acct("biller_payable", p["biller"])
        return Outcome("settled", legs=_legs(
            (source, amount + fee, f"bill {p['biller']} {p.get('ref', '')}"), (biller, -amount, "bill payable"),
            (self.acct("fee_income"), -fee, "fee"), *self._commission("bill_payment", p)))

    def _transfer(self, seq, p):
        account = self._customer(p)
        if account is None:
            return Outcome("rejected", "unknown_account")
        if self.payee_blocked(p.get("payee_account")):
            return Outcome("rejected", "payee_blocked")
        refusal = (self._open_account(account) or self._fraud_warning(account, p)
                   or self._authorize_debit(account, EntryType.TRANSFER, p))
        if refusal:
            return Outcome("rejected", refusal)
        amount, fee = p["amount"], p.get("fee", 0)
        grant = self.authorizations.get(p.get("auth")) if "auth" in p else None
        if grant is not None and grant.execute_after:
            # Executed when the grant said (the time the customer was told it can be cancelled until): counted
            # from the grant, never later than counted from now.
            execute_after = grant.execute_after
        else:
            risky = amount >= int(self.policy["risky_transfer_fen"])
            delay = int(self.policy["risky_transfer_delay_seconds" if risky else "transfer_delay_seconds"])
            execute_after = utc_text(parse_utc(self.book.now) + timedelta(seconds=delay))
        self.transfer_rows.append(dict(station_id=self.station_id, seq=seq, txn=p["txn"], account_id=account,
                                       payee_account=p["payee_account"], payee_name=p.get("payee_name", ""),
                                       amount_fen=amount, fee_fen=fee, status="pending",
                                       execute_after=execute_after))
        return Outcome("settled", legs=_legs(
            (account, amount + fee, "transfer"), (self.acct("transfer_clearing"), -amount, "transfer to execute"),
            (self.acct("fee_income"), -fee, "fee"), *self._commission("transfer", p)))

    def _fraud_warning(self, account: str, p: dict) -> str | None:
        """The fraud warning re-checked (``station.protocol.scams``, the station's own rule): a transfer to a payee
        the bank does not list as the customer's, of at least ``fraud_warning_fen``, or to a payee name with a scam
        marker must say the warning was gone past (``fraud_warning_skipped``); one that went past a warning at
        ``fraud_supervisor_fen`` or more must name a supervisor of this station (``supervisor_approval_missing``)."""
        warning = warning_for(self.station_policy, known_payee=self.payee_known(account, p["payee_account"]),
                              amount_fen=p["amount"], payee_name=p["payee_name"])
        warned = p.get("warned") is True
        if warning and not warned:
            return "fraud_warning_skipped"
        if (warned and p["amount"] >= self.station_policy["fraud_supervisor_fen"]
                and p.get("approved_by") not in self.supervisors()):
            return "supervisor_approval_missing"
        return None

    def _transfer_stopped(self, seq, p):
        """A transfer the customer stopped at the fraud warning: recorded for the bank's anti-fraud team, no money
        moves. The customer must be the bank's and a home customer of this station (the only customers it holds and
        can serve: another's would be a forged report, ``not_authorized``), and every scam marker it claims must be
        in the payee's name (the list itself may have changed since: the bank's current one is not asked)."""
        if self._customer(p) is None:
            return Outcome("rejected", "unknown_account")
        if p["account"] not in self.home_ids:
            return Outcome("rejected", "not_authorized")
        if len(matched_markers(p["markers"], p["payee_name"])) != len(set(p["markers"])):
            return Outcome("rejected", MALFORMED_ENTRY)
        return Outcome("acknowledged")

    def _agent_added(self, seq, p):
        """A person added at the station: a supervisor may approve transfers past the fraud warning and a day close's
        variance from now on."""
        if p["role"] == "supervisor":
            self.supervisors().add(p["agent"])
        return Outcome("acknowledged")

    def _agent_unlocked(self, seq, p):
        """An agent's lock (or wait) after wrong PINs lifted: by a supervisor the station added, other than the
        agent (their PIN is checked at the station, never journaled), by a code the bank issued for this station and
        agent at that counter (``sync_server.unlock_codes``), or by the technician at the device (who holds it, and
        whom nothing sent to the bank can prove). Else ``unlock_not_authorized``."""
        by = p.get("by", "supervisor")
        if by == "supervisor":
            allowed = p.get("supervisor") in self.supervisors() and p["supervisor"] != p["agent"]
        elif by == "bank_code":
            allowed = "code_counter" in p and code_issued(self.station_id, p["agent"], p["code_counter"])
        else:
            allowed = True
        extra = {"supervisor": "supervisor", "bank_code": "code_counter"}
        stray = [name for kind, name in extra.items() if kind != by and name in p]
        if stray:
            return Outcome("rejected", MALFORMED_ENTRY)
        return Outcome("acknowledged") if allowed else Outcome("rejected", "unlock_not_authorized")

    def _original(self, ref_txn: str) -> tuple[dict, str | None, list[tuple[str, int, str]]]:
        """(payload, outcome, legs) of the entry with ``ref_txn`` at this station, from this batch or the database
        (an empty payload when there is none)."""
        if ref_txn in self.by_txn:
            payload, outcome = self.by_txn[ref_txn]
            return payload, outcome.outcome, outcome.legs
        entry = Entry.select().where((Entry.station_id == self.station_id) & (Entry.txn == ref_txn)).order_by(
            Entry.seq).first()
        if entry is None:
            return {}, None, []
        legs = [(row.account_id, row.amount_fen, row.memo) for row in Posting.select().where(
            (Posting.station_id == self.station_id) & (Posting.seq == entry.seq)).order_by(Posting.leg)]
        return unverified_payload(entry.token), entry.outcome, legs

    def _uncount(self, original: dict, legs) -> None:
        """An undone operation no longer counts in its day's totals, nor does the commission it earned."""
        self._count(original, -1)
        commission = sum(amount for account_id, amount, _ in legs
                         if self.book.accounts.get(account_id) is not None
                         and self.book.accounts[account_id].kind == "commission_expense")
        if commission:
            self._add_total((self._local_date(original), "commission", original["agent"]), -commission)

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
        refusal, grant = self._authorized_entry(p)
        if refusal:
            return Outcome("rejected", refusal)
        outcome = self._cancel_transfer(seq, p)
        if grant is not None and outcome.outcome == "settled":
            self._consume(seq, grant)
        return outcome

    def _cancel_transfer(self, seq, p):
        ref = p.get("ref_txn")
        original, original_outcome, legs = self._original(ref)
        if original.get("type") != "transfer":
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
        outcome = self._inverse(legs, "transfer cancelled")
        if outcome.outcome == "settled":
            self._uncount(original, legs)
        return outcome

    def _reversal(self, seq, p):
        ref = p.get("ref_txn")
        original, original_outcome, legs = self._original(ref)
        if not original:
            return Outcome("rejected", "unknown_original")
        spec = spec_of(original.get("type"))
        if spec is None or not spec.reversible:
            return Outcome("rejected", "not_reversible")
        if self.already_reversed(ref):
            return Outcome("rejected", "already_reversed")
        outcome = Outcome("settled") if original_outcome != "settled" or not legs else self._inverse(legs, "reversal")
        if outcome.outcome == "settled":
            self._reversed.add(ref)
            if original_outcome == "settled" and original["type"] in LIMITED_TYPES:
                self._uncount(original, legs)
        return outcome

    def load_products(self, payloads: list[dict]) -> None:
        """Read (and on PostgreSQL lock, in code order, so that two batches never wait for each other in a cycle)
        the wealth-management products the batch's orders name: two stations' batches never sell the same quota
        twice."""
        order = EntryType.WMP_ORDER  # looked up once, not once per entry
        codes = sorted({p["product"] for p in payloads if isinstance(p, dict) and p.get("type") == order
                        and fits(Kind.ID, p.get("product"))})
        self._products.update(dict.fromkeys(codes))
        if codes:  # most batches order none: no statement
            self._products.update({row.code: row for row in cached_rows("locked products", lambda: locked(
                WmpProduct.select().where(one_of(WmpProduct.code)).order_by(WmpProduct.code)), codes)})
        for code in codes:
            if self._products[code] is not None:
                self._product_grants[code] = reserved_quota(code, self.book.now)

    def wmp_product(self, code: str) -> WmpProduct | None:
        """The product ``code`` (``load_products`` read it; read here when the batch did not name it up front)."""
        if code not in self._products:
            self.load_products([{"type": EntryType.WMP_ORDER, "product": code}])
        return self._products[code]

    def _wmp_order(self, seq, p):
        """A wealth-management order (``station.protocol.wmp``): the customer's, with the risk statement read
        (``risk_statement_unread``), a product of the catalogue (``unknown_product``) open on the entry's local date
        and on the day it arrives (``window_closed``), the customer's current risk level at least the product's
        (``risk_level_too_low``), the product's minimum and step (``amount_rule``), its quota left
        (``sold_out``), then checks 4 to 9 as for every debit. Settled: the customer's account pays the product's
        subscription account at this station (``wmp_subscriptions:<code>:<station>``, an external clearing account:
        the money leaves the deposit ledger for the product), and the quota shrinks by the amount."""
        account = self._customer(p)
        if account is None:
            return Outcome("rejected", "unknown_account")
        if p["warned"] is not True:
            return Outcome("rejected", RISK_STATEMENT_UNREAD)
        product = self.wmp_product(p["product"])
        if product is None:
            return Outcome("rejected", UNKNOWN_PRODUCT)
        arrived = parse_utc(self.book.now).astimezone(self.timezone).date().isoformat()
        sold = self.wmp_sold.get(product.code, 0)
        # The grants used earlier in this batch are in ``sold`` already; this entry's own grant held its share.
        held = sum(amount for auth_id, amount in self._product_grants.get(product.code, {}).items()
                   if auth_id not in self.used_authorizations and auth_id != p.get("auth"))
        refusal = (self._open_account(account)
                   or (window_problem(product.opens_on, product.closes_on, self._local_date(p))
                       if product.status == "open" else "window_closed")
                   or window_problem(product.opens_on, product.closes_on, arrived)
                   or risk_problem(getattr(self.book.customers.get(account), "risk_level", None), product.risk_level)
                   or amount_problem(product.min_fen, product.step_fen, p["amount"])
                   or (SOLD_OUT if p["amount"] > product.quota_fen - sold - held else None)
                   or self._authorize_debit(account, EntryType.WMP_ORDER, p))
        if refusal:
            return Outcome("rejected", refusal)
        self.wmp_sold[product.code] = sold + p["amount"]
        subscriptions = f"wmp_subscriptions:{product.code}:{self.station_id}"
        self.book.ensure_account(subscriptions, "external_clearing")
        return Outcome("settled", legs=_legs((account, p["amount"], f"wmp order {product.code}"),
                                             (subscriptions, -p["amount"], "wmp subscription")))

    def _day_open(self, seq, p):
        cash = self.acct("station_cash")
        delta = int(p["amount"]) - self.book.balance(cash)
        return Outcome("acknowledged", legs=_legs((cash, delta, "float counted in"),
                                                  (self.acct("float_funding"), -delta, "float counted in")))

    def _day_close(self, seq, p):
        # The variance as the bank computes it from the count and the expected amount, not only as the station
        # states it: beyond the tolerance, a reason and a supervisor the station added (never a PIN) must be there.
        variance = max(abs(int(p["variance"])), abs(int(p["amount"]) - int(p["expected"])))
        if variance > int(self.station_policy["day_close_tolerance_fen"]) and not (
                str(p.get("reason", "")).strip() and p.get("supervisor") in self.supervisors()):
            return Outcome("rejected", "variance_not_approved")
        cash = self.acct("station_cash")
        delta = int(p["amount"]) - self.book.balance(cash)
        return Outcome("acknowledged", legs=_legs((cash, delta, "day close count"),
                                                  (self.acct("cash_variance"), -delta, "cash over/short")))

    def _balance_enquiry(self, seq, p):
        refusal, grant = self._authorized_entry(p)
        if refusal:
            return Outcome("rejected", refusal)
        if grant is not None:
            self._consume(seq, grant)
        return Outcome("settled")

    def _customer_pin_failed(self, seq, p):
        """Wrong PINs locked the customer at the station: lock them centrally too (a branch unlocks), but only a
        home customer of the station (no other station holds the customer's PIN verifier)."""
        if p["locked"] is not True:
            return Outcome("acknowledged")
        if p["account"] not in self.home_ids:
            return Outcome("rejected", "not_authorized")
        customer = self.book.customers.get(p["account"])
        if customer is not None and customer.status == "active":
            Customer.update(status="locked").where(Customer.account_id == customer.account_id).execute()
            customer.status = "locked"
        return Outcome("acknowledged")

    def _acknowledge(self, seq, p):
        """An entry the bank records without postings (the station's own housekeeping, a customer's voice)."""
        return Outcome("acknowledged")

    def _key_rotation(self, seq, p):
        """The station's next key: recorded by ``service`` from the envelope's key track, which followed it."""
        if rotation_key(p, "") is None:
            return Outcome("rejected", MALFORMED_ENTRY)
        return Outcome("acknowledged")

    def _clock_corrected(self, seq, p):
        """The technician accepted the station's clock as right after it ran ahead (``station.clock``): no postings,
        and nothing the bank can check taken on trust. ``behind_ms`` must be exactly ``floor`` − ``ts`` and beyond the
        clock tolerance, ``floor`` a UTC time in the journal's form (``correction_problem``), and the floor no
        earlier than the entry before it (the journal's last entry is a part of the floor): else
        ``malformed_entry``. Recon lists every correction acknowledged (``clock_corrected``)."""
        if correction_problem(p, self._previous_ts(seq)) is not None:
            return Outcome("rejected", MALFORMED_ENTRY)
        return Outcome("acknowledged")

    def _complaint(self, seq, p):
        """A 12315 complaint for the market regulator: no postings. The bank checks again what the station checked
        (``station.protocol.complaints.complaint_entry_problem``: consent ``true``, the phone's form, the category,
        one printable line of text within its limit) and that the complaint number is this entry's
        (``complaint_bad_number``); an acknowledged one becomes a ``complaint`` row, ``received``."""
        problem = complaint_entry_problem({**p, "seq": seq}, self.station_id)
        if problem is not None:
            return Outcome("rejected", problem)
        self.complaint_rows.append(dict(
            complaint_no=p["complaint_no"], station_id=self.station_id, seq=seq, entry_ts=p["ts"],
            received_at=self.book.now, agent=p["agent"], phone=p["phone"], business=p["business"],
            category=p["category"], details=p.get("details", ""), status="received", status_note="",
            answered_at=None, updated_at=self.book.now))
        return Outcome("acknowledged")

    def _previous_ts(self, seq: int):
        """The ``ts`` of this station's entry ``seq - 1`` (this batch's or stored), or None when the bank holds
        none or it cannot be read."""
        token = next((row["token"] for row in reversed(self.entry_rows) if row["seq"] == seq - 1), None)
        if token is None:
            token = Entry.select(Entry.token).where((Entry.station_id == self.station_id)
                                                    & (Entry.seq == seq - 1)).scalar()
        try:
            return unverified_payload(token).get("ts") if token else None
        except (AttributeError, IndexError, ValueError, RecursionError):
            return None

    #: The handler of each entry type: every registered type has one, and no other type is applied.
    HANDLERS = {
        EntryType.START: _acknowledge,
        EntryType.AGENT_ADDED: _agent_added,
        EntryType.AGENT_PIN_FAILED: _acknowledge,
        EntryType.AGENT_UNLOCKED: _agent_unlocked,
        EntryType.CUSTOMER_PIN_FAILED: _customer_pin_failed,
        EntryType.DAY_OPEN: _day_open,
        EntryType.DAY_CLOSE: _day_close,
        EntryType.WITHDRAWAL: _withdrawal,
        EntryType.DEPOSIT: _deposit,
        EntryType.TRANSFER: _transfer,
        EntryType.TRANSFER_CANCEL: _transfer_cancel,
        EntryType.TRANSFER_STOPPED: _transfer_stopped,
        EntryType.BILL_PAYMENT: _bill_payment,
        EntryType.BALANCE_ENQUIRY: _balance_enquiry,
        EntryType.REVERSAL: _reversal,
        EntryType.FEEDBACK: _acknowledge,
        EntryType.KEY_ROTATION: _key_rotation,
        EntryType.CLOCK_CORRECTED: _clock_corrected,
        EntryType.COMPLAINT_12315: _complaint,
        EntryType.WMP_ORDER: _wmp_order,
    }

    # -- writing ----------------------------------------------------------------------------------------------
    def write(self) -> None:
        """Bulk insert entries, postings, transfers, seen txns and recon items; then the changed daily totals,
        balances and holds."""
        # All new under the station's lock; a row already present (another station's txn recorded meanwhile, the
        # batch applied elsewhere) is an IntegrityError, and the batch runs again (``service.once_more_on_conflict``).
        for rows, model in ((self.entry_rows, Entry), (self.posting_rows, Posting), (self.transfer_rows, Transfer),
                            (self.seen_rows, SeenTxn), (self.recon_rows, ReconItem),
                            (self.complaint_rows, Complaint)):
            insert_rows(model, rows)
        if self.complaint_rows:
            ComplaintEvent.insert_many([dict(complaint_no=row["complaint_no"], at=row["received_at"],
                                             by=f"station {self.station_id}", status="received", note="",
                                             answered_at=None) for row in self.complaint_rows]).execute()
        upsert_rows(DailyTotal, [dict(station_id=self.station_id, local_date=local_date, kind=kind, subject=subject,
                                      amount_fen=self._totals[(local_date, kind, subject)])
                                 for local_date, kind, subject in sorted(self._changed_totals)],
                    update=["amount_fen"])
        self._changed_totals.clear()
        for auth_id, seq in sorted(self.used_authorizations.items()):
            used = Authorization.update(status="used", used_seq=seq).where(
                (Authorization.auth_id == auth_id) & (Authorization.station_id == self.station_id)
                & Authorization.status.in_(("active", "expired"))).execute()
            if used != 1:
                raise LedgerError(f"authorization {auth_id} was used meanwhile; the batch was applied elsewhere")
        for code, amount in sorted(self.wmp_sold.items()):
            taken = WmpProduct.update(quota_fen=WmpProduct.quota_fen - amount).where(
                (WmpProduct.code == code) & (WmpProduct.quota_fen >= amount)).execute()
            if taken != 1:
                raise LedgerError(f"product {code}: its quota was sold meanwhile; the batch is run again")
        self.wmp_sold.clear()
        self.book.flush()
