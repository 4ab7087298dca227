"""Ledger: the central ledger agrees with the signed journals, to the fen.

- ``unbalanced_postings``: the legs of one entry (``posting`` rows with the same station and seq) do not sum to
  zero;
- ``entry_without_postings``: a settled entry that moves money (a withdrawal, deposit, transfer, bill payment, or
  a reversal or cancellation of a settled one) has no postings;
- ``postings_without_entry``: postings of a station's seq with no signed entry, of a rejected entry, or of an
  entry that moves no money (bank-side bookings, station ``BANK``, have no entries and are not listed);
- ``amount_mismatch``: an entry's legs on the accounts its token determines differ from what the token says
  (customer, drawer, fee, biller and clearing legs), a leg posts to any other account than those and the agent's
  commission pair, or the commission exceeds the policy's for the type (its exact figure also depends on the
  day's minimums and cap, which the settlement report ties); a reversal or cancellation must post exactly the
  inverse of its original's legs;
- ``balance_mismatch``: an account's stored balance is not the sum of its postings on its normal side
  (``sync_server.checks.balance_matches_postings``).
"""

from __future__ import annotations

from station.protocol.entry_types import SPECS, Effect, EntrySpec
from sync_server.checks import balance_matches_postings
from sync_server.recon.kinds import N_, Discrepancy

BANK = "BANK"
#: Types whose settled entries always post (a positive amount).
ALWAYS_POSTING = ("withdrawal", "deposit", "transfer", "bill_payment")
UNDOING = ("reversal", "transfer_cancel")


def _posts_money(spec: EntrySpec) -> bool:
    return spec.moves_cash or spec.customer_effect != Effect.NONE


#: Types that may have postings at all.
POSTING_TYPES = tuple(sorted(str(t) for t, spec in SPECS.items() if _posts_money(spec)))


def _in(values) -> str:
    return ", ".join(f"'{value}'" for value in values)


def unbalanced(context) -> list[Discrepancy]:
    where, params = context.station_filter("p.station_id")
    rows = context.rows(f"""
        SELECT p.station_id, p.seq, CAST(SUM(p.amount_fen) AS BIGINT), MAX(f.day) FROM posting p
        LEFT JOIN recon_fact f ON f.station_id = p.station_id AND f.seq = p.seq
        WHERE 1 = 1{where} GROUP BY p.station_id, p.seq HAVING SUM(p.amount_fen) <> 0""", params)
    return [Discrepancy("unbalanced_postings", station=station_id, seq=seq, amount_fen=total, expected_fen=0,
                        day=day) for station_id, seq, total, day in rows]


def without_postings(context) -> list[Discrepancy]:
    rows = context.rows(f"""
        SELECT f.station_id, f.seq, f.type, f.txn, f.account, f.amount, f.day FROM recon_fact f
        WHERE f.outcome = 'settled'
          AND (f.type IN ({_in(ALWAYS_POSTING)})
               OR (f.type IN ({_in(UNDOING)}) AND EXISTS (
                   SELECT 1 FROM recon_fact o JOIN posting op ON op.station_id = o.station_id AND op.seq = o.seq
                   WHERE o.station_id = f.station_id AND o.txn = f.ref_txn AND o.seq < f.seq
                     AND o.outcome = 'settled')))
          AND NOT EXISTS (SELECT 1 FROM posting p WHERE p.station_id = f.station_id AND p.seq = f.seq)""")
    return [Discrepancy("entry_without_postings", station=station_id, seq=seq, txn=txn, account=account,
                        amount_fen=amount, day=day, detail={"type": entry_type})
            for station_id, seq, entry_type, txn, account, amount, day in rows]


NO_ENTRY = N_("and no signed entry exists for it")
REJECTED = N_("though the bank rejected that entry")
MOVES_NOTHING = N_("though that entry moves no money")


def without_entry(context) -> list[Discrepancy]:
    where, params = context.station_filter("p.station_id")
    rows = context.rows(f"""
        SELECT p.station_id, p.seq, f.seq IS NULL, f.outcome, f.type, f.day,
               CAST(SUM(CASE WHEN p.amount_fen > 0 THEN p.amount_fen ELSE 0 END) AS BIGINT)
        FROM posting p LEFT JOIN recon_fact f ON f.station_id = p.station_id AND f.seq = p.seq
        WHERE p.station_id <> '{BANK}'{where}
        GROUP BY p.station_id, p.seq, f.seq, f.outcome, f.type, f.day
        HAVING f.seq IS NULL OR f.outcome = 'rejected' OR f.type IS NULL OR f.type NOT IN ({_in(POSTING_TYPES)})""",
                        params)
    found = []
    for station_id, seq, missing, outcome, entry_type, day, moved in rows:
        reason = NO_ENTRY if missing else REJECTED if outcome == "rejected" else MOVES_NOTHING
        found.append(Discrepancy("postings_without_entry", station=station_id, seq=seq, amount_fen=moved,
                                 expected_fen=0, day=day, detail={"reason": reason, "type": entry_type}))
    return found


