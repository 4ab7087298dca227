"""A revoked station and a clock that is not set: the bank's refusal kept, every new operation refused in the core
and on the screen, receipts still reprinted, `station status` telling it; end to end on loopback."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sync_support import enrolled_station, record_some, server_db
from ui_helpers import english, login

from station import agents, business_day, cli, errors, operations, receipts
from station.app import create_app
from station.db import Customer, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.device_state import (
    CLOCK_TOLERANCE,
    EARLIEST_PLAUSIBLE_TIME,
    DeviceState,
    clock_behind,
    clock_not_set,
    device_state,
    refuse_new_operations,
)
from station.feedback import CATEGORIES, record_feedback
from station.sync import SyncRefused, sync_once
from sync_server.admin import revoke_station
from sync_server.db import Station as BankStation

REVOKED_ZH = "本服务点已被银行停用"
REVOKED_EN = "This station has been revoked by the bank"


@pytest.fixture
def revoked(server, tmp_path, clock):
    """ST-0001 enrolled, three deposits synced, revoked at the bank, one more deposit, then a refused sync."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=3)
    sync_once(st)
    server_db()
    revoke_station("ST-0001")
    clock.advance(minutes=5)
    record_some(st, count=1)
    with pytest.raises(SyncRefused) as refused:
        sync_once(st)
    assert refused.value.problem["type"] == "urn:station-kit:problem:station-revoked"
    yield st
    st.close()


def session_of(st):
    return agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])


def test_the_refusal_is_kept_and_every_new_operation_refused(revoked, clock):
    st = revoked
    state = st.setting("revoked")
    assert state["at"] == "2026-11-02T23:45:00.000Z" and "revoked" in state["detail"]
    assert device_state(st) is DeviceState.REVOKED
    with st.bound():
        session = session_of(st)
        customer = Customer.get(Customer.account_id == "DM00010001")
        auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
        before = Operation.select().count()
        with pytest.raises(errors.StationRevoked):
            operations.deposit_cash(st, session, auth, 10_000, receipts.new_txn_id())
        with pytest.raises(errors.StationRevoked):
            business_day.close_day(st, session, {"10000": 140})
        assert Operation.select().count() == before
        # A replay of what was recorded before still answers with its receipt.
        last = Operation.select().order_by(Operation.seq.desc()).get()
        assert receipts.receipt_for(st, last).seq == last.seq
    # A later refusal keeps the first time.
    clock.advance(hours=1)
    with pytest.raises(SyncRefused):
        sync_once(st)
    assert st.setting("revoked")["at"] == "2026-11-02T23:45:00.000Z"


