"""Worked examples of the central ledger: cancellations, reversals, a PIN lock, and restored server state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sync_support import append_only_lifted, enrolled_station, open_counter, server_db

from station import agents, errors, operations, receipts
from station.db import Customer, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.journal import journal_head
from station.sync import sync_once
from sync_server.admin import AdminError, add_station, execute_due_transfers
from sync_server.book import ledger_totals
from sync_server.db import Account, Entry, Transfer
from sync_server.db import Customer as ServerCustomer
from sync_server.db import Station as ServerStation

ACCOUNT = "DM00010003"


def counter_with_a_payee(st):
    """The counter open, the customer authenticated, and a payee they know: ready to transfer."""
    agent, _ = open_counter(st)
    customer = Customer.get(Customer.account_id == ACCOUNT)
    return agent, agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN), customer.payees.get()


def balance(account_id=ACCOUNT):
    server_db()
    return Account.get_by_id(account_id).balance_fen


def test_cancelled_transfer_and_reversed_withdrawal_leave_the_balance_whole(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        before = balance()
        agent, supervisor = open_counter(st)
        customer = Customer.get(Customer.account_id == ACCOUNT)
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        payee = customer.payees.get()
        sent = operations.transfer(st, agent, auth, payee.account, payee.name, 30_000, receipts.new_txn_id())
        operations.cancel_transfer(st, agent, auth, sent.txn, receipts.new_txn_id())
        paid = operations.withdraw_cash(st, agent, auth, 20_000, receipts.new_txn_id())
        operations.reverse(st, supervisor, paid.txn, receipts.new_txn_id(), "keyed wrong amount")
        kept = operations.transfer(st, agent, auth, payee.account, payee.name, 10_000, receipts.new_txn_id())

        result = sync_once(st)
        assert result.rejected == {}
        fee = st.policy["fees"]["transfer"]
        assert balance() == before - 10_000 - fee
        server_db()
        statuses = {t.txn: t.status for t in Transfer.select()}
        assert statuses == {sent.txn: "cancelled", kept.txn: "pending"}
        assert execute_due_transfers() == 1
        assert Transfer.get(Transfer.txn == kept.txn).status == "executed"
        assert balance("external:ST-0001") == 10_000
        assert balance("transfers:ST-0001") == 0
        assert sum(ledger_totals().values()) == 0
        assert Operation.get_by_id(sent.txn).status == "cancelled"
        assert Operation.get_by_id(paid.txn).status == "reversed"
        assert Operation.get_by_id(kept.txn).status == "settled"


def test_a_customer_locked_by_wrong_pins_stays_locked_after_sync(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        agent, _ = open_counter(st)
        customer = Customer.get(Customer.account_id == ACCOUNT)
        for _ in range(3):
            with pytest.raises((errors.WrongCustomerPin, errors.CustomerLocked)):
                agents.authenticate_customer(st, agent, customer, "000000")
        sync_once(st)
        assert Customer.get(Customer.account_id == ACCOUNT).status == "locked"
        assert Customer.get(Customer.account_id == ACCOUNT).allowance_fen == 0
        server_db()
        assert ServerCustomer.get_by_id(ACCOUNT).status == "locked"


def test_an_enrolled_station_id_cannot_get_a_second_device(server, tmp_path, clock):
    enrolled_station(server, tmp_path, "ST-0001", clock)
    server_db()
    with pytest.raises(AdminError, match="replacement device gets a new id"):
        add_station("ST-0001", "again")


def test_station_resends_what_a_restored_server_lost(server, tmp_path, clock):
    """The bank restored its database from an older backup: the station sends the missing entries again."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    open_counter(st)
    sync_once(st)
    head_seq, _ = journal_head(st)
    server_db()
    # Simulate the restore: the server forgets everything after seq 1 (a restore writes around the triggers).
    from sync_server.db import Posting

    with append_only_lifted(server_db()):
        Entry.delete().where((Entry.station_id == "ST-0001") & (Entry.seq > 1)).execute()
        Posting.delete().where((Posting.station_id == "ST-0001") & (Posting.seq > 1)).execute()
    first = Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == 1))
    from station.protocol.tokens import chain_hash

    ServerStation.update(acked_seq=1, head=chain_hash(first.token)).where(
        ServerStation.station_id == "ST-0001").execute()
    Account.update(balance_fen=0).where(Account.account_id == "cash:ST-0001").execute()
    operations.deposit_cash(st, *_auth(st), 10_000, receipts.new_txn_id())
    result = sync_once(st)
    head_seq, _ = journal_head(st)
    assert result.acked_seq == head_seq and result.pending == 0
    server_db()
    assert Entry.select().where(Entry.station_id == "ST-0001").count() == head_seq


def _auth(st):
    with st.bound():
        agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        customer = Customer.get(Customer.account_id == ACCOUNT)
        return agent, agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)


