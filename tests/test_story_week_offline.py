"""A week without a link (../shared/STORIES.md), the station's side: a storm takes the mast down for six days.

The station keeps serving within its limits; past 72 hours without a sync it refuses debits (withdrawals,
transfers, account-paid bills) with a clear reason and still takes deposits and cash bill payments.
"""

from __future__ import annotations

from datetime import timedelta

from station.db import JournalEntry, Operation
from station.journal import audit_journal
from station.simulate import simulate


def test_six_days_offline(make_station, clock):
    st = make_station("ST-0099", customers=80)
    with st.bound():
        # The bank sized this village's limits for a long outage: exposure is not what stops it here.
        st.set_setting("policy", {"max_unsynced_fen": 10**9, "max_unsynced_count": 10**6})
        started = JournalEntry.get_by_id(1).recorded_at
        outcomes = simulate(st, 450, seed=11, start=clock.now)
        last = JournalEntry.select().order_by(JournalEntry.seq.desc()).first().recorded_at
        assert last - started > timedelta(days=5), outcomes

        cutoff = started + timedelta(hours=72)
        debits = Operation.select().where(Operation.debit_fen > 0)
        assert debits.count() > 100
        assert all(op.created_at <= cutoff for op in debits)
        late = Operation.select().where(Operation.created_at > cutoff)
        assert {op.type for op in late} >= {"deposit", "bill_payment"}
        assert all(op.details.get("funding") == "cash" for op in late if op.type == "bill_payment")
        assert outcomes["refused:offline_too_long"] > 50
        assert outcomes["day_close"] >= 5
        assert audit_journal(st).problems == []
