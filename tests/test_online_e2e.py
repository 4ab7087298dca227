"""Online operations end to end: an enrolled station and the real sync server on loopback (SQLite and, with
TEST_DATABASE_URL, PostgreSQL). The bank authorizes beyond the offline allowance, the entry is pushed at once and
settles, a transfer beyond the balance is refused, the live balance counts what the bank has not received yet.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import FakeClock
from sync_support import enrolled_station, open_counter, server_db

from station import agents, errors, limits, online, operations, receipts
from station.db import Customer, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.link import note_failure
from station.protocol.tokens import unverified_payload
from station.sync import pending_entries

PAYEE = ("6222000000000000001", "王小明")


@pytest.fixture
def now_clock():
    """The bank checks a request's time against its own: the station's clock reads the real time here."""
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def counter(server, tmp_path, now_clock):
    st = enrolled_station(server, tmp_path, "ST-0001", now_clock)
    agent, _ = open_counter(st)
    with st.bound():
        yield st, agent
    st.close()


def with_balance(rich: bool) -> Customer:
    """A card customer with more than 21,000 yuan (``rich``) or less than 10,000."""
    query = Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id)
    return next(c for c in query if (c.balance_fen > 2_100_000 if rich else c.balance_fen < 1_000_000))


def transfer_online(st, agent, who, yuan):
    txn = receipts.new_txn_id()
    grant = online.authorize(st, "transfer", txn=txn, agent=agent.agent_id, account=who.account_id,
                             amount=yuan * 100, fee=operations.quote_fee(st, "transfer"), payee_account=PAYEE[0])
    auth = agents.authenticate_customer(st, agent, who, DEMO_CUSTOMER_PIN)
    # A new payee: past the fraud warning, from 10,000 yuan with the supervisor's PIN (the bank checks who).
    supervisor_id, _, _, supervisor_pin = DEMO_AGENTS[1]
    approval = (operations.approve_past_warning(st, agent, supervisor_id, supervisor_pin)
                if yuan * 100 >= st.policy["fraud_supervisor_fen"] else None)
    return grant, operations.transfer(st, agent, auth, *PAYEE, str(yuan), txn, fraud_warning_confirmed=True,
                                      approval=approval, authorization=grant)


def test_a_20000_yuan_transfer_is_authorized_recorded_pushed_and_settled(counter):
    st, agent = counter
    rich = with_balance(rich=True)
    assert limits.offline_available(st, rich) < 2_000_200
    grant, receipt = transfer_online(st, agent, rich, 20_000)
    assert grant.granted and unverified_payload(receipt.token)["auth"] == grant.auth_id
    assert grant.execute_after is not None
    assert online.push_now(st) is True
    assert pending_entries(st) == 0
    op = Operation.get_by_id(receipt.txn)
    assert (op.status, op.outcome_reason) == ("settled", None)


def test_a_transfer_beyond_the_balance_is_refused_and_records_nothing(counter):
    st, agent = counter
    poor = with_balance(rich=False)
    with pytest.raises(errors.BankInsufficientFunds):
        online.authorize(st, "transfer", txn=receipts.new_txn_id(), agent=agent.agent_id, account=poor.account_id,
                         amount=1_500_000, fee=200, payee_account=PAYEE[0])
    assert Operation.select().count() == 0


def test_the_live_balance_online_and_the_snapshot_offline(counter):
    st, agent = counter
    rich = with_balance(rich=True)
    before = rich.balance_fen
    auth = agents.authenticate_customer(st, agent, rich, DEMO_CUSTOMER_PIN)
    operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())  # offline, not pushed yet
    txn = receipts.new_txn_id()
    grant = online.authorize(st, "balance_enquiry", txn=txn, agent=agent.agent_id, account=rich.account_id)
    balance = operations.balance_enquiry(st, agent, auth, txn, authorization=grant)
    # The bank does not have the withdrawal yet: its balance less the station's debit since.
    assert balance.online and balance.balance_fen == before - 50_000
    assert online.push_now(st) is True
    note_failure(st, "probe", "refused")
    offline = operations.balance_enquiry(st, agent, auth, receipts.new_txn_id())
    assert not offline.online and offline.balance_fen == before - 50_000
    assert offline.balance_as_of is not None


def test_the_push_refreshes_only_the_customer_it_names(counter, server):
    """The answer to a push is a partial downlink: the bank refreshes the hold of the customer the operation
    touched, the station updates that customer and leaves every other customer's allowance as it was."""
    from sync_server.db import Hold

    st, agent = counter
    spender, other = list(Customer.select().where(Customer.allowance_fen > 0).order_by(Customer.id))[:2]
    auth = agents.authenticate_customer(st, agent, spender, DEMO_CUSTOMER_PIN)
    operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())  # within the offline allowance
    # Another station's sync would change the other customer's hold: here it is changed by hand at the bank.
    server_db()
    Hold.update(amount_fen=12_300).where((Hold.station_id == "ST-0001") & (Hold.account_id == other.account_id)
                                         ).execute()
    other_before = Customer.get_by_id(other.id).allowance_fen
    assert online.push_now(st) is True
    assert pending_entries(st) == 0
    refreshed = Customer.get_by_id(spender.id)
    assert refreshed.allowance_seq == st.setting("acked_seq")
    assert Customer.get_by_id(other.id).allowance_fen == other_before  # not in the partial downlink
    assert limits.offline_available(st, refreshed) == refreshed.allowance_fen
    assert Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == other.account_id)).amount_fen == 12_300
    # The next full sync refreshes every customer again and sends them all, with the bank's holds.
    from station.sync import sync_once

    sync_once(st)
    server_db()
    held = Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == other.account_id)).amount_fen
    assert held != 12_300 and Customer.get_by_id(other.id).allowance_fen == held
