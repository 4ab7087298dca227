"""Cash: the agents' drawers, as the signed journals and the ledger see them.

- ``cash_variance``: a day close whose counted cash differs from the expected drawer (``amount - expected`` of the
  signed ``day_close``) by more than ``recon.cash_variance_tolerance_fen``;
- ``float_mismatch``: a station's cash account (the sum of its postings, whoever made them) differs from the drawer
  its journal implies for the bank: the last counted amount (``day_open`` or ``day_close``, which set the account
  to the count) plus the cash effects of the settled operations after it (withdrawal −amount, deposit +amount,
  bill paid in cash +amount+fee, a reversal of a settled operation the inverse of its original's). Operations the
  bank rejected moved the drawer but not the ledger; they are ``rejected_offline_debit`` and absorbed by the next
  count.
"""

from __future__ import annotations

from sync_server.recon.kinds import Discrepancy


def cash_effect_sql(alias: str) -> str:
    """The ledger's cash effect (fen) of a settled entry ``alias`` of ``recon_fact``, reversals excluded."""
    return (f"CASE {alias}.type WHEN 'withdrawal' THEN 0 - {alias}.amount WHEN 'deposit' THEN {alias}.amount "
            f"WHEN 'bill_payment' THEN CASE WHEN {alias}.funding = 'cash' THEN {alias}.amount + "
            f"COALESCE({alias}.fee, 0) ELSE 0 END ELSE 0 END")


def variances(context) -> list[Discrepancy]:
    tolerance = int(context.recon_policy["cash_variance_tolerance_fen"])
    rows = context.rows("""
        SELECT station_id, seq, amount - expected, expected, day FROM recon_fact
        WHERE type = 'day_close' AND amount IS NOT NULL AND expected IS NOT NULL
          AND (amount - expected > ? OR expected - amount > ?)""", [tolerance, tolerance])
    return [Discrepancy("cash_variance", station=station_id, seq=seq, amount_fen=variance, expected_fen=expected,
                        day=day, detail={"tolerance_fen": tolerance})
            for station_id, seq, variance, expected, day in rows]


def float_mismatches(context) -> list[Discrepancy]:
    where, params = context.station_filter("s.station_id")
    rows = context.rows(f"""
        WITH counted AS (
            SELECT station_id, MAX(seq) AS seq FROM recon_fact
            WHERE type IN ('day_open', 'day_close') AND outcome = 'acknowledged' AND amount IS NOT NULL
            GROUP BY station_id),
        since AS (
            SELECT f.station_id, CAST(SUM(CASE WHEN f.type = 'reversal'
                       THEN CASE WHEN o.seq IS NULL THEN 0 ELSE 0 - ({cash_effect_sql("o")}) END
                       ELSE {cash_effect_sql("f")} END) AS BIGINT) AS moved
            FROM recon_fact f LEFT JOIN counted c ON c.station_id = f.station_id
            LEFT JOIN recon_fact o ON f.type = 'reversal' AND o.station_id = f.station_id AND o.txn = f.ref_txn
                 AND o.seq < f.seq AND o.outcome = 'settled'
            WHERE f.outcome = 'settled' AND f.seq > COALESCE(c.seq, 0) AND f.amount IS NOT NULL
            GROUP BY f.station_id),
        journal AS (
            SELECT s.station_id, COALESCE(k.amount, 0) + COALESCE(m.moved, 0) AS drawer FROM station s
            LEFT JOIN counted c ON c.station_id = s.station_id
            LEFT JOIN recon_fact k ON k.station_id = c.station_id AND k.seq = c.seq
            LEFT JOIN since m ON m.station_id = s.station_id
            WHERE 1 = 1{where}),
        ledger AS (
            SELECT station_id, CAST(SUM(amount_fen) AS BIGINT) AS cash FROM (
                SELECT s.station_id, p.amount_fen FROM station s
                JOIN posting p ON p.account_id = 'cash:' || s.station_id WHERE 1 = 1{where}) x
            GROUP BY station_id)
        SELECT j.station_id, j.drawer, COALESCE(l.cash, 0) FROM journal j
        LEFT JOIN ledger l ON l.station_id = j.station_id
        WHERE j.drawer <> COALESCE(l.cash, 0)""", params * 2)
    return [Discrepancy("float_mismatch", station=station_id, account=f"cash:{station_id}", amount_fen=cash,
                        expected_fen=drawer) for station_id, drawer, cash in rows]


def checks(context) -> list[Discrepancy]:
    """Every cash discrepancy of the run's scope."""
    return variances(context) + float_mismatches(context)
