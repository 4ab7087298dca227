"""Property: any sequence of operations, good or bad, never breaks a limit, never makes the drawer negative,
and always leaves a journal that verifies."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ui_helpers import identity_present

from station import agents, business_day, errors, limits, operations, receipts
from station.context import Station
from station.db import Customer, Operation
from station.demo import DEMO_CUSTOMER_PIN, load_demo_customers
from station.journal import audit_journal
from station.protocol.entry_types import LIVE_STATES
from station.provision import init_station

START = datetime(2026, 11, 2, 23, 40, tzinfo=UTC)
ALLOWANCE_FEN = 1_500_00
POLICY = {"max_unsynced_count": 12, "max_unsynced_fen": 4_000_00}

amounts = st.one_of(
    st.sampled_from(["100", "500", "1000", "1200", "35.50", "0", "-5", "", "10.005", "1e3"]),
    st.integers(min_value=1, max_value=5).map(lambda n: str(n * 100)),
)
scripts = st.lists(
    st.one_of(
        st.tuples(st.just("withdraw"), st.integers(0, 3), amounts),
        st.tuples(st.just("deposit"), st.integers(0, 3), amounts),
        st.tuples(st.just("transfer"), st.integers(0, 3), amounts),
        st.tuples(st.just("bill_account"), st.integers(0, 3), amounts),
        st.tuples(st.just("bill_cash"), st.integers(0, 3), amounts),
        st.tuples(st.just("reverse_last"), st.integers(0, 3), amounts),
        st.tuples(st.just("cancel_last"), st.integers(0, 3), amounts),
        st.tuples(st.just("wait_hours"), st.integers(1, 30), amounts),
        st.tuples(st.just("new_day"), st.integers(1, 3), amounts),
    ),
    max_size=25,
)


def check_invariants(station: Station) -> None:
    policy = station.policy
    cash = business_day.drawer_cash(station)
    assert cash is None or cash >= 0
    for customer in Customer.select():
        assert 0 <= limits.offline_available(station, customer) <= customer.allowance_fen
        live = Operation.select().where(
            (Operation.customer == customer.id) & Operation.status.in_(LIVE_STATES)
        )
        assert sum(op.debit_fen for op in live) <= ALLOWANCE_FEN
        by_day: dict[tuple[str, str], int] = {}
        for op in live:
            by_day[op.type, op.business_date] = by_day.get((op.type, op.business_date), 0) + op.amount_fen
        for (op_type, _), total in by_day.items():
            if op_type in policy["limits"]:
                assert total <= policy["limits"][op_type]["daily"]
    exposure_fen, exposure_count = limits.unsynced_exposure(station)
    assert exposure_fen <= POLICY["max_unsynced_fen"] and exposure_count <= POLICY["max_unsynced_count"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=scripts)
def test_random_operation_sequences_keep_every_invariant(tmp_path_factory, script):
    template = tmp_path_factory.getbasetemp() / "property-template"
    if not template.exists():
        seeded = init_station(template, "ST-PROP", clock=lambda: START)
        load_demo_customers(seeded, count=4, allowance_fen=ALLOWANCE_FEN)
        seeded.set_setting("policy", POLICY)
        seeded.close()
    folder = tmp_path_factory.mktemp("property")
    shutil.copytree(template, folder, dirs_exist_ok=True)
    moment = {"now": START}
    station = Station(folder, clock=lambda: moment["now"])
    try:
        with station.bound():
            run_script(station, moment, script)
        assert audit_journal(station).problems == []
    finally:
        station.close()


def run_script(station: Station, moment: dict, script) -> None:
    agent = agents.login_agent(station, "A01", "1357")
    supervisor = agents.login_agent(station, "S01", "2468")
    business_day.open_day(station, agent, {"10000": 5})
    customers = list(Customer.select().order_by(Customer.id))
    last: dict[str, receipts.Receipt] = {}
    for action, index, amount in script:
        moment["now"] += timedelta(minutes=3)
        try:
            if action == "wait_hours":
                moment["now"] += timedelta(hours=index)
                agent = agents.login_agent(station, "A01", "1357")
                supervisor = agents.login_agent(station, "S01", "2468")
                continue
            if action == "new_day":
                business_day.close_day(station, agent, {"10000": index}, reason="Miscount", supervisor=supervisor)
                business_day.open_day(station, agent, {"10000": 5 * index})
                continue
            if action == "reverse_last":
                if "reversible" in last:
                    operations.reverse(station, supervisor, last["reversible"].txn, receipts.new_txn_id(), "test")
                continue
            customer = Customer.get_by_id(customers[index].id)
            if action == "bill_cash":
                operations.pay_bill(station, agent, None, "ELEC-SGCC", "1234567890", amount, receipts.new_txn_id())
                continue
            auth = agents.authenticate_customer(station, agent, customer, DEMO_CUSTOMER_PIN)
            txn = receipts.new_txn_id()
            if action == "withdraw":
                # The ID card shown every time: a large withdrawal then meets its limits, not the ID step.
                last["reversible"] = operations.withdraw_cash(station, agent, auth, amount, txn,
                                                              identity=identity_present(station))
            elif action == "deposit":
                last["reversible"] = operations.deposit_cash(station, agent, auth, amount, txn)
            elif action == "transfer":
                last["transfer"] = operations.transfer(
                    station, agent, auth, "6222000000000000001", "王小明", amount, txn, fraud_warning_confirmed=True
                )
            elif action == "bill_account":
                last["reversible"] = operations.pay_bill(
                    station, agent, auth, "ELEC-SGCC", "1234567890", amount, txn, funding="account"
                )
            elif action == "cancel_last" and "transfer" in last:
                operations.cancel_transfer(station, agent, auth, last["transfer"].txn, txn)
        except errors.StationError:
            pass
        check_invariants(station)
