"""Offline allowances are holds: one customer served offline at two stations never ends below zero centrally."""

from __future__ import annotations

import pytest
from stdnum import luhn
from sync_support import append_forged_entry, enrolled_station, server_db
from ui_helpers import identity_present

from station import agents, business_day, errors, operations, receipts
from station.db import Customer, Operation
from station.demo import DEMO_AGENTS
from station.sync import sync_once
from sync_server.admin import import_customers, parse_customers_csv
from sync_server.book import ledger_totals
from sync_server.db import Account, Hold

SHARED = "SHARED0001"
CARD = "6217009900000000"  # completed with its Luhn digit below


def shared_customer_csv():
    card = CARD[:-1] + luhn.calc_check_digit(CARD[:-1])
    return (f"account_id,name,card_number,passbook_number,pin,balance,home_stations\n"
            f"{SHARED},王大爷,{card},,246810,1500,ST-0001;ST-0002\n")


def login(st):
    for agent_id, name, role, pin in DEMO_AGENTS:
        agents.add_agent(st, agent_id, name, role, pin)
    session = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
    business_day.open_day(st, session, {"10000": 300})
    return session


def auth_shared(st, session):
    with st.bound():
        customer = Customer.get(Customer.account_id == SHARED)
    return agents.authenticate_customer(st, session, customer, "246810")


def central_balance():
    server_db()
    return Account.get_by_id(SHARED).balance_fen


def test_one_customer_at_two_stations_never_below_zero(server, tmp_path, clock):
    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    two = enrolled_station(server, tmp_path, "ST-0002", clock)
    sync_once(one)  # a refresh after the other station's hold was placed
    server_db()
    holds = {h.station_id: h.amount_fen for h in Hold.select().where(Hold.account_id == SHARED)}
    assert holds == {"ST-0001": 100_000, "ST-0002": 50_000}
    assert sum(holds.values()) <= central_balance()

    # Both stations go offline and each pays out what its allowance allows.
    s1, s2 = login(one), login(two)
    operations.withdraw_cash(one, s1, auth_shared(one, s1), 100_000, receipts.new_txn_id(),
                             identity=identity_present(one))
    with pytest.raises(errors.OverOfflineAllowance):
        operations.withdraw_cash(two, s2, auth_shared(two, s2), 60_000, receipts.new_txn_id(),
                                 identity=identity_present(two))
    operations.withdraw_cash(two, s2, auth_shared(two, s2), 50_000, receipts.new_txn_id())

    for st in (two, one):
        result = sync_once(st)
        assert result.rejected == {}
        assert central_balance() >= 0
    assert central_balance() == 0
    server_db()
    assert {h.amount_fen for h in Hold.select().where(Hold.account_id == SHARED)} == {0}
    assert sum(ledger_totals().values()) == 0
    with one.bound():
        assert Customer.get(Customer.account_id == SHARED).allowance_fen == 0
        clock.advance(days=1)  # a new day: the daily cap no longer stands in the way, the allowance does
        s1 = agents.login_agent(one, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        with pytest.raises(errors.OverOfflineAllowance):
            operations.withdraw_cash(one, s1, auth_shared(one, s1), 1_000, receipts.new_txn_id())


def test_a_debit_beyond_the_hold_is_rejected_centrally(server, tmp_path, clock):
    """A station that signs more than its allowance (a tampered device) is not authorized: the customer's balance
    beyond the hold is never touched, and the cash paid out becomes a reconciliation item."""
    from sync_server.db import ReconItem

    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    session = login(one)
    operations.withdraw_cash(one, session, auth_shared(one, session), 100_000, receipts.new_txn_id(),
                             identity=identity_present(one))
    with one.db.atomic():
        forged = append_forged_entry(one, "withdrawal", one.now(),
                              {"agent": "A01", "account": SHARED, "amount": 100_000}, txn=receipts.new_txn_id())
    result = sync_once(one)
    assert result.rejected == {forged.seq: "not_authorized"}
    assert central_balance() == 50_000
    with one.bound():
        assert {op.status for op in Operation.select()} == {"settled"}
    server_db()
    assert [(r.seq, r.kind, r.account_id, r.amount_fen, r.reason) for r in ReconItem.select()] == [
        (forged.seq, "rejected_offline_debit", SHARED, 100_000, "not_authorized")]


def test_a_customer_no_longer_served_at_a_station_loses_the_allowance_there(server, tmp_path, clock):
    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    with one.bound():
        assert Customer.get(Customer.account_id == SHARED).allowance_fen == 100_000
    server_db()
    from sync_server.db import HomeStation

    HomeStation.delete().where((HomeStation.account_id == SHARED) & (HomeStation.station_id == "ST-0001")).execute()
    sync_once(one)
    with one.bound():
        assert Customer.get(Customer.account_id == SHARED).allowance_fen == 0
    server_db()
    assert Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == SHARED)).amount_fen == 0


