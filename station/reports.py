"""What the station reports about itself: the journal and the day in figures (``station summary``)."""

from __future__ import annotations

from peewee import fn

from station.business_day import drawer_cash
from station.context import Station, bound_station
from station.db import JournalEntry, Operation
from station.journal import journal_head


@bound_station
def summarise(st: Station) -> dict:
    """Entries by type, and count and total amount (fen) of customer operations by type and status."""
    entries = dict(
        JournalEntry.select(JournalEntry.type, fn.COUNT(JournalEntry.seq)).group_by(JournalEntry.type).tuples()
    )
    operations = {}
    query = Operation.select(
        Operation.type, Operation.status, fn.COUNT(Operation.txn), fn.SUM(Operation.amount_fen)
    ).group_by(Operation.type, Operation.status)
    for op_type, status, count, total in query.tuples():
        operations.setdefault(op_type, {})[status] = {"count": count, "amount_fen": total}
    head_seq, _ = journal_head(st)
    return {
        "station": st.station_id,
        "head_seq": head_seq,
        "entries_by_type": entries,
        "operations": operations,
        "drawer_cash_fen": drawer_cash(st),
    }
