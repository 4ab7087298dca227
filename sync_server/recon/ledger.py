"""Ledger: the central ledger agrees with the signed journals, to the fen.

- ``unbalanced_postings``: the legs of one entry (``posting`` rows with the same station and seq) do not sum to
  zero;
- ``entry_without_postings``: a settled entry that moves money (a withdrawal, deposit, transfer, bill payment, or
  a reversal or cancellation of a settled one) has no postings;
- ``postings_without_entry``: postings of a station's seq with no signed entry, of a rejected entry, or of an
  entry that moves no money (bank-side bookings, station ``BANK``, have no entries and are not listed);
- ``amount_mismatch``: an entry's legs on the accounts its token determines differ from what the token says
  (customer, drawer, fee, biller and clearing legs; commission depends on the bank's policy and is not derived);
  a reversal or cancellation must post exactly the inverse of its original's legs;
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


def _expected_legs_sql() -> str:
    """(station_id, seq, account, expected fen) for each leg a settled entry's token determines."""
    cash = "'cash:' || station_id"
    fees = "'fees:' || station_id"
    fee = "COALESCE(fee, 0)"
    legs = [
        ("withdrawal", "account", f"amount + {fee}"), ("withdrawal", cash, "0 - amount"),
        ("withdrawal", fees, f"0 - {fee}"),
        ("deposit", "account", "0 - amount"), ("deposit", cash, "amount"),
        ("transfer", "account", f"amount + {fee}"), ("transfer", "'transfers:' || station_id", "0 - amount"),
        ("transfer", fees, f"0 - {fee}"),
        ("bill_payment", "'biller:' || biller || ':' || station_id", "0 - amount"),
        ("bill_payment", f"CASE WHEN funding = 'account' THEN account ELSE {cash} END", f"amount + {fee}"),
        ("bill_payment", fees, f"0 - {fee}"),
    ]
    return " UNION ALL ".join(
        f"SELECT station_id, seq, {account} AS account, {amount} AS expected FROM recon_fact "
        f"WHERE outcome = 'settled' AND type = '{entry_type}' AND amount IS NOT NULL"
        for entry_type, account, amount in legs)


def amount_mismatches(context) -> list[Discrepancy]:
    """Entries whose legs differ from their tokens (one discrepancy per entry, on its first differing account)."""
    where, params = context.station_filter("p.station_id")
    posted = f"""SELECT p.station_id, p.seq, p.account_id, CAST(SUM(p.amount_fen) AS BIGINT) AS actual
                 FROM posting p WHERE 1 = 1{where} GROUP BY p.station_id, p.seq, p.account_id"""
    direct = f"""
        SELECT e.station_id, e.seq, e.account, CAST(SUM(e.expected) AS BIGINT) AS expected,
               COALESCE(MAX(a.actual), 0) AS actual
        FROM ({_expected_legs_sql()}) e
        LEFT JOIN ({posted}) a ON a.station_id = e.station_id AND a.seq = e.seq AND a.account_id = e.account
        WHERE EXISTS (SELECT 1 FROM posting q WHERE q.station_id = e.station_id AND q.seq = e.seq)
        GROUP BY e.station_id, e.seq, e.account"""
    # A reversal or cancellation of a settled original: the inverse of the original's legs, account by account,
    # and nothing on any other account.
    pairs = f"""SELECT u.station_id, u.seq AS useq, o.seq AS oseq FROM recon_fact u JOIN recon_fact o
                ON o.station_id = u.station_id AND o.txn = u.ref_txn AND o.seq < u.seq AND o.outcome = 'settled'
                WHERE u.outcome = 'settled' AND u.type IN ({_in(UNDOING)})"""
    inverse = f"""
        SELECT r.station_id, r.useq AS seq, x.account_id AS account, 0 - x.actual AS expected,
               COALESCE(y.actual, 0) AS actual
        FROM ({pairs}) r JOIN ({posted}) x ON x.station_id = r.station_id AND x.seq = r.oseq
        LEFT JOIN ({posted}) y ON y.station_id = r.station_id AND y.seq = r.useq AND y.account_id = x.account_id
        UNION ALL
        SELECT r.station_id, r.useq, y.account_id, 0, y.actual
        FROM ({pairs}) r JOIN ({posted}) y ON y.station_id = r.station_id AND y.seq = r.useq
        WHERE NOT EXISTS (SELECT 1 FROM posting z WHERE z.station_id = r.station_id AND z.seq = r.oseq
                          AND z.account_id = y.account_id)"""
    rows = context.rows(f"""
        SELECT m.station_id, m.seq, m.account, m.expected, m.actual, f.type, f.txn, f.day
        FROM ({direct} UNION ALL {inverse}) m
        JOIN recon_fact f ON f.station_id = m.station_id AND f.seq = m.seq
        WHERE m.expected <> m.actual ORDER BY m.station_id, m.seq, m.account""", params * 4)
    found: dict[tuple[str, int], Discrepancy] = {}
    for station_id, seq, account, expected, actual, entry_type, txn, day in rows:
        found.setdefault((station_id, seq), Discrepancy(
            "amount_mismatch", station=station_id, seq=seq, txn=txn, account=account, amount_fen=actual,
            expected_fen=expected, day=day, detail={"type": entry_type}))
    return list(found.values())


def balance_mismatches(context) -> list[Discrepancy]:
    """Accounts whose stored balance differs from their postings; station accounts in scope only, when the run
    is limited to some stations."""
    found = []
    for failure in balance_matches_postings():
        account = failure.account_id
        station = account.rsplit(":", 1)[1] if ":" in account else None
        if context.scope.stations is not None and station not in context.scope.stations:
            continue
        found.append(Discrepancy("balance_mismatch", station=station, account=account,
                                 amount_fen=failure.actual_fen, expected_fen=failure.expected_fen))
    return found


def checks(context) -> list[Discrepancy]:
    """Every ledger discrepancy of the run's scope."""
    return (unbalanced(context) + without_postings(context) + without_entry(context) + amount_mismatches(context)
            + balance_mismatches(context))