@pytest.mark.parametrize("body, reason", [
    ({"account": SHARED, "amount": -100_000}, "invalid_amount"),
    ({"account": SHARED, "amount": 1_000, "fee": 1.5}, "invalid_amount"),
    ({"account": "cash:ST-0001", "amount": 1_000}, "unknown_account"),
    ({"account": "NOSUCH0001", "amount": 1_000}, "unknown_account"),
])
def test_forged_entries_signed_by_a_tampered_station_never_post(server, tmp_path, clock, body, reason):
    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = central_balance()
    with one.db.atomic():
        forged = append_forged_entry(one, "withdrawal", one.now(), {"agent": "A01", **body},
                              txn=receipts.new_txn_id())
    assert sync_once(one).rejected == {forged.seq: reason}
    assert central_balance() == before
    server_db()
    assert sum(ledger_totals().values()) == 0


@pytest.mark.parametrize("entry_type, body, with_txn", [
    ("withdrawal", {"account": SHARED}, True),  # no amount
    ("transfer", {"account": SHARED, "amount": 1_000}, True),  # no payee account
    ("transfer", {"account": SHARED, "amount": 1_000, "payee_account": "6222000011112222"}, False),  # no txn
    ("bill_payment", {"amount": 1_000, "biller": ["ELEC"], "ref": "1234567890", "funding": "cash"}, True),
    ("reversal", {"amount": 1_000}, True),  # reverses nothing
    ("day_close", {"expected": 0}, False),  # no counted amount
])
def test_malformed_entries_signed_by_a_tampered_station_are_rejected_not_a_crash(
        server, tmp_path, clock, entry_type, body, with_txn):
    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = central_balance()
    with one.db.atomic():
        forged = append_forged_entry(one, entry_type, one.now(), {"agent": "A01", **body},
                              txn=receipts.new_txn_id() if with_txn else None)
    assert sync_once(one).rejected == {forged.seq: "malformed_entry"}
    assert central_balance() == before
    server_db()
    assert sum(ledger_totals().values()) == 0


def forge(st, entry_type, body):
    """An entry signed by the station's own key that its services would never write."""
    with st.db.atomic():
        return append_forged_entry(st, entry_type, st.now(), {"agent": "A01", **body},
                            txn=receipts.new_txn_id())


def forged_transfer(st, amount=1_000):
    return forge(st, "transfer", {"account": SHARED, "amount": amount, "fee": 200,
                                  "payee_account": "6222000011112222", "payee_name": "x", "warned": True})


def test_a_forged_reversal_of_a_transfer_is_rejected_and_the_transfer_stays_pending(server, tmp_path, clock):
    from sync_server.db import Transfer

    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = central_balance()
    sent = forged_transfer(one)
    undo = forge(one, "reversal", {"ref_txn": sent.txn})
    assert sync_once(one).rejected == {undo.seq: "not_reversible"}
    assert central_balance() == before - 1_200
    server_db()
    assert Transfer.get(Transfer.txn == sent.txn).status == "pending"
    assert sum(ledger_totals().values()) == 0


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_withdrawal_is_reversed_once_only(server, tmp_path, clock, same_batch):
    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = central_balance()
    paid = forge(one, "withdrawal", {"account": SHARED, "amount": 1_000})
    forge(one, "reversal", {"ref_txn": paid.txn})
    if not same_batch:
        assert sync_once(one).rejected == {}
    again = forge(one, "reversal", {"ref_txn": paid.txn})
    assert sync_once(one).rejected == {again.seq: "already_reversed"}
    assert central_balance() == before
    server_db()
    assert sum(ledger_totals().values()) == 0


def test_a_reversal_stays_spent_when_a_later_entry_reuses_the_txn(server, tmp_path, clock):
    """A forged second entry with the reversed txn is a duplicate, and a second reversal is still refused."""
    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = central_balance()
    paid = forge(one, "withdrawal", {"account": SHARED, "amount": 1_000})
    forge(one, "reversal", {"ref_txn": paid.txn})
    assert sync_once(one).rejected == {}
    with one.db.atomic():
        reused = append_forged_entry(one, "withdrawal", one.now(),
                                     {"agent": "A01", "account": SHARED, "amount": 1_000}, txn=paid.txn)
    again = forge(one, "reversal", {"ref_txn": paid.txn})
    assert sync_once(one).rejected == {reused.seq: "duplicate_txn", again.seq: "already_reversed"}
    assert central_balance() == before
    server_db()
    assert sum(ledger_totals().values()) == 0


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_transfer_cancelled_twice_is_refunded_once(server, tmp_path, clock, same_batch):
    from sync_server.db import Transfer

    server_db()
    import_customers(parse_customers_csv(shared_customer_csv(), pin_log2_n=8))
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = central_balance()
    sent = forged_transfer(one)
    forge(one, "transfer_cancel", {"account": SHARED, "ref_txn": sent.txn})
    if not same_batch:
        assert sync_once(one).rejected == {}
    again = forge(one, "transfer_cancel", {"account": SHARED, "ref_txn": sent.txn})
    assert sync_once(one).rejected == {again.seq: "already_cancelled"}
    assert central_balance() == before
    server_db()
    assert Transfer.get(Transfer.txn == sent.txn).status == "cancelled"
    assert sum(ledger_totals().values()) == 0