_CASH, _FEES, _FEE = "'cash:' || f.station_id", "'fees:' || f.station_id", "COALESCE(f.fee, 0)"
#: The legs a settled entry's token determines, per type: (account, fen) as SQL over ``f``, a row of
#: ``recon_fact``. Commission depends on the bank's policy and is not derived.
EXPECTED_LEGS = {
    "withdrawal": [("f.account", f"f.amount + {_FEE}"), (_CASH, "0 - f.amount"), (_FEES, f"0 - {_FEE}")],
    "deposit": [("f.account", "0 - f.amount"), (_CASH, "f.amount")],
    "transfer": [("f.account", f"f.amount + {_FEE}"), ("'transfers:' || f.station_id", "0 - f.amount"),
                 (_FEES, f"0 - {_FEE}")],
    "bill_payment": [("'biller:' || f.biller || ':' || f.station_id", "0 - f.amount"),
                     (f"CASE WHEN f.funding = 'account' THEN f.account ELSE {_CASH} END", f"f.amount + {_FEE}"),
                     (_FEES, f"0 - {_FEE}")],
}
_SLOTS = max(len(legs) for legs in EXPECTED_LEGS.values())


def _slot(index: int, part: int) -> str:
    """The account (``part`` 0) or expected fen (1) of leg ``index`` of ``f``'s type; NULL when it has none."""
    cases = " ".join(f"WHEN '{entry_type}' THEN {legs[index][part]}"
                     for entry_type, legs in EXPECTED_LEGS.items() if index < len(legs))
    return f"CASE f.type {cases} END"


def _direct_mismatches(context) -> list[tuple]:
    """(station, seq, account, expected, actual, type, txn, day) of every leg of a settled withdrawal, deposit,
    transfer or bill payment whose account did not move by what the token says; and of legs the token does not
    explain: on any other account than its expected legs and the agent's commission pair (expected 0), or a
    commission (``commission:`` debited) beyond the policy's commission for the type (expected: the policy's
    figure). A commission leg without its ``agent:`` twin leaves the entry unbalanced (``unbalanced``), or another
    leg wrong.

    One join of ``recon_fact`` with ``posting`` on the entry's key, grouped by entry, each expected leg a column
    (``SUM`` of the postings on its account): one pass over the postings, at a million entries a few seconds
    (the leg-per-row form, an aggregate of ``posting`` per account joined to a union of the expected legs, took
    four times as long, and where PostgreSQL misjudged the reversal pairs as one row, hours)."""
    commission, agent = "'commission:' || f.station_id", "'agent:' || f.station_id"
    known = ", ".join([*(f"COALESCE({_slot(i, 0)}, '')" for i in range(_SLOTS)), commission, agent])
    rates = context.policy.get("commission") or {}
    top = " ".join(f"WHEN '{t}' THEN {int(rates.get(t, 0))}" for t in EXPECTED_LEGS)
    columns = ", ".join(
        f"{_slot(i, 0)} AS a{i}, {_slot(i, 1)} AS e{i}, "
        f"CAST(SUM(CASE WHEN p.account_id = {_slot(i, 0)} THEN p.amount_fen ELSE 0 END) AS BIGINT) AS x{i}"
        for i in range(_SLOTS))
    differs = " OR ".join(f"e{i} <> x{i}" for i in range(_SLOTS))
    rows = context.rows(f"""
        SELECT * FROM (
            SELECT f.station_id, f.seq, f.type, f.txn, f.day, {columns},
                   MAX(CASE WHEN p.account_id NOT IN ({known}) THEN p.account_id END) AS other_account,
                   CAST(SUM(CASE WHEN p.account_id NOT IN ({known}) THEN p.amount_fen ELSE 0 END) AS BIGINT)
                       AS other_sum,
                   COUNT(CASE WHEN p.account_id NOT IN ({known}) THEN 1 END) AS other_legs,
                   CAST(SUM(CASE WHEN p.account_id = {commission} THEN p.amount_fen ELSE 0 END) AS BIGINT) AS paid,
                   CASE f.type {top} ELSE 0 END AS rate, {commission} AS commission_account
            FROM recon_fact f JOIN posting p ON p.station_id = f.station_id AND p.seq = f.seq
            WHERE f.outcome = 'settled' AND f.type IN ({_in(EXPECTED_LEGS)}) AND f.amount IS NOT NULL
            GROUP BY f.station_id, f.seq, f.type, f.txn, f.day, f.account, f.amount, f.fee, f.biller, f.funding) d
        WHERE {differs} OR other_legs > 0 OR paid < 0 OR paid > rate""")
    found = []
    for station_id, seq, entry_type, txn, day, *legs in rows:
        slots, (other_account, other_sum, other_legs, paid, rate, commission_account) = (
            legs[:3 * _SLOTS], legs[3 * _SLOTS:])
        for i in range(_SLOTS):
            account, expected, actual = slots[3 * i:3 * i + 3]
            if expected is not None and expected != actual:
                found.append((station_id, seq, account, expected, actual, entry_type, txn, day))
        if other_legs:
            found.append((station_id, seq, other_account, 0, other_sum, entry_type, txn, day))
        if not 0 <= paid <= rate:
            found.append((station_id, seq, commission_account, min(max(paid, 0), rate), paid, entry_type, txn,
                          day))
    return found


