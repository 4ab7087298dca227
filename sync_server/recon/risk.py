"""Risk: money the bank may have to recover, and stations that do not keep to the rules.

- ``rejected_offline_debit``: a withdrawal the station paid out in cash that the bank then rejected (whatever the
  reason), unless a settled reversal of it shows the cash was taken back: money to recover;
- ``allowance_exceeded``: a debit that moved no cash (a transfer, a bill paid from the account) that the bank
  rejected as beyond what it allowed the station offline (``not_authorized``, ``over_exposure_limit``,
  ``over_daily_limit``, ``over_transaction_limit``), under a real-time authorization that expired before the
  entry came and no longer fitted (``authorization_expired``), or a transfer past the fraud warning without it or
  the supervisor it needed (``fraud_warning_skipped``, ``supervisor_approval_missing``): the customer believes it
  sent. A wealth-product order the bank refused is neither (it moved no cash, and its receipt already says the
  bank refused it and the money is released);
- ``clock_offset``: the station's clock, as measured at its last sync, is further from the bank's than
  ``recon.clock_offset_max_ms``;
- ``clock_corrected``: every clock correction the bank acknowledged (the technician's ``station clock accept``
  for a clock that ran ahead and was set right): a root-on-device action, listed so that a person checks it
  (docs/threat-model.md);
- ``reversal_mismatch``: a settled reversal or cancellation that does not match its original: none at the
  station before it, an original of a type it cannot undo, another seq or amount or account than the original's,
  or an original already undone by an earlier one.
"""

from __future__ import annotations

from station.protocol.entry_types import EntryType, originals_of
from sync_server.recon.kinds import N_, Discrepancy

ALLOWANCE_REASONS = ("not_authorized", "over_exposure_limit", "over_daily_limit", "over_transaction_limit",
                     "authorization_expired", "fraud_warning_skipped", "supervisor_approval_missing")


def _in(values) -> str:
    return ", ".join(f"'{value}'" for value in sorted(values))


def rejected_debits(context) -> list[Discrepancy]:
    rows = context.rows("""
        SELECT f.station_id, f.seq, f.txn, f.account, f.amount, f.reason, f.day FROM recon_fact f
        WHERE f.type = 'withdrawal' AND f.outcome = 'rejected' AND f.amount IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM recon_fact r WHERE r.station_id = f.station_id AND r.type = 'reversal'
                          AND r.outcome = 'settled' AND r.ref_txn = f.txn AND r.seq > f.seq)""")
    return [Discrepancy("rejected_offline_debit", station=station_id, seq=seq, txn=txn, account=account,
                        amount_fen=amount, day=day, detail={"reason": reason or "-"})
            for station_id, seq, txn, account, amount, reason, day in rows]


def allowance_exceeded(context) -> list[Discrepancy]:
    rows = context.rows(f"""
        SELECT station_id, seq, txn, account, amount + COALESCE(fee, 0), reason, day FROM recon_fact
        WHERE outcome = 'rejected' AND amount IS NOT NULL AND reason IN ({_in(ALLOWANCE_REASONS)})
          AND (type = 'transfer' OR (type = 'bill_payment' AND funding = 'account'))""")
    return [Discrepancy("allowance_exceeded", station=station_id, seq=seq, txn=txn, account=account,
                        amount_fen=amount, day=day, detail={"reason": reason})
            for station_id, seq, txn, account, amount, reason, day in rows]


def clock_offsets(context) -> list[Discrepancy]:
    limit = int(context.recon_policy["clock_offset_max_ms"])
    where, params = context.station_filter()
    rows = context.rows(f"""
        SELECT station_id, clock_offset_ms FROM station
        WHERE clock_offset_ms IS NOT NULL AND (clock_offset_ms > ? OR clock_offset_ms < ?){where}""",
                        [limit, -limit, *params])
    return [Discrepancy("clock_offset", station=station_id, detail={
        "offset_ms": offset, "minutes": round(abs(offset) / 60_000, 1), "limit": round(limit / 60_000, 1),
        "direction": "behind" if offset > 0 else "ahead"}) for station_id, offset in rows]


