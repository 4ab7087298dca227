"""Recon checks: billers. Were the billers paid what the villagers paid, no more, no less, each payment once?

The bank's side is what the signed tokens say (``recon_fact``): settled ``bill_payment`` entries, less those undone
by a settled ``reversal`` of the same station; each is owed to its ``biller`` for its ``amount`` (the fee stays with
the bank) on its value date, the bank's local date when it booked the payment (``booked_day``). The billers' side is
their imported settlement files (``biller_file``, ``biller_line``; ``sync_server.recon.billers_import``).

Matching, in set-based SQL that runs the same on SQLite and PostgreSQL:

- a line with a ``bank_txn_id`` matches the payment of that biller with that ``txn`` (whatever its value date);
- a line without one matches by (biller, reference, value date, amount), as many lines as payments: ``n`` lines of
  one such key against ``m`` payments leave ``m - n`` payments missing (the latest by station and seq) or
  ``n - m`` lines too many;
- only payments on value dates that an imported file of their biller covers (between its first and last value date)
  can be missing; the others are awaiting their settlement file (:func:`awaiting`), not discrepancies.

Lines listed more than once for one payment (the same ``bank_txn_id``, or the same key beyond the payments of that
key) are one ``biller_duplicate`` for the group, never also unexpected, and their payment is not missing. Lines of
a group that matches no payment at all are one ``biller_unexpected_in_file`` (``count`` says how many lines). A run
limited to some stations checks only those stations' payments: lines that match nothing belong to no station, so
unexpected and duplicate lines are reported only by a run of all stations.
"""

from __future__ import annotations

from sync_server.recon.kinds import Discrepancy

_REVERSED = """SELECT DISTINCT station_id, ref_txn FROM recon_fact
               WHERE type = 'reversal' AND outcome = 'settled' AND ref_txn IS NOT NULL"""


def _with(context) -> tuple[str, list]:
    """The common table expressions of every biller query, and their parameters (the run's stations)."""
    stations, params = context.station_filter("f.station_id")
    return f"""WITH payment AS (
        SELECT f.station_id, f.seq, f.txn, f.biller, f.ref, f.amount, f.booked_day
        FROM recon_fact f
        LEFT JOIN ({_REVERSED}) r ON r.station_id = f.station_id AND r.ref_txn = f.txn
        WHERE f.type = 'bill_payment' AND f.outcome = 'settled' AND r.ref_txn IS NULL{stations}
    ), txn_group AS (
        SELECT biller, bank_txn_id, count(*) AS n, min(amount_fen) AS low, max(amount_fen) AS high,
               min(reference) AS reference, min(value_date) AS value_date
        FROM biller_line WHERE bank_txn_id IS NOT NULL
        GROUP BY biller, bank_txn_id
    ), by_txn AS (
        SELECT p.station_id, p.seq, p.txn, p.biller, p.ref, p.amount, p.booked_day,
               t.n, t.low, t.high, t.reference AS line_reference, t.value_date AS line_value_date
        FROM payment p JOIN txn_group t ON t.biller = p.biller AND t.bank_txn_id = p.txn
    ), unmatched AS (
        SELECT p.station_id, p.seq, p.txn, p.biller, p.ref, p.amount, p.booked_day,
               CASE WHEN EXISTS (SELECT 1 FROM biller_file bf WHERE bf.biller = p.biller
                                 AND p.booked_day BETWEEN bf.first_value_date AND bf.last_value_date)
                    THEN 1 ELSE 0 END AS covered
        FROM payment p
        WHERE NOT EXISTS (SELECT 1 FROM txn_group t WHERE t.biller = p.biller AND t.bank_txn_id = p.txn)
    ), keyed AS (
        SELECT station_id, seq, txn, biller, ref, amount, booked_day,
               row_number() OVER (PARTITION BY biller, ref, booked_day, amount ORDER BY station_id, seq) AS rn
        FROM unmatched WHERE covered = 1
    ), keyed_count AS (
        SELECT biller, ref, booked_day, amount, count(*) AS m FROM keyed GROUP BY biller, ref, booked_day, amount
    ), key_group AS (
        SELECT biller, reference, value_date, amount_fen, count(*) AS n
        FROM biller_line WHERE bank_txn_id IS NULL
        GROUP BY biller, reference, value_date, amount_fen
    )
    """, params