def test_a_transfer_to_a_payee_blocked_meanwhile_is_rejected_and_the_block_comes_down(server, tmp_path, clock):
    from sync_server.admin import block_payee

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        before = balance()
        agent, auth, payee = counter_with_a_payee(st)
        sent = operations.transfer(st, agent, auth, payee.account, payee.name, 30_000, receipts.new_txn_id())
        server_db()
        block_payee(payee.account, "reported fraud")
        result = sync_once(st)
        assert result.rejected == {sent.seq: "payee_blocked"}
        op = Operation.get_by_id(sent.txn)
        assert (op.status, op.outcome_reason) == ("rejected", "payee_blocked")
        assert balance() == before
        with pytest.raises(errors.PayeeBlocked):
            operations.transfer(st, agent, auth, payee.account, payee.name, 10_000, receipts.new_txn_id())


def test_a_transfer_whose_payee_is_blocked_during_its_delay_is_not_executed(server, tmp_path, clock):
    from sync_server.admin import block_payee

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        agent, auth, payee = counter_with_a_payee(st)
        sent = operations.transfer(st, agent, auth, payee.account, payee.name, 30_000, receipts.new_txn_id())
        assert sync_once(st).rejected == {}
        server_db()
        block_payee(payee.account, "reported fraud")
        assert execute_due_transfers() == 0
        assert Transfer.get(Transfer.txn == sent.txn).status == "pending"
        assert balance("transfers:ST-0001") == 30_000


def test_a_card_moved_to_another_account_by_the_bank_follows_the_downlink(server, tmp_path, clock):
    from sync_server.db import Customer as BankCustomer

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        card = Customer.get(Customer.account_id == ACCOUNT).card_number
        server_db()
        BankCustomer.update(card_number=None).where(BankCustomer.account_id == ACCOUNT).execute()
        BankCustomer.update(card_number=card).where(BankCustomer.account_id == "DM00010001").execute()
        sync_once(st)
        assert Customer.get(Customer.account_id == "DM00010001").card_number == card
        assert Customer.get(Customer.account_id == ACCOUNT).card_number is None


def test_a_reversal_the_bank_refuses_leaves_the_original_standing_at_the_station(server, tmp_path, clock):
    from sync_server.db import Hold

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        agent, supervisor = open_counter(st)
        customer = Customer.get(Customer.account_id == ACCOUNT)
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        paid_in = operations.deposit_cash(st, agent, auth, 20_000, receipts.new_txn_id())
        assert sync_once(st).rejected == {}
        server_db()
        # Meanwhile the rest of the balance is held for another station: taking the deposit back cannot fit.
        mine = Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == ACCOUNT)).amount_fen
        Hold.create(station_id="ST-0002", account_id=ACCOUNT, amount_fen=balance() - mine, updated_at="now")
        undo = operations.reverse(st, supervisor, paid_in.txn, receipts.new_txn_id(), "keyed twice")
        assert Operation.get_by_id(paid_in.txn).status == "reversed"

        assert sync_once(st).rejected == {Operation.get_by_id(undo.txn).seq: "insufficient_funds"}
        assert Operation.get_by_id(undo.txn).status == "rejected"
        assert Operation.get_by_id(paid_in.txn).status == "settled"


def test_transfers_stored_by_the_previous_release_execute_when_due_not_a_millisecond_before(server, tmp_path, clock):
    """``execute_after`` written as the previous release did (``+00:00``, microseconds or none) beside new rows."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        agent, auth, payee = counter_with_a_payee(st)
        sent = [operations.transfer(st, agent, auth, payee.account, payee.name, 1_000, receipts.new_txn_id()).txn
                for _ in range(3)]
        assert sync_once(st).rejected == {}
    server_db()
    due_at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    stored = {sent[0]: "2026-11-30T09:00:00+00:00",  # no fraction: due at 09:00:00.000
              sent[1]: "2026-11-30T09:00:00.000400+00:00",  # due 0.4 ms later
              sent[2]: "2026-11-30T09:00:00.001Z"}  # this release's form
    for txn, text in stored.items():
        Transfer.update(execute_after=text).where(Transfer.txn == txn).execute()

    def executed():
        return {t.txn for t in Transfer.select().where(Transfer.status == "executed")}

    assert execute_due_transfers(due_at - timedelta(milliseconds=1)) == 0
    assert execute_due_transfers(due_at) == 1 and executed() == {sent[0]}
    assert execute_due_transfers(due_at + timedelta(microseconds=399)) == 0
    assert execute_due_transfers(due_at + timedelta(microseconds=400)) == 1 and executed() == set(sent[:2])
    assert execute_due_transfers(due_at + timedelta(milliseconds=1)) == 1 and executed() == set(sent)
    assert Transfer.get(Transfer.txn == sent[2]).executed_at == "2026-11-30T09:00:00.001Z"
