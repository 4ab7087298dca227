"""End to end over real HTTP on loopback: enroll, record offline, sync, the ledger equals the journal."""

from __future__ import annotations

import pytest
from sync_support import enrolled_station, server_db

from station import agents, business_day, operations, receipts
from station.db import Customer, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.journal import journal_head
from station.sync import station_status, sync_once
from sync_server.book import ledger_totals
from sync_server.db import Account, Entry, Hold, Posting


def add_demo_agents(st):
    for agent_id, name, role, pin in DEMO_AGENTS:
        agents.add_agent(st, agent_id, name, role, pin)
    return agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])


def customer_auth(st, session, account_id):
    with st.bound():
        customer = Customer.get(Customer.account_id == account_id)
        return agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)


def test_enroll_record_offline_sync_ledger_equals_journal(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        assert Customer.select().count() == 20
        first = Customer.get(Customer.account_id == "DM00010003")
        assert first.allowance_fen == 100_000 and first.balance_fen > 0

        agent = add_demo_agents(st)
        business_day.open_day(st, agent, {"10000": 300})
        auth = customer_auth(st, agent, "DM00010003")
        withdrawal = operations.withdraw_cash(st, agent, auth, 50_000, receipts.new_txn_id())
        operations.deposit_cash(st, agent, auth, 20_000, receipts.new_txn_id())
        payee = first.payees.get()
        operations.transfer(st, agent, auth, payee.account, payee.name, 10_000, receipts.new_txn_id())
        operations.pay_bill(st, agent, None, "ELEC-SGCC", "1234567890", 8_800, receipts.new_txn_id())
        assert Operation.get_by_id(withdrawal.txn).status == "recorded"
        before = first.balance_fen

        result = sync_once(st)
        head_seq, _ = journal_head(st)
        assert result.acked_seq == head_seq and result.pending == 0 and result.rejected == {}
        assert {op.status for op in Operation.select()} == {"settled"}
        status = station_status(st)
        assert status["pending_entries"] == 0 and status["last_sync_at"]

        server_db()
        assert Entry.select().where(Entry.station_id == "ST-0001").count() == head_seq
        totals = ledger_totals()
        assert sum(totals.values()) == 0
        transfer_fee = st.policy["fees"]["transfer"]
        expected = before - 50_000 + 20_000 - 10_000 - transfer_fee
        assert Account.get_by_id("DM00010003").balance_fen == expected
        assert Customer.get(Customer.account_id == "DM00010003").balance_fen == expected
        assert Account.get_by_id("cash:ST-0001").balance_fen == business_day.drawer_cash(st)
        # The hold was consumed by the debits, then refreshed to the allowance again.
        assert Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == "DM00010003")).amount_fen == 100_000
        for txn_seq in Posting.select(Posting.seq).where(Posting.station_id == "ST-0001").distinct():
            legs = Posting.select().where((Posting.station_id == "ST-0001") & (Posting.seq == txn_seq.seq))
            assert sum(p.amount_fen for p in legs) == 0


@pytest.mark.parametrize("code, message", [
    ("AAAA-BBBB-CCCC", "No such enrollment code"),
])
def test_enroll_with_a_wrong_code_is_refused(server, tmp_path, clock, code, message):
    from station.sync import EnrollError, enroll_station

    with pytest.raises(EnrollError, match=message):
        enroll_station(tmp_path / "st", server.url, code, clock=clock)
    assert not (tmp_path / "st" / "config.json").exists()


def test_simulate_drives_the_downlinked_customers_and_everything_reaches_the_bank(server, tmp_path, clock):
    from station.simulate import simulate

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        outcomes = simulate(st, 150, seed=4)
        assert outcomes.get("withdrawal", 0) > 0
        result = sync_once(st)
        head_seq, _ = journal_head(st)
        assert result.acked_seq == head_seq and result.pending == 0
        server_db()
        assert Entry.select().where(Entry.station_id == "ST-0001").count() == head_seq
        assert sum(ledger_totals().values()) == 0
        assert Account.get_by_id("cash:ST-0001").balance_fen == business_day.drawer_cash(st)
        assert Operation.select().where(Operation.status == "recorded").count() == 0
