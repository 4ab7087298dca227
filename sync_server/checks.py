"""The ledger's invariants, checked on a live database: every failure comes back as data, none stops the run.

Each check reads the database the models are bound to (``db_proxy``), writes nothing, and returns a list of
``CheckFailure``, like beancount's validation passes. Its work is set-based SQL; each query sees one consistent
state, so a check is safe while stations sync (ingest writes postings, balances and holds in one transaction).
What they verify is what the write path and the database already enforce (``sync_server.book``,
``sync_server.posting_rules``, ``sync_server.db``); they find what got around both: an insider's SQL, a restore
gone wrong, a bug.

- ``legs_balance``: the postings of each entry (same ``station_id``, ``seq``) sum to zero;
- ``balance_matches_postings``: each account's stored ``balance_fen`` is the sum of its postings, on the account's
  normal side (postings are debit-positive; ``DEBIT_NORMAL`` accounts grow with debits, the others with credits),
  and no posting names an account that does not exist;
- ``holds_within_balance``: no hold is negative, holds are on customer accounts, and a customer's holds at every
  station and live real-time authorizations (active and not expired: ``book.live_authorizations``) together do
  not exceed the balance;
- ``customer_balance_not_negative``: no customer's balance is below zero;
- ``unsynced_exposure_matches``: each station's stored unsynced exposure (``unsynced_debit_fen``, ``_count``, which
  ingest keeps as a running total) is what its postings make: the settled customer debits after its last complete
  sync (``synced_seq``) that no real-time authorization was used for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from peewee import JOIN, Case, Select, fn

from station.protocol.times import utc_text
from sync_server.book import live_authorizations
from sync_server.db import DEBIT_NORMAL, Account, Authorization, Entry, Hold, Posting, Station, db_proxy
from sync_server.posting_rules import DEBIT_TYPES


@dataclass(frozen=True)
class CheckFailure:
    """One broken invariant: which check, where (account, or station and seq), what, and the amounts in fen."""

    check: str
    message: str
    account_id: str | None = None
    station_id: str | None = None
    seq: int | None = None
    expected_fen: int | None = None
    actual_fen: int | None = None

    def __str__(self) -> str:
        where = self.account_id or f"{self.station_id} seq {self.seq}"
        return f"{self.check}: {where}: {self.message}"


def _in_order(failures: list[CheckFailure]) -> list[CheckFailure]:
    # Sorted here, not by ORDER BY: the same report on every backend whatever its collation.
    return sorted(failures, key=lambda f: (f.account_id or "", f.station_id or "", f.seq or 0, f.message))


def legs_balance() -> list[CheckFailure]:
    """Every entry whose postings do not sum to zero."""
    # PostgreSQL sums bigint as numeric (a Decimal in Python): cast back, fen are integers everywhere.
    total = fn.SUM(Posting.amount_fen).cast("BIGINT")
    query = (Posting.select(Posting.station_id, Posting.seq, total)
             .group_by(Posting.station_id, Posting.seq).having(total != 0))
    return _in_order([CheckFailure("legs_balance", f"postings sum to {amount} fen, not zero", station_id=station_id,
                                   seq=seq, expected_fen=0, actual_fen=amount)
                      for station_id, seq, amount in query.tuples()])


def balance_matches_postings() -> list[CheckFailure]:
    """Every account whose stored balance differs from its postings, and postings to accounts that do not exist."""
    totals = (Posting.select(Posting.account_id, fn.SUM(Posting.amount_fen).cast("BIGINT").alias("total"))
              .group_by(Posting.account_id).alias("totals"))
    debit_positive = fn.COALESCE(totals.c.total, 0)
    # The stored balance is on the account's normal side: a credit-normal account's postings count negated.
    from_postings = Case(None, [(Account.kind.in_(sorted(DEBIT_NORMAL)), debit_positive)], 0 - debit_positive)
    query = (Account.select(Account.account_id, Account.balance_fen, from_postings)
             .join(totals, JOIN.LEFT_OUTER, on=(Account.account_id == totals.c.account_id))
             .where(Account.balance_fen != from_postings))
    failures = [CheckFailure("balance_matches_postings",
                             f"stored balance {balance} fen, its postings make {expected} fen",
                             account_id=account_id, expected_fen=expected, actual_fen=balance)
                for account_id, balance, expected in query.tuples()]
    orphans = (Posting.select(Posting.account_id, fn.SUM(Posting.amount_fen).cast("BIGINT"))
               .where(Posting.account_id.not_in(Account.select(Account.account_id)))
               .group_by(Posting.account_id))
    failures += [CheckFailure("balance_matches_postings", f"postings of {total} fen to an account that does not "
                              "exist", account_id=account_id, actual_fen=total)
                 for account_id, total in orphans.tuples()]
    return _in_order(failures)


def holds_within_balance(now: datetime | None = None) -> list[CheckFailure]:
    """Negative holds, holds on accounts that are not customers', and customers held beyond their balance by their
    offline holds and the authorizations live at ``now`` (default: the current time)."""
    negative = Hold.select(Hold.account_id, Hold.station_id, Hold.amount_fen).where(Hold.amount_fen < 0)
    failures = [CheckFailure("holds_within_balance", f"hold of {amount} fen at {station_id} is negative",
                             account_id=account_id, station_id=station_id, expected_fen=0, actual_fen=amount)
                for account_id, station_id, amount in negative.tuples()]
    live = live_authorizations(utc_text(now or datetime.now(UTC)))
    holds = (Hold.select(Hold.account_id, Hold.amount_fen.alias("amount_fen"))
             .union_all(live.select(Authorization.account_id, Authorization.hold_fen.alias("amount_fen")))
             .alias("holds"))
    held = fn.SUM(holds.c.amount_fen).cast("BIGINT")
    query = (Select([holds], [holds.c.account_id, held, Account.kind, Account.balance_fen])
             .join(Account, JOIN.LEFT_OUTER, on=(holds.c.account_id == Account.account_id))
             .group_by(holds.c.account_id, Account.kind, Account.balance_fen)
             .having(Account.kind.is_null() | (Account.kind != "customer") | (held > Account.balance_fen))
             .bind(db_proxy))
    for account_id, total, kind, balance in query.tuples():
        if kind == "customer":
            failures.append(CheckFailure("holds_within_balance",
                                         f"holds of {total} fen exceed the balance of {balance} fen",
                                         account_id=account_id, expected_fen=balance, actual_fen=total))
        else:
            what = "an account that does not exist" if kind is None else f"an account of kind {kind}"
            failures.append(CheckFailure("holds_within_balance", f"holds of {total} fen on {what}",
                                         account_id=account_id, actual_fen=total))
    return _in_order(failures)


def customer_balance_not_negative() -> list[CheckFailure]:
    """Customers whose balance is below zero."""
    query = (Account.select(Account.account_id, Account.balance_fen)
             .where((Account.kind == "customer") & (Account.balance_fen < 0)))
    return _in_order([CheckFailure("customer_balance_not_negative", f"balance {balance} fen is below zero",
                                   account_id=account_id, expected_fen=0, actual_fen=balance)
                      for account_id, balance in query.tuples()])


def unsynced_exposure_matches() -> list[CheckFailure]:
    """Stations whose stored unsynced exposure differs from the offline debits their postings show since their last
    complete sync (a debit entry has exactly one customer leg that is a debit: counting those legs counts them)."""
    used = Authorization.alias()
    same_entry = (Entry.station_id == Posting.station_id) & (Entry.seq == Posting.seq)
    authorized = ((used.station_id == Posting.station_id) & (used.used_seq == Posting.seq)
                  & (used.status == "used"))
    query = (Posting.select(Posting.station_id, fn.SUM(Posting.amount_fen).cast("BIGINT"), fn.COUNT(Posting.seq))
             .join(Entry, JOIN.INNER, on=same_entry)
             .join_from(Posting, Account, JOIN.INNER, on=(Account.account_id == Posting.account_id))
             .join_from(Posting, Station, JOIN.INNER, on=(Station.station_id == Posting.station_id))
             .join_from(Posting, used, JOIN.LEFT_OUTER, on=authorized)
             .where((Posting.seq > Station.synced_seq) & (Posting.amount_fen > 0) & (Account.kind == "customer")
                    & Entry.type.in_(DEBIT_TYPES) & used.auth_id.is_null())
             .group_by(Posting.station_id))
    expected = {station_id: (int(fen), count) for station_id, fen, count in query.tuples()}
    failures = []
    stored = Station.select(Station.station_id, Station.unsynced_debit_fen, Station.unsynced_debit_count).tuples()
    for station_id, fen, count in stored:
        want_fen, want_count = expected.get(station_id, (0, 0))
        if (fen, count) != (want_fen, want_count):
            failures.append(CheckFailure(
                "unsynced_exposure_matches", f"stored unsynced exposure {fen} fen in {count} debits, its postings "
                f"make {want_fen} fen in {want_count}", station_id=station_id, expected_fen=want_fen,
                actual_fen=fen))
    return _in_order(failures)


#: Every check, in the order they run and report.
CHECKS: tuple[Callable[[], list[CheckFailure]], ...] = (
    legs_balance, balance_matches_postings, holds_within_balance, customer_balance_not_negative,
    unsynced_exposure_matches)


def check_ledger() -> list[CheckFailure]:
    """Run every check of ``CHECKS``; an empty list means the ledger is sound."""
    return [failure for check in CHECKS for failure in check()]