def test_station_status_reports_it(revoked):
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["status", "--data-dir", str(revoked.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["device_state"] == "revoked" and status["revoked"]["at"] == "2026-11-02T23:45:00.000Z"
    text = runner.invoke(cli.cli, ["status", "--data-dir", str(revoked.data_dir)]).output
    assert "REVOKED by the bank" in text


def test_an_ack_that_verifies_clears_it(revoked):
    # The refusal is not signed; the bank's signed ack is. Here the bank takes the revocation back.
    server_db()
    BankStation.update(status="active").where(BankStation.station_id == "ST-0001").execute()
    sync_once(revoked)
    assert revoked.setting("revoked") is None and device_state(revoked) is DeviceState.READY


def csrf_token(html):
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_the_screens_of_a_revoked_station_in_both_languages(revoked):
    st = revoked
    st.config["printer"] = {"kind": "dummy"}
    app = create_app({"STATION": st, "SECRET_KEY": "test"})
    client = app.test_client()
    assert client.get("/").location == "/revoked"
    html = client.get("/revoked").get_data(as_text=True)
    assert REVOKED_ZH in html and "请联系银行" in html and 'id="revoked-login"' in html
    token = csrf_token(client.get("/login?agent_id=A01").get_data(as_text=True))
    assert client.post("/login", data={"agent_id": "A01", "pin": "1357", "csrf_token": token}).location == "/home"
    assert client.get("/home").location == "/revoked"
    html = client.get("/revoked").get_data(as_text=True)
    assert 'id="revoked-receipts"' in html and 'id="revoked-at"' in html
    # No new operation, whatever the address: the screen, then the core.
    for path in ("/op/deposit/start", "/day/close", "/voice/", "/sync"):
        assert client.post(path, data={"csrf_token": csrf_token(html)}).location == "/revoked", path
    # Today's receipts: listed, shown, reprinted.
    listing = client.get("/receipts/").get_data(as_text=True)
    with st.bound():
        seq = Operation.select().order_by(Operation.seq.desc()).get().seq
    assert f'id="open-{seq}"' in listing
    assert client.get(f"/receipts/{seq}").status_code == 200
    printed = client.post(f"/receipts/{seq}/print", data={"csrf_token": csrf_token(listing)})
    assert printed.location == f"/receipts/{seq}"
    client.post("/lang", data={"lang": "en", "next": "/revoked", "csrf_token": csrf_token(listing)})
    html = client.get("/revoked").get_data(as_text=True)
    assert REVOKED_EN in html and "Call the bank" in html
    assert client.get("/health").json["state"] == "revoked"


# -- the clock --------------------------------------------------------------------------------------------
def test_clock_rules():
    last = EARLIEST_PLAUSIBLE_TIME + timedelta(days=30)
    assert clock_not_set(datetime(1970, 1, 1, tzinfo=UTC))
    assert clock_not_set(EARLIEST_PLAUSIBLE_TIME - timedelta(seconds=1))
    assert not clock_not_set(EARLIEST_PLAUSIBLE_TIME)
    # Behind what the device last wrote down by more than the tolerance: wrong; within it (NTP slewing), right.
    assert clock_behind(last - CLOCK_TOLERANCE - timedelta(seconds=1), last)
    assert not clock_behind(last - CLOCK_TOLERANCE, last) and not clock_behind(last, last)
    assert not clock_behind(last + timedelta(hours=1), last) and not clock_behind(last, None)


def test_a_clock_behind_the_journal_refuses_new_operations(open_drawer, agent, clock):
    st = open_drawer
    customer = Customer.select().where(Customer.card_number.is_null(False)).first()
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())
    # fake-hwclock after a reboot: the time saved before the last entries.
    clock.advance(minutes=-30)
    assert device_state(st) is DeviceState.CLOCK_WRONG
    # The agent's session, started before, ended with the jump back; a new one is refused all the same.
    with pytest.raises(errors.AgentSessionInvalid):
        operations.deposit_cash(st, agent, auth, "100", receipts.new_txn_id())
    (agent_id, _, _, agent_pin), (supervisor_id, _, _, supervisor_pin) = DEMO_AGENTS
    agent = agents.login_agent(st, agent_id, agent_pin)
    supervisor = agents.login_agent(st, supervisor_id, supervisor_pin)
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    with pytest.raises(errors.ClockWrong):
        operations.deposit_cash(st, agent, auth, "100", receipts.new_txn_id())
    with pytest.raises(errors.ClockWrong):
        business_day.close_day(st, agent, {"10000": 299})
    with pytest.raises(errors.ClockWrong):
        record_feedback(st, agent, CATEGORIES[0], "服务热情")
    with pytest.raises(errors.ClockWrong):
        agents.add_agent(st, "A09", "王芳", "agent", "2580")
    with pytest.raises(errors.ClockWrong):
        agents.unlock_agent(st, supervisor, agent.agent_id)
    with pytest.raises(errors.ClockWrong):
        refuse_new_operations(st)
    # The technician sets the clock right.
    clock.advance(minutes=31)
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    operations.deposit_cash(st, agent, auth, "100", receipts.new_txn_id())
    assert Operation.select().count() == 2


def test_home_screen_while_the_clock_is_not_set(ui_client, open_drawer, clock):
    login(ui_client)
    clock.now = datetime(1970, 1, 1, 0, 1, tzinfo=UTC)
    # The clock jumped back: the agent's session ended (it must not stretch); the login screen says why.
    assert ui_client.get("/home").location == "/login"
    html = ui_client.get("/login").get_data(as_text=True)
    assert 'id="clock-not-set"' in html and "等待网络时间" in html
    login(ui_client)
    html = ui_client.get("/home").get_data(as_text=True)
    assert 'id="clock-not-set"' in html and "等待网络时间" in html
    assert '<meta http-equiv="refresh" content="10">' in html
    assert re.search(r'id="tile-withdrawal"\s+disabled', html)
    refused = ui_client.post("/op/withdrawal/start")
    assert refused.status_code == 400 and "时钟未校准" in refused.get_data(as_text=True)
    english(ui_client)
    html = ui_client.get("/home").get_data(as_text=True)
    assert "The clock is not set: waiting for network time" in html
    # Network time arrives (the agent, idle since "1970", logs in again).
    clock.now = datetime(2026, 11, 2, 23, 45, tzinfo=UTC)
    login(ui_client)
    html = ui_client.get("/home").get_data(as_text=True)
    assert 'id="tile-withdrawal"' in html and 'id="clock-not-set"' not in html