def _inverse_mismatches(context) -> list[tuple]:
    """The same for a settled reversal or cancellation of a settled original: it must post exactly the inverse of
    the original's legs, account by account, and nothing on any other account."""
    return context.rows(f"""
        WITH pairs AS (
            SELECT u.station_id, u.seq AS useq, o.seq AS oseq FROM recon_fact u JOIN recon_fact o
                ON o.station_id = u.station_id AND o.txn = u.ref_txn AND o.seq < u.seq AND o.outcome = 'settled'
            WHERE u.outcome = 'settled' AND u.type IN ({_in(UNDOING)})),
        legs AS (
            SELECT r.station_id, r.useq, p.account_id, p.amount_fen AS actual, 0 AS expected
            FROM pairs r JOIN posting p ON p.station_id = r.station_id AND p.seq = r.useq
            UNION ALL
            SELECT r.station_id, r.useq, p.account_id, 0, 0 - p.amount_fen
            FROM pairs r JOIN posting p ON p.station_id = r.station_id AND p.seq = r.oseq)
        SELECT l.station_id, l.useq, l.account_id, CAST(SUM(l.expected) AS BIGINT), CAST(SUM(l.actual) AS BIGINT),
               MAX(f.type), MAX(f.txn), MAX(f.day)
        FROM legs l JOIN recon_fact f ON f.station_id = l.station_id AND f.seq = l.useq
        GROUP BY l.station_id, l.useq, l.account_id HAVING SUM(l.expected) <> SUM(l.actual)""")


def amount_mismatches(context) -> list[Discrepancy]:
    """Entries whose legs differ from their tokens: one discrepancy per entry, on its first differing account (in
    account order, an entry's leg without an account last)."""
    by_entry: dict[tuple[str, int], list[tuple]] = {}
    for row in _direct_mismatches(context) + _inverse_mismatches(context):
        by_entry.setdefault((row[0], row[1]), []).append(row)
    found = []
    for (station_id, seq), rows in sorted(by_entry.items()):
        _, _, account, expected, actual, entry_type, txn, day = min(rows, key=lambda r: (r[2] is None, r[2] or ""))
        found.append(Discrepancy("amount_mismatch", station=station_id, seq=seq, txn=txn, account=account,
                                 amount_fen=actual, expected_fen=expected, day=day, detail={"type": entry_type}))
    return found


def balance_mismatches(context) -> list[Discrepancy]:
    """Accounts whose stored balance differs from their postings; station accounts in scope only, when the run
    is limited to some stations."""
    found = []
    stations = {station_id for (station_id,) in context.rows("SELECT station_id FROM station")}
    for failure in balance_matches_postings():
        account = failure.account_id
        # A station's own accounts end with its id (``cash:ST-0001``, ``biller:CODE:ST-0001``: book.station_account).
        suffix = account.rsplit(":", 1)[-1]
        station = suffix if ":" in account and suffix in stations else None
        if context.scope.stations is not None and station not in context.scope.stations:
            continue
        found.append(Discrepancy("balance_mismatch", station=station, account=account,
                                 amount_fen=failure.actual_fen, expected_fen=failure.expected_fen))
    return found


def checks(context) -> list[Discrepancy]:
    """Every ledger discrepancy of the run's scope."""
    return (unbalanced(context) + without_postings(context) + without_entry(context) + amount_mismatches(context)
            + balance_mismatches(context))