#: One row per discrepancy: kind, station, seq, txn, biller, reference, amount_fen, expected_fen, day, count,
#: payments. The first two parts look at payments, the last four at lines (a run of all stations only).
_PAYMENT_PARTS = [
    # A covered payment with fewer lines of its key than payments of its key before it.
    """SELECT 'biller_missing_in_file' AS kind, k.station_id, k.seq, k.txn, k.biller, k.ref AS reference,
              k.amount AS amount_fen, CAST(NULL AS BIGINT) AS expected_fen, k.booked_day AS day,
              CAST(NULL AS BIGINT) AS line_count, CAST(NULL AS BIGINT) AS payment_count
       FROM keyed k
       LEFT JOIN key_group g ON g.biller = k.biller AND g.reference = k.ref AND g.value_date = k.booked_day
                            AND g.amount_fen = k.amount
       WHERE k.rn > COALESCE(g.n, 0)""",
    # A payment whose lines (by its txn) say another amount: the first line amount that differs.
    """SELECT 'biller_amount_mismatch', b.station_id, b.seq, b.txn, b.biller, b.ref,
              CASE WHEN b.low <> b.amount THEN b.low ELSE b.high END, b.amount, b.booked_day, NULL, NULL
       FROM by_txn b WHERE b.low <> b.amount OR b.high <> b.amount""",
]
_LINE_PARTS = [
    """SELECT 'biller_duplicate', NULL, NULL, b.txn, b.biller, b.line_reference, b.low, NULL, b.line_value_date,
              b.n, 1
       FROM by_txn b WHERE b.n > 1""",
    """SELECT 'biller_duplicate', NULL, NULL, NULL, g.biller, g.reference, g.amount_fen, NULL, g.value_date,
              g.n, c.m
       FROM key_group g
       JOIN keyed_count c ON c.biller = g.biller AND c.ref = g.reference AND c.booked_day = g.value_date
                         AND c.amount = g.amount_fen
       WHERE g.n > c.m""",
    """SELECT 'biller_unexpected_in_file', NULL, NULL, t.bank_txn_id, t.biller, t.reference, t.low, NULL,
              t.value_date, t.n, 0
       FROM txn_group t
       WHERE NOT EXISTS (SELECT 1 FROM payment p WHERE p.biller = t.biller AND p.txn = t.bank_txn_id)""",
    """SELECT 'biller_unexpected_in_file', NULL, NULL, NULL, g.biller, g.reference, g.amount_fen, NULL,
              g.value_date, g.n, 0
       FROM key_group g
       LEFT JOIN keyed_count c ON c.biller = g.biller AND c.ref = g.reference AND c.booked_day = g.value_date
                              AND c.amount = g.amount_fen
       WHERE c.m IS NULL""",
]


def checks(context) -> list[Discrepancy]:
    """Every billers discrepancy of the run's scope (see the module's docstring for the matching rules)."""
    common, params = _with(context)
    parts = _PAYMENT_PARTS + (_LINE_PARTS if context.scope.stations is None else [])
    found = []
    for (kind, station, seq, txn, biller, reference, amount, expected, day, count, payments) in context.rows(
            common + "\nUNION ALL\n".join(parts), params):
        detail = {}
        if kind == "biller_duplicate":
            detail = {"count": int(count), "payments": int(payments)}
        elif kind == "biller_unexpected_in_file":
            detail = {"count": int(count)}
        found.append(Discrepancy(kind, station=station, seq=None if seq is None else int(seq), txn=txn,
                                 biller=biller, reference=reference, amount_fen=int(amount),
                                 expected_fen=None if expected is None else int(expected), day=day,
                                 detail=detail))
    return found


def awaiting(context) -> list[dict]:
    """Per biller and value date in the run's period: settled payments that no imported settlement file covers yet
    (and no line names by its txn), with their count and amount; ``[]`` when every payment is covered."""
    common, params = _with(context)
    period = []
    if context.scope.date_from is not None:
        period.append(("booked_day >= ?", context.scope.date_from))
    if context.scope.date_to is not None:
        period.append(("booked_day <= ?", context.scope.date_to))
    sql = common + f"""SELECT biller, booked_day, count(*), CAST(sum(amount) AS BIGINT) FROM unmatched
        WHERE covered = 0{''.join(' AND ' + clause for clause, _ in period)}
        GROUP BY biller, booked_day ORDER BY biller, booked_day"""
    return [{"biller": biller, "value_date": day, "payments": int(payments), "amount_fen": int(amount)}
            for biller, day, payments, amount in context.rows(sql, params + [value for _, value in period])]
