"""The daily settlement report: per station, per biller, and day totals that tie to the ledger to the fen.

``settle(database, day, now)`` reads one business day D (the local date of the entries' ``ts`` in the policy's time
zone: ``recon_fact.day``) in one transaction, from the signed tokens (``sync_server.recon.facts``) and from the
``posting`` table, and returns a :class:`Settlement`: per station, per biller, day totals, and the tie-out.

Which entries the bank *booked*: an entry whose outcome is ``settled`` or ``acknowledged`` and, for a reversal or
a transfer cancellation, whose original was settled (the posting rules post nothing otherwise). Every figure the
report computes from the tokens counts booked entries only, because a rejected entry moves nothing in the ledger;
what rejected entries did to the drawer is reported apart (``cash_unbooked_fen``), as recon's
``rejected_offline_debit`` follows it up. The effects of one operation are those of the posting rules
(``sync_server.posting_rules``), in the ledger's debit-positive sense; a reversal or cancellation has minus its
original's effects; the drawer's is ``station.protocol.journal_checks.cash_effect``.

The drawer: a count (``day_open``, ``day_close``) sets the station's cash account to its amount, so what a count of
D moved the account by is, by the tokens, its amount less the previous count's less the cash booked between them
(``float_funded_fen`` at opens, ``variance_booked_fen`` at closes); the float at the end of D is the last count at or
before the station's last entry of D plus the cash effects after it (``float_journal_fen``; counting booked
entries only, ``float_booked_fen``, which the cash account's position ``cash_account_fen`` must equal).

Invariants:
- the report *ties* only when every line of its tie-out (:class:`TieLine`) has equal figures: the report's, from the
  tokens, and the ledger's, summed from ``posting`` per account kind for the entries of D; ``Settlement.ties``;
- every posting of an entry of D falls in the line of its account kind (the drawer's split between operations and
  counts; kinds no operation posts to in ``other_accounts``), so a posting the tokens do not explain, or one on an
  entry the bank did not book, makes a line not tie; one on a station's cash account from outside its journal
  (a bank-side booking) makes its float position, or the next count, not tie;
- the queries are set-based (temporary tables, ``GROUP BY``, ``LAG``), keyed and grouped by ``station_id`` first,
  and give the same figures on SQLite and PostgreSQL; nothing is written but the temporary tables, dropped at the
  end of the transaction.

The one figure the tokens cannot give is the agent's commission (the bank's policy at the time, with its minimums
and daily cap): it is read from the station's own ``agent_payable`` account, and its lines prove that the two legs
agree and that no commission of the day went to another account.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from peewee import Database
from rich.console import Console
from rich.table import Table

from station.protocol.entry_types import EntryType, originals_of
from sync_server.book import station_account
from sync_server.recon.context import Context, Scope
from sync_server.recon.facts import extract_facts
from sync_server.recon.i18n import gettext, money, render
from sync_server.recon.kinds import N_

#: Entries that undo an original (their effects are minus the original's): reversal, transfer cancellation.
UNDO_TYPES = tuple(t for t in EntryType if originals_of(t))
#: Entries that count the drawer: the ledger sets the station's cash account to their amount.
COUNT_TYPES = (EntryType.DAY_OPEN, EntryType.DAY_CLOSE)
#: Outcomes under which an entry's legs were posted.
BOOKED_OUTCOMES = ("settled", "acknowledged")

#: The tie-out's lines of day totals, in order, with their labels (per station and per biller lines follow).
TOTAL_LINES = {
    "cash": N_("Cash taken in less cash paid out (operations)"),
    "customer": N_("Customer accounts (debits less credits)"),
    "fees": N_("Fees earned"),
    "biller_payable": N_("Payable to billers"),
    "transfer_clearing": N_("Transfers to execute and wealth-product subscriptions"),
    "agent_payable": N_("Agent commission payable"),
    "commission_expense": N_("Commission expense"),
    "day_counts": N_("Day open and close: drawer adjustments"),
    "float_funding": N_("Float funded at day open"),
    "cash_variance": N_("Cash over or short at day close, as booked"),
    "other_accounts": N_("Postings to accounts no operation of the day posts to"),
    "rejected": N_("Postings of entries the bank did not book"),
    "balanced": N_("All postings of the day's entries (sum)"),
}
FLOAT_LINE = N_("Float position of station {station}")
BILLER_LINE = N_("Payable to biller {biller}")
#: Account kinds as the clerk reads them (``sync_server.db.ACCOUNT_KINDS``).
ACCOUNT_KIND_LABELS = {
    "customer": N_("customer accounts"), "station_cash": N_("station cash"), "float_funding": N_("float funding"),
    "cash_variance": N_("cash over or short"), "agent_payable": N_("agent commission payable"),
    "commission_expense": N_("commission expense"), "fee_income": N_("fee income"),
    "biller_payable": N_("payable to billers"), "transfer_clearing": N_("transfers to execute"),
    "external_clearing": N_("external transfers"), "opening_equity": N_("opening equity"),
}

#: Account kinds a line of the tie-out accounts for; postings to any other kind go to ``other_accounts``.
LINE_KINDS = ("station_cash", "customer", "fee_income", "biller_payable", "transfer_clearing", "external_clearing",
              "agent_payable", "commission_expense", "float_funding", "cash_variance")

#: Per station, in JSON and CSV (amounts in fen).
STATION_FIELDS = ("station", "entries", "rejected", "cash_paid_out_fen", "cash_taken_in_fen", "cash_unbooked_fen",
                  "float_funded_fen", "float_journal_fen", "float_booked_fen", "cash_account_fen", "last_count_seq",
                  "day_closes", "variance_fen", "variance_booked_fen", "commission_fen", "fees_fen")
#: Per biller.
BILLER_FIELDS = ("biller", "payments", "reversals", "payable_fen", "payable_by_journal_fen")
#: The columns of the CSV: one row per station, biller, the day's total and tie-out line, told apart by ``section``.
CSV_COLUMNS = ("section", "date", *STATION_FIELDS[:1], "biller", "line", "label", *STATION_FIELDS[1:],
               *BILLER_FIELDS[1:], "report_fen", "ledger_fen", "ties", "differing_stations")


@dataclass(frozen=True)
class TieLine:
    """One line of the tie-out: the report's figure (from the tokens) and the ledger's, and where they differ."""

    line: str
    report_fen: int
    ledger_fen: int
    station: str | None = None
    biller: str | None = None
    #: The stations whose own figures differ (on a line of day totals).
    differing: tuple[str, ...] = ()

    @property
    def ties(self) -> bool:
        return self.report_fen == self.ledger_fen and not self.differing

    def label(self, lang: str) -> str:
        if self.line == "float":
            return render(lang, FLOAT_LINE, {"station": self.station})
        if self.line == "biller":
            return render(lang, BILLER_LINE, {"biller": self.biller})
        return gettext(lang, TOTAL_LINES[self.line])


@dataclass
class Settlement:
    """The settlement of one business day."""

    day: str
    stations: list[dict] = field(default_factory=list)
    billers: list[dict] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    tie_out: list[TieLine] = field(default_factory=list)

    @property
    def ties(self) -> bool:
        return all(line.ties for line in self.tie_out)


# -- SQL ------------------------------------------------------------------------------------------------------
def _in(values) -> str:
    """A SQL list of registry constants (identifiers without quotes)."""
    return ", ".join(f"'{value}'" for value in values)


_UNDO = _in(UNDO_TYPES)


def _effects(p: str) -> dict[str, str]:
    """SQL for the debit-positive effects of an operation whose ``recon_fact`` columns are prefixed ``p``: on the
    drawer and the station's cash account, the customer's account, fee income, the biller payable and transfer
    clearing (the legs of ``sync_server.posting_rules``; commission is the bank's, read from the ledger)."""
    amount, fee, kind = f"COALESCE({p}amount, 0)", f"COALESCE({p}fee, 0)", f"{p}type"
    bill = f"{kind} = '{EntryType.BILL_PAYMENT}'"
    debits = f"'{EntryType.WITHDRAWAL}', '{EntryType.TRANSFER}'"
    # A wealth-product order debits the customer and credits the product's subscription (external clearing)
    # account at the station, with no fee: it is counted with the transfers' clearing.
    wmp = f"{kind} = '{EntryType.WMP_ORDER}'"
    return {
        "cash": f"CASE WHEN {kind} = '{EntryType.WITHDRAWAL}' THEN -{amount} "
                f"WHEN {kind} = '{EntryType.DEPOSIT}' THEN {amount} "
                f"WHEN {bill} AND {p}funding = 'cash' THEN {amount} + {fee} ELSE 0 END",
        "customer": f"CASE WHEN {kind} IN ({debits}) OR ({bill} AND {p}funding = 'account') THEN {amount} + {fee} "
                    f"WHEN {wmp} THEN {amount} WHEN {kind} = '{EntryType.DEPOSIT}' THEN -{amount} ELSE 0 END",
        "fees": f"CASE WHEN {kind} IN ({debits}) OR {bill} THEN -{fee} ELSE 0 END",
        "biller": f"CASE WHEN {bill} THEN -{amount} ELSE 0 END",
        "clearing": f"CASE WHEN {kind} = '{EntryType.TRANSFER}' OR {wmp} THEN -{amount} ELSE 0 END",
    }


_BOOKED_COUNT = f"f.type IN ({_in(COUNT_TYPES)}) AND f.outcome IN ({_in(BOOKED_OUTCOMES)})"
_COUNT_TABLE = """CREATE TEMPORARY TABLE recon_settle_count (station_id TEXT, seq BIGINT, type TEXT, amount BIGINT,
    prev_seq BIGINT, prev_amount BIGINT, in_day INTEGER, PRIMARY KEY (station_id, seq))"""
# The booked counts of the stations with entries on D, up to their last entry of D, each with the count before it:
# those of D, and each station's last one.
_COUNTS = f"""INSERT INTO recon_settle_count (station_id, seq, type, amount, prev_seq, prev_amount, in_day)
WITH ends AS (
    SELECT station_id, MAX(seq) AS end_seq FROM recon_fact WHERE day = ? GROUP BY station_id
), counts AS (
    SELECT f.station_id, f.seq, f.type, COALESCE(f.amount, 0) AS amount, f.day,
           LAG(f.seq) OVER (PARTITION BY f.station_id ORDER BY f.seq) AS prev_seq,
           LAG(COALESCE(f.amount, 0)) OVER (PARTITION BY f.station_id ORDER BY f.seq) AS prev_amount
    FROM ends e JOIN recon_fact f ON f.station_id = e.station_id AND f.seq <= e.end_seq
    WHERE {_BOOKED_COUNT}
)
SELECT c.station_id, c.seq, c.type, c.amount, COALESCE(c.prev_seq, 0), COALESCE(c.prev_amount, 0),
       CASE WHEN c.day = ? THEN 1 ELSE 0 END
FROM counts c
WHERE c.day = ? OR c.seq = (SELECT MAX(k.seq) FROM counts k WHERE k.station_id = c.station_id)"""
_STATION_TABLE = """CREATE TEMPORARY TABLE recon_settle_station (station_id TEXT PRIMARY KEY, start_seq BIGINT,
    end_seq BIGINT, count_seq BIGINT, count_amount BIGINT)"""
# Per station with entries on D: its last entry of D (the end of its day), its last count at or before it, and
# where the entries whose effects the report needs begin: the first of D, of those after the last count, and of
# those after the count before each count of D.
_STATIONS = """INSERT INTO recon_settle_station (station_id, start_seq, end_seq, count_seq, count_amount)
WITH ends AS (
    SELECT station_id, MIN(seq) - 1 AS before_day, MAX(seq) AS end_seq FROM recon_fact WHERE day = ?
    GROUP BY station_id
), counts AS (
    SELECT station_id, MAX(seq) AS count_seq, MIN(CASE WHEN in_day = 1 THEN prev_seq END) AS first_prev
    FROM recon_settle_count GROUP BY station_id
), starts AS (
    SELECT e.station_id, e.before_day, e.end_seq, COALESCE(c.count_seq, 0) AS count_seq,
           COALESCE(c.first_prev, c.count_seq, 0) AS after_count
    FROM ends e LEFT JOIN counts c ON c.station_id = e.station_id
)
SELECT s.station_id, CASE WHEN s.after_count < s.before_day THEN s.after_count ELSE s.before_day END,
       s.end_seq, s.count_seq, COALESCE(k.amount, 0)
FROM starts s LEFT JOIN recon_settle_count k ON k.station_id = s.station_id AND k.seq = s.count_seq"""
_ENTRY_TABLE = """CREATE TEMPORARY TABLE recon_settle (station_id TEXT, seq BIGINT, type TEXT, outcome TEXT,
    in_day INTEGER, after_count INTEGER, booked INTEGER, cash BIGINT, customer BIGINT, fees BIGINT, biller BIGINT,
    clearing BIGINT, biller_code TEXT, bill_payment INTEGER, bill_reversal INTEGER, variance BIGINT,
    day_close INTEGER, PRIMARY KEY (station_id, seq))"""
# The entries from each station's start to the end of its day (every entry of D among them), with their effects.
_ENTRIES = f"""INSERT INTO recon_settle
WITH d AS (
    SELECT f.station_id, f.seq, f.type, f.outcome, f.amount, f.fee, f.funding, f.biller, f.ref_txn, f.expected,
           CASE WHEN f.day = ? THEN 1 ELSE 0 END AS in_day,
           CASE WHEN f.seq > s.count_seq THEN 1 ELSE 0 END AS after_count
    FROM recon_settle_station s JOIN recon_fact f ON f.station_id = s.station_id
        AND f.seq > s.start_seq AND f.seq <= s.end_seq
), named AS (
    SELECT o.station_id, o.txn, MIN(o.seq) AS seq FROM recon_fact o
    WHERE EXISTS (SELECT 1 FROM d WHERE d.station_id = o.station_id AND d.type IN ({_UNDO}) AND d.ref_txn = o.txn)
    GROUP BY o.station_id, o.txn
)
SELECT d.station_id, d.seq, d.type, d.outcome, d.in_day, d.after_count,
       CASE WHEN d.outcome IN ({_in(BOOKED_OUTCOMES)})
                 AND (d.type NOT IN ({_UNDO}) OR o.outcome = 'settled') THEN 1 ELSE 0 END,
       {", ".join(f"CASE WHEN d.type IN ({_UNDO}) THEN -({undo}) ELSE {own} END"
                  for own, undo in zip(_effects("d.").values(), _effects("o.").values(), strict=True))},
       CASE WHEN d.type = '{EntryType.BILL_PAYMENT}' THEN d.biller
            WHEN d.type IN ({_UNDO}) AND o.type = '{EntryType.BILL_PAYMENT}' THEN o.biller END,
       CASE WHEN d.type = '{EntryType.BILL_PAYMENT}' THEN 1 ELSE 0 END,
       CASE WHEN d.type IN ({_UNDO}) AND o.type = '{EntryType.BILL_PAYMENT}' THEN 1 ELSE 0 END,
       CASE WHEN d.type = '{EntryType.DAY_CLOSE}' THEN COALESCE(d.amount, 0) - COALESCE(d.expected, 0) ELSE 0 END,
       CASE WHEN d.type = '{EntryType.DAY_CLOSE}' THEN 1 ELSE 0 END
FROM d LEFT JOIN named n ON n.station_id = d.station_id AND n.txn = d.ref_txn AND d.type IN ({_UNDO})
LEFT JOIN recon_fact o ON o.station_id = n.station_id AND o.seq = n.seq"""


def _booked_in_day(column: str) -> str:
    return f"SUM(CASE WHEN r.in_day = 1 AND r.booked = 1 THEN r.{column} ELSE 0 END)"


# What the tokens say, per station.
_TOKEN_FIGURES = f"""SELECT r.station_id, SUM(r.in_day),
    SUM(CASE WHEN r.in_day = 1 AND r.outcome = 'rejected' THEN 1 ELSE 0 END),
    SUM(CASE WHEN r.in_day = 1 AND r.booked = 1 AND r.cash < 0 THEN -r.cash ELSE 0 END),
    SUM(CASE WHEN r.in_day = 1 AND r.booked = 1 AND r.cash > 0 THEN r.cash ELSE 0 END),
    SUM(CASE WHEN r.in_day = 1 AND r.booked = 0 THEN r.cash ELSE 0 END),
    {_booked_in_day("customer")}, {_booked_in_day("fees")}, {_booked_in_day("biller")}, {_booked_in_day("clearing")},
    SUM(r.in_day * r.variance), SUM(r.in_day * r.day_close),
    SUM(r.after_count * r.cash), SUM(r.after_count * r.booked * r.cash)
FROM recon_settle r GROUP BY r.station_id"""
_TOKEN_NAMES = ("entries", "rejected", "paid_out", "taken_in", "unbooked", "customer", "fees", "biller", "clearing",
                "variance", "day_closes", "after_count", "after_count_booked")
# What each count of D moved the cash account by, by the tokens: its amount less the count before it and the cash
# effects booked between them (the ledger's balance at the count, when nothing else posts to the drawer).
_COUNT_DELTAS = """SELECT c.station_id, c.type, c.amount - c.prev_amount - COALESCE(SUM(r.booked * r.cash), 0)
FROM recon_settle_count c
LEFT JOIN recon_settle r ON r.station_id = c.station_id AND r.seq > c.prev_seq AND r.seq < c.seq
WHERE c.in_day = 1
GROUP BY c.station_id, c.seq, c.type, c.amount, c.prev_amount"""
_AGENT_PREFIX = station_account("agent_payable", "")[0]
_CASH_PREFIX = station_account("station_cash", "")[0]
# What the ledger posted for the entries of D, per station, account kind, booked or not, count or operation.
_LEDGER_FIGURES = f"""SELECT r.station_id, COALESCE(a.kind, ''), r.booked,
    CASE WHEN r.type IN ({_in(COUNT_TYPES)}) THEN 1 ELSE 0 END,
    SUM(p.amount_fen), SUM(ABS(p.amount_fen)),
    SUM(CASE WHEN p.account_id = '{_AGENT_PREFIX}' || r.station_id THEN p.amount_fen ELSE 0 END)
FROM recon_settle r JOIN posting p ON p.station_id = r.station_id AND p.seq = r.seq
LEFT JOIN account a ON a.account_id = p.account_id
WHERE r.in_day = 1
GROUP BY r.station_id, COALESCE(a.kind, ''), r.booked, CASE WHEN r.type IN ({_in(COUNT_TYPES)}) THEN 1 ELSE 0 END"""
# The station's cash account after its last entry of D: every posting to it but its own later entries' (bank-side
# bookings carry no business day: all of them count).
_CASH_ACCOUNTS = f"""SELECT s.station_id, SUM(p.amount_fen)
FROM recon_settle_station s JOIN posting p ON p.account_id = '{_CASH_PREFIX}' || s.station_id
WHERE p.station_id <> s.station_id OR p.seq <= s.end_seq
GROUP BY s.station_id"""
_BILLER_TOKENS = """SELECT r.station_id, r.biller_code, SUM(r.booked * r.biller), SUM(r.booked * r.bill_payment),
    SUM(r.booked * r.bill_reversal)
FROM recon_settle r WHERE r.in_day = 1 AND r.biller_code IS NOT NULL
GROUP BY r.station_id, r.biller_code"""
_BILLER_LEDGER = """SELECT r.station_id, p.account_id, SUM(p.amount_fen)
FROM recon_settle r JOIN posting p ON p.station_id = r.station_id AND p.seq = r.seq
JOIN account a ON a.account_id = p.account_id AND a.kind = 'biller_payable'
WHERE r.in_day = 1
GROUP BY r.station_id, p.account_id"""
_DROP = ("DROP TABLE IF EXISTS recon_settle", "DROP TABLE IF EXISTS recon_settle_station",
         "DROP TABLE IF EXISTS recon_settle_count", "DROP TABLE IF EXISTS recon_fact")


def _fen(value) -> int:
    """A sum as integer fen (PostgreSQL sums BIGINT to NUMERIC; an empty sum is NULL)."""
    return int(value or 0)


def _biller_code(account_id: str, station_id: str) -> str:
    """The biller of a payable account ``biller:CODE:STATION`` (the account id itself if it is not of that form)."""
    prefix, suffix = station_account("biller_payable", "")[0], ":" + station_id
    if account_id.startswith(prefix) and account_id.endswith(suffix) and len(account_id) > len(prefix + suffix):
        return account_id[len(prefix):-len(suffix)]
    return account_id


# -- the report -------------------------------------------------------------------------------------------------
def settle(database: Database, day: str, now: datetime) -> Settlement:
    """The settlement of business day ``day`` (YYYY-MM-DD), read in one transaction (the models bound to
    ``database``)."""
    with database.atomic():
        if database.param == "%s":  # PostgreSQL: every query sees the same committed state
            database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        context = Context.open(database, Scope(date_from=day, date_to=day, now=now), now)
        extract_facts(context)
        for sql in _DROP[:3]:
            database.execute_sql(sql)
        for table, fill, params in ((_COUNT_TABLE, _COUNTS, [day, day, day]), (_STATION_TABLE, _STATIONS, [day]),
                                    (_ENTRY_TABLE, _ENTRIES, [day])):
            database.execute_sql(table)
            database.execute_sql(fill.replace("?", database.param), params)
        counts = {station: (_fen(seq), _fen(amount)) for station, seq, amount in context.rows(
            "SELECT station_id, count_seq, count_amount FROM recon_settle_station")}
        deltas = context.rows(_COUNT_DELTAS)
        tokens = {row[0]: dict(zip(_TOKEN_NAMES, map(_fen, row[1:]), strict=True))
                  for row in context.rows(_TOKEN_FIGURES)}
        ledger = context.rows(_LEDGER_FIGURES)
        cash_accounts = {station: _fen(total) for station, total in context.rows(_CASH_ACCOUNTS)}
        biller_tokens = context.rows(_BILLER_TOKENS)
        biller_ledger = context.rows(_BILLER_LEDGER)
        # Temporary tables of this transaction (a failure rolls them back with it).
        for sql in _DROP:
            database.execute_sql(sql)
    return _assemble(day, counts, deltas, tokens, ledger, cash_accounts, biller_tokens, biller_ledger)


def _assemble(day, counts, deltas, tokens, ledger_rows, cash_accounts, biller_tokens, biller_ledger) -> Settlement:
    """The report from the grouped figures (one row per station, kind or biller: never per entry)."""
    # ledger[station][(kind, booked, count)] = (sum, sum of absolute values); commission per station.
    ledger: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    commission: dict = defaultdict(int)
    by_kind: dict = defaultdict(int)
    for station, kind, booked, count, total, absolute, own_agent in ledger_rows:
        cell = ledger[station][(kind, int(booked), int(count))]
        cell[0] += _fen(total)
        cell[1] += _fen(absolute)
        commission[station] -= _fen(own_agent)
        by_kind[kind or "unknown"] += _fen(total)

    # moved[station][count type]: what the counts of D moved the cash account by, by the tokens.
    moved: dict = defaultdict(lambda: defaultdict(int))
    for station, count_type, delta in deltas:
        moved[station][count_type] += _fen(delta)

    def posted(station, kinds=None, booked=None, count=None, absolute=False) -> int:
        return sum(value[1 if absolute else 0] for (k, b, c), value in ledger[station].items()
                   if (kinds is None or k in kinds) and (booked is None or b == booked)
                   and (count is None or c == count))

    stations = []
    for station in sorted(tokens):
        t = tokens[station]
        count_seq, count_amount = counts[station]
        figures = {
            "station": station, "entries": t["entries"], "rejected": t["rejected"],
            "cash_paid_out_fen": t["paid_out"], "cash_taken_in_fen": t["taken_in"],
            "cash_unbooked_fen": t["unbooked"], "float_funded_fen": moved[station][EntryType.DAY_OPEN],
            "float_journal_fen": count_amount + t["after_count"],
            "float_booked_fen": count_amount + t["after_count_booked"],
            "cash_account_fen": cash_accounts.get(station, 0), "last_count_seq": count_seq or None,
            "day_closes": t["day_closes"], "variance_fen": t["variance"],
            "variance_booked_fen": moved[station][EntryType.DAY_CLOSE], "commission_fen": commission[station],
            "fees_fen": -t["fees"],
        }
        stations.append({name: figures[name] for name in STATION_FIELDS})

    # Each line of day totals: (report figure, ledger figure) per station.
    per_station = {
        "cash": lambda s: (tokens[s]["taken_in"] - tokens[s]["paid_out"], posted(s, {"station_cash"}, count=0)),
        "customer": lambda s: (tokens[s]["customer"], posted(s, {"customer"})),
        "fees": lambda s: (-tokens[s]["fees"], -posted(s, {"fee_income"})),
        "biller_payable": lambda s: (-tokens[s]["biller"], -posted(s, {"biller_payable"})),
        "transfer_clearing": lambda s: (-tokens[s]["clearing"], -posted(s, {"transfer_clearing", "external_clearing"})),
        "agent_payable": lambda s: (commission[s], -posted(s, {"agent_payable"})),
        "commission_expense": lambda s: (commission[s], posted(s, {"commission_expense"})),
        "day_counts": lambda s: (sum(moved[s].values()), posted(s, {"station_cash"}, count=1)),
        "float_funding": lambda s: (moved[s][EntryType.DAY_OPEN], -posted(s, {"float_funding"})),
        "cash_variance": lambda s: (moved[s][EntryType.DAY_CLOSE], -posted(s, {"cash_variance"})),
        "other_accounts": lambda s: (0, sum(value[1] for (k, _, _), value in ledger[s].items()
                                            if k not in LINE_KINDS)),
        "rejected": lambda s: (0, posted(s, booked=0, absolute=True)),
        "balanced": lambda s: (0, posted(s)),
    }
    tie_out = []
    for line, figures in per_station.items():
        pairs = {station: figures(station) for station in sorted(tokens)}
        tie_out.append(TieLine(line, sum(r for r, _ in pairs.values()), sum(g for _, g in pairs.values()),
                               differing=tuple(s for s, (r, g) in pairs.items() if r != g)))
    for row in stations:
        tie_out.append(TieLine("float", row["float_booked_fen"], row["cash_account_fen"], station=row["station"]))

    billers: dict = defaultdict(lambda: {"payments": 0, "reversals": 0, "payable_fen": 0,
                                         "payable_by_journal_fen": 0, "stations": defaultdict(lambda: [0, 0])})
    for station, code, payable, payments, reversals in biller_tokens:
        biller = billers[code]
        biller["payments"] += _fen(payments)
        biller["reversals"] += _fen(reversals)
        biller["payable_by_journal_fen"] -= _fen(payable)
        biller["stations"][station][0] -= _fen(payable)
    for station, account_id, payable in biller_ledger:
        biller = billers[_biller_code(account_id, station)]
        biller["payable_fen"] -= _fen(payable)
        biller["stations"][station][1] -= _fen(payable)
    biller_rows = []
    for code in sorted(billers):
        biller = billers[code]
        differing = tuple(s for s, (r, g) in sorted(biller["stations"].items()) if r != g)
        tie_out.append(TieLine("biller", biller["payable_by_journal_fen"], biller["payable_fen"], biller=code,
                               differing=differing))
        biller_rows.append({"biller": code, **{name: biller[name] for name in BILLER_FIELDS[1:]}})

    totals = {name: sum(row[name] for row in stations) for name in (
        "entries", "rejected", "cash_paid_out_fen", "cash_taken_in_fen", "cash_unbooked_fen", "float_funded_fen",
        "float_journal_fen", "float_booked_fen", "cash_account_fen", "day_closes", "variance_fen",
        "variance_booked_fen", "commission_fen", "fees_fen")}
    totals["biller_payable_fen"] = sum(row["payable_fen"] for row in biller_rows)
    totals["bill_payments"] = sum(row["payments"] for row in biller_rows)
    totals["bill_reversals"] = sum(row["reversals"] for row in biller_rows)
    totals["ledger_by_kind_fen"] = dict(sorted(by_kind.items()))
    return Settlement(day, stations, biller_rows, totals, tie_out)


# -- output -----------------------------------------------------------------------------------------------------
def tie_dict(line: TieLine, lang: str) -> dict:
    return {"line": line.line, "station": line.station, "biller": line.biller, "label": line.label(lang),
            "report_fen": line.report_fen, "ledger_fen": line.ledger_fen,
            "difference_fen": line.report_fen - line.ledger_fen, "ties": line.ties,
            "differing_stations": list(line.differing)}


def to_json(settlement: Settlement, lang: str) -> str:
    """``{"date", "stations", "billers", "totals", "tie_out", "ties"}``; amounts in integer fen."""
    document = {"date": settlement.day, "stations": settlement.stations, "billers": settlement.billers,
                "totals": settlement.totals, "tie_out": [tie_dict(line, lang) for line in settlement.tie_out],
                "ties": settlement.ties}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def to_csv(settlement: Settlement, lang: str) -> str:
    """One CSV: a row per station, per biller, the day's total and a row per tie-out line (``section``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    day = {"date": settlement.day}
    for row in settlement.stations:
        writer.writerow({"section": "station", **day, **row})
    for row in settlement.billers:
        writer.writerow({"section": "biller", **day, **row})
    total = {key: value for key, value in settlement.totals.items() if key in CSV_COLUMNS}
    writer.writerow({"section": "total", **day, **total, "payable_fen": settlement.totals["biller_payable_fen"],
                     "payments": settlement.totals["bill_payments"], "reversals": settlement.totals["bill_reversals"]})
    for line in settlement.tie_out:
        shown = tie_dict(line, lang)
        writer.writerow({"section": "tie_out", **day, **shown, "ties": "true" if line.ties else "false",
                         "differing_stations": " ".join(line.differing)})
    return out.getvalue()


def print_tables(console: Console, settlement: Settlement, lang: str) -> None:
    """Stations (their cash, then their entries and earnings), billers, the ledger by account kind, the tie-out.

    The verdict (``verdict``) is the caller's to print: on stdout when the day ties, on stderr when it does not.
    """
    _ = lambda message: gettext(lang, message)  # noqa: E731
    yuan = lambda fen: money(fen, lang)  # noqa: E731
    console.print(render(lang, N_("Settlement of {date}"), {"date": settlement.day}), style="bold")
    if not settlement.stations:
        console.print(render(lang, N_("No entries on {date}."), {"date": settlement.day}))
        return
    rows = [*settlement.stations, {"station": _(N_("Total")), **settlement.totals}]
    console.print(_table(_(N_("Cash by station")), lang, (
        N_("Station"), N_("Cash paid out"), N_("Cash taken in"), N_("Cash not booked"), N_("Variance"),
        N_("Variance booked")), [
        (row["station"], yuan(row["cash_paid_out_fen"]), yuan(row["cash_taken_in_fen"]),
         yuan(row["cash_unbooked_fen"]), yuan(row["variance_fen"]), yuan(row["variance_booked_fen"]))
        for row in rows]))
    console.print(_table(_(N_("Float at the end of the day")), lang, (
        N_("Station"), N_("Float funded"), N_("Float by journal"), N_("Cash account")), [
        (row["station"], yuan(row["float_funded_fen"]), yuan(row["float_journal_fen"]),
         yuan(row["cash_account_fen"])) for row in rows]))
    console.print(_table(_(N_("Entries and earnings by station")), lang, (
        N_("Station"), N_("Entries"), N_("Rejected"), N_("Commission"), N_("Fees")), [
        (row["station"], str(row["entries"]), str(row["rejected"]), yuan(row["commission_fen"]),
         yuan(row["fees_fen"])) for row in rows]))
    if settlement.billers:
        console.print(_table(_(N_("Billers")), lang, (N_("Biller"), N_("Payments"), N_("Reversals"), N_("Payable")),
                             [(row["biller"], str(row["payments"]), str(row["reversals"]), yuan(row["payable_fen"]))
                              for row in settlement.billers]))
    console.print(_table(_(N_("Ledger postings of the day's entries by account kind")), lang,
                         (N_("Account kind"), N_("Sum (debit positive)")),
                         [(_(ACCOUNT_KIND_LABELS.get(kind, kind)), yuan(total))
                          for kind, total in settlement.totals["ledger_by_kind_fen"].items()]))
    tie = _table(_(N_("Tie-out")), lang, (N_("Line"), N_("Report"), N_("Ledger"), N_("Result")), [
        (line.label(lang), yuan(line.report_fen), yuan(line.ledger_fen),
         (_(N_("ties")) if line.ties else _(N_("does not tie")))
         + (" (" + ", ".join(line.differing) + ")" if line.differing else "")) for line in settlement.tie_out])
    for index, line in enumerate(settlement.tie_out):
        if not line.ties:
            tie.rows[index].style = "bold red"
    console.print(tie)


def _table(title: str, lang: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    """A table whose first column is text and the others figures (right-aligned); no figure is ever folded (its
    column is at least as wide as its widest cell): headers wrap instead."""
    table = Table(title=title)
    for index, column in enumerate(columns):
        widest = max((len(row[index]) for row in rows), default=0)
        table.add_column(gettext(lang, column), justify="left" if index == 0 or column == N_("Result") else "right",
                         min_width=widest if index and column != N_("Result") else None)
    for row in rows:
        table.add_row(*row)
    return table


def verdict(settlement: Settlement, lang: str) -> str:
    """The day ties; or which lines do not, one per line, with both figures and the stations where they differ."""
    if settlement.ties:
        return render(lang, N_("The settlement of {date} ties to the ledger."), {"date": settlement.day})
    lines = [render(lang, N_("The settlement of {date} does not tie to the ledger:"), {"date": settlement.day})]
    for line in settlement.tie_out:
        if line.ties:
            continue
        text = render(lang, N_("{label}: report {report}, ledger {ledger}, difference {difference}"), {
            "label": line.label(lang), "report": money(line.report_fen, lang),
            "ledger": money(line.ledger_fen, lang), "difference": money(line.report_fen - line.ledger_fen, lang)})
        if line.differing:
            text += " " + render(lang, N_("(stations {stations})"), {"stations": ", ".join(line.differing)})
        lines.append("- " + text)
    return "\n".join(lines)