def clock_corrections(context) -> list[Discrepancy]:
    rows = context.rows("""
        SELECT station_id, seq, day, behind_ms, note FROM recon_fact
        WHERE type = 'clock_corrected' AND outcome = 'acknowledged'""")
    # The technician's words go in ``note``, never ``reason`` (which the report reads as a message to translate).
    return [Discrepancy("clock_corrected", station=station_id, seq=seq, day=day, detail={
        "behind_ms": behind, "minutes": round((behind or 0) / 60_000, 1), "note": note or "-"})
        for station_id, seq, day, behind, note in rows]


NO_ORIGINAL = N_("no earlier operation of the station has that txn")
NOT_UNDOABLE = N_("the original is a {original_type}, which it cannot undo")
OTHER_SEQ = N_("it names seq {ref_seq} while the original is seq {original_seq}")
OTHER_AMOUNT = N_("it names {amount} while the original was {expected}")
OTHER_ACCOUNT = N_("it names account {account} while the original's is {original_account}")
UNDONE_TWICE = N_("the original was already undone by seq {first_undo}")


def reversal_mismatches(context) -> list[Discrepancy]:
    undoable = {str(t): _in(originals_of(t)) for t in (EntryType.REVERSAL, EntryType.TRANSFER_CANCEL)}
    rows = context.rows(f"""
        SELECT u.station_id, u.seq, u.type, u.txn, u.ref_txn, u.ref_seq, u.amount, u.account, u.day,
               o.seq, o.type, o.amount, o.account,
               (SELECT MIN(v.seq) FROM recon_fact v WHERE v.station_id = u.station_id AND v.ref_txn = u.ref_txn
                  AND v.outcome = 'settled' AND v.type IN ('reversal', 'transfer_cancel') AND v.seq < u.seq)
        FROM recon_fact u
        LEFT JOIN recon_fact o ON o.station_id = u.station_id AND o.txn = u.ref_txn AND o.seq < u.seq
             AND o.type NOT IN ('reversal', 'transfer_cancel')
        WHERE u.outcome = 'settled' AND u.type IN ('reversal', 'transfer_cancel')
          AND (o.seq IS NULL
               OR (u.type = 'reversal' AND o.type NOT IN ({undoable["reversal"]}))
               OR (u.type = 'transfer_cancel' AND o.type NOT IN ({undoable["transfer_cancel"]}))
               OR (u.ref_seq IS NOT NULL AND u.ref_seq <> o.seq)
               OR (u.amount IS NOT NULL AND (o.amount IS NULL OR u.amount <> o.amount))
               OR (u.account IS NOT NULL AND (o.account IS NULL OR u.account <> o.account))
               OR EXISTS (SELECT 1 FROM recon_fact v WHERE v.station_id = u.station_id AND v.ref_txn = u.ref_txn
                          AND v.outcome = 'settled' AND v.type IN ('reversal', 'transfer_cancel')
                          AND v.seq < u.seq))""")
    found = []
    for (station_id, seq, entry_type, txn, ref_txn, ref_seq, amount, account, day, original_seq, original_type,
         original_amount, original_account, first_undo) in rows:
        detail = {"type": entry_type, "ref_txn": ref_txn, "ref_seq": ref_seq, "original_seq": original_seq,
                  "original_type": original_type, "original_account": original_account, "first_undo": first_undo,
                  "amount_fen": amount, "expected_fen": original_amount}
        if original_seq is None:
            reason = NO_ORIGINAL
        elif first_undo is not None:
            reason = UNDONE_TWICE
        elif original_type not in {str(t) for t in originals_of(entry_type)}:
            reason = NOT_UNDOABLE
        elif ref_seq is not None and ref_seq != original_seq:
            reason = OTHER_SEQ
        elif amount is not None and amount != original_amount:
            reason = OTHER_AMOUNT
        else:
            reason = OTHER_ACCOUNT
        found.append(Discrepancy("reversal_mismatch", station=station_id, seq=seq, txn=txn, account=account,
                                 amount_fen=amount, expected_fen=original_amount, day=day,
                                 detail={**detail, "reason": reason}))
    return found


def checks(context) -> list[Discrepancy]:
    """Every risk discrepancy of the run's scope."""
    return (rejected_debits(context) + allowance_exceeded(context) + clock_offsets(context)
            + clock_corrections(context) + reversal_mismatches(context))
