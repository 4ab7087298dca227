"""A week without a link: about 2,400 entries drain in several batches, exactly once."""

from __future__ import annotations

import pytest
from sync_support import enrolled_station, server_db

from station import agents, business_day, errors, operations, receipts
from station.db import Customer, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.journal import journal_head
from station.sync import build_batch, station_status, sync_once
from sync_server.book import ledger_totals
from sync_server.db import Account, Entry, Posting


def test_a_week_offline_drains_in_batches_exactly_once(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        st.config["sync"] = {"max_entries": 500}
        for agent_id, name, role, pin in DEMO_AGENTS:
            agents.add_agent(st, agent_id, name, role, pin)
        customers = list(Customer.select().order_by(Customer.account_id))
        opening = {c.account_id: c.balance_fen for c in customers}
        session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        business_day.open_day(st, session, {"10000": 300})
        deposited = dict.fromkeys(opening, 0)
        refused_debits = 0
        for index in range(2_400):
            clock.advance(minutes=4)  # 2,400 customers in 160 hours
            if index % 150 == 0:
                session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
            customer = customers[index % len(customers)]
            auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
            if index % 40 == 39:
                try:
                    operations.withdraw_cash(st, session, auth, 1_000, receipts.new_txn_id())
                    deposited[customer.account_id] -= 1_000
                except errors.OfflineTooLong:
                    refused_debits += 1
                continue
            operations.deposit_cash(st, session, auth, 10_000, receipts.new_txn_id())
            deposited[customer.account_id] += 10_000
        assert refused_debits > 0  # past 72 h, debits are refused; deposits still work

        head_seq, _ = journal_head(st)
        pending = station_status(st)["pending_entries"]
        assert pending >= 2_300  # the refused debits recorded nothing
        sealed = build_batch(st)
        assert sealed.last - sealed.first + 1 == 500
        assert len(sealed.body) / 500 <= 120  # bytes per entry on the wire

        result = sync_once(st)
        assert result.batches >= 5 and result.pending == 0 and result.acked_seq == head_seq
        assert result.rejected == {}
        assert sync_once(st).batches == 0
        assert Operation.select().where(Operation.status != "settled").count() == 0

        server_db()
        assert Entry.select().where(Entry.station_id == "ST-0001").count() == head_seq
        assert sum(ledger_totals().values()) == 0
        for account_id, balance in opening.items():
            assert Account.get_by_id(account_id).balance_fen == balance + deposited[account_id]
        ledger_cash = sum(p.amount_fen for p in Posting.select().where(Posting.account_id == "cash:ST-0001"))
        assert ledger_cash == business_day.drawer_cash(st)


@pytest.mark.parametrize("max_entries", [1, 7])
def test_small_caps_still_drain_everything(server, tmp_path, clock, max_entries):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    for agent_id, name, role, pin in DEMO_AGENTS:
        agents.add_agent(st, agent_id, name, role, pin)
    st.config["sync"] = {"max_entries": max_entries}
    result = sync_once(st)
    assert result.batches == -(-2 // max_entries) and result.pending == 0


def test_a_drain_carries_the_full_downlink_once_with_its_last_batch(server, tmp_path, clock, monkeypatch):
    import station.sync as sync_module

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        for agent_id, name, role, pin in DEMO_AGENTS:
            agents.add_agent(st, agent_id, name, role, pin)
        session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        business_day.open_day(st, session, {"10000": 300})
        customer = Customer.get(Customer.account_id == "DM00010001")
        auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
        operations.withdraw_cash(st, session, auth, 30_000, receipts.new_txn_id())
        for _ in range(6):
            operations.deposit_cash(st, session, auth, 10_000, receipts.new_txn_id())
        st.config["sync"] = {"max_entries": 3}
        seen = []
        real_open = sync_module.open_answer

        def spying_send(station, sealed, http=None, *, more=False, **options):
            seen.append(more)
            return real_send(station, sealed, http, more=more, **options)

        def spying_open(station, answer):
            ack = real_open(station, answer)
            seen.append("customers" in ack.downlink)
            return ack

        real_send = sync_module.send_batch
        monkeypatch.setattr(sync_module, "send_batch", spying_send)
        monkeypatch.setattr(sync_module, "open_answer", spying_open)
        result = sync_once(st)
        assert result.batches == 4 and result.pending == 0
        assert seen == [True, False, True, False, True, False, False, True]
        # The allowance came back with the last batch, as of the last acked seq: the withdrawal is consumed.
        customer = Customer.get(Customer.account_id == "DM00010001")
        assert customer.allowance_seq == result.acked_seq and customer.allowance_fen == 100_000
        server_db()
        from sync_server.db import Hold

        assert Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == "DM00010001")).amount_fen == 100_000
