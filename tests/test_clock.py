"""A clock set back (issue 13): the station refuses to record with a clock behind what it last wrote down, says "the
clock is wrong, call the technician" on the screen and in `station status`, and nothing measured in time stretches:
not the 72-hour offline limit, not an agent's session, not the idle logout, not a customer's PIN check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sync_support import enrolled_station, record_some
from ui_helpers import card_customer, english, login

from station import agents, cli, errors, operations, receipts
from station.db import Agent, JournalEntry, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.device_state import CLOCK_TOLERANCE, DeviceState, clock_floor, device_state
from station.link import note_failure
from station.protocol.times import utc_text
from station.sync import sync_once
from sync_server.cli import cli as server_cli

CLOCK_WRONG_ZH = "时钟不对：比本服务点已有的记录还早。不能办理新业务。请联系技术员。"
CLOCK_WRONG_EN = "The clock is wrong: it is earlier than what this station already recorded."


def log_in(st, index: int = 0) -> agents.AgentSession:
    agent_id, _, _, pin = DEMO_AGENTS[index]
    return agents.login_agent(st, agent_id, pin)


def withdraw(st, session):
    auth = agents.authenticate_customer(st, session, card_customer(), DEMO_CUSTOMER_PIN)
    return operations.withdraw_cash(st, session, auth, "100", receipts.new_txn_id())


def test_400_days_back_records_nothing(open_drawer, agent, clock):
    st = open_drawer
    withdraw(st, agent)
    clock.advance(days=-400)
    assert device_state(st) is not DeviceState.READY
    with pytest.raises((errors.ClockNotSet, errors.ClockWrong)):
        withdraw(st, log_in(st))
    assert Operation.select().count() == 1


def test_a_few_seconds_back_is_within_the_tolerance(open_drawer, agent, clock):
    st = open_drawer
    withdraw(st, agent)
    floor = clock()
    clock.advance(seconds=-CLOCK_TOLERANCE.total_seconds())
    assert device_state(st) is DeviceState.READY
    withdraw(st, agent)
    # That entry, stamped 5 s before the one before it, does not lower the floor: steps back do not add up.
    assert clock_floor(st) == floor
    clock.advance(seconds=-1)
    assert device_state(st) is DeviceState.CLOCK_WRONG
    with pytest.raises(errors.ClockWrong):
        withdraw(st, log_in(st))


def test_setting_the_clock_back_does_not_bypass_the_offline_age_limit(open_drawer, agent, clock):
    """Three days without the bank and without an operation: the last journal entry is three days old, so only
    the probes that kept failing say how late it is. Setting the clock back to just after that entry is refused,
    however often the probes fail by the wrong clock afterwards; set right, the offline limit holds."""
    st = open_drawer
    withdraw(st, agent)
    last_entry = clock()
    for _ in range(73):
        clock.advance(hours=1)
        note_failure(st, "probe", "unreachable")
    assert clock_floor(st) == clock()
    real_time = clock()
    clock.now = last_entry + timedelta(hours=1)
    assert device_state(st) is DeviceState.CLOCK_WRONG
    note_failure(st, "probe", "unreachable")  # the next probe, by the clock set back
    assert clock_floor(st) == real_time
    session = log_in(st)
    with pytest.raises(errors.ClockWrong):
        withdraw(st, session)
    clock.now = real_time + timedelta(minutes=1)
    session = log_in(st)
    with pytest.raises(errors.OfflineTooLong):
        withdraw(st, session)
    assert Operation.select().count() == 1


def test_sessions_and_pin_checks_end_when_the_clock_jumps_back(open_drawer, agent, clock):
    st = open_drawer
    auth = agents.authenticate_customer(st, agent, card_customer(), DEMO_CUSTOMER_PIN)
    clock.advance(minutes=1)
    withdraw(st, agent)
    # Set back an hour and forward again to the moment it was: an AgentSession checked in between is ended.
    clock.advance(hours=-1)
    with pytest.raises(errors.AgentSessionInvalid):
        agents.check_session(st, agent)
    clock.advance(hours=1)
    # The PIN check made before the clock went back (and forward) still counts only for its own five minutes.
    clock.advance(hours=-1)
    session = log_in(st)
    with pytest.raises(errors.CustomerPinRequired):
        agents.authorised_customer(st, session, auth)


def test_wrong_pins_still_lock_with_a_wrong_clock(open_drawer, agent, clock):
    st = open_drawer
    withdraw(st, agent)
    clock.advance(hours=-2)
    for _ in range(st.policy["agent_pin_tries"]):
        with pytest.raises((errors.WrongAgentPin, errors.AgentLocked)):
            agents.login_agent(st, "A01", "0000")
    assert Agent.get_by_id("A01").locked
    assert JournalEntry.select().where(JournalEntry.type == "agent_pin_failed").count() == st.policy["agent_pin_tries"]


def test_a_wrong_pin_typed_while_the_clock_is_wrong_does_not_make_it_right(open_drawer, agent, clock):
    """The wrong PIN is journaled by the wrong clock, as the journal's last entry: the floor must not fall with it
    (a station with no bank contact yet has only the journal to go by)."""
    st = open_drawer
    withdraw(st, agent)
    floor = clock_floor(st)
    clock.advance(days=-30)
    assert device_state(st) is DeviceState.CLOCK_WRONG
    with pytest.raises(errors.WrongAgentPin):
        agents.login_agent(st, "A01", "0000")
    assert JournalEntry.select().order_by(JournalEntry.seq.desc()).get().type == "agent_pin_failed"
    assert clock_floor(st) == floor
    assert device_state(st) is DeviceState.CLOCK_WRONG
    with pytest.raises(errors.ClockWrong):
        withdraw(st, log_in(st))


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_screens_say_the_clock_is_wrong(lang, ui_client, open_drawer, agent, clock):
    st = open_drawer
    withdraw(st, agent)
    login(ui_client)
    assert ui_client.get("/home").status_code == 200
    clock.advance(minutes=-30)
    # The agent's session ended with the jump (the idle time cannot be measured back in time); the login screen
    # says why nobody can work.
    assert ui_client.get("/home").location == "/login"
    if lang == "en":
        english(ui_client)
    words = CLOCK_WRONG_EN if lang == "en" else CLOCK_WRONG_ZH
    html = ui_client.get("/login").get_data(as_text=True)
    assert 'id="clock-wrong"' in html and words in html
    login(ui_client)
    html = ui_client.get("/home").get_data(as_text=True)
    assert 'id="clock-wrong"' in html and words in html and 'id="tile-withdrawal" disabled' in html
    refused = ui_client.post("/op/withdrawal/start")
    assert refused.status_code == 400 and words in refused.get_data(as_text=True)
    # Reprints still work: they write no entry.
    seq = Operation.select().get().seq
    assert ui_client.get(f"/receipts/{seq}").status_code == 200


def test_station_status_says_the_clock_is_wrong(open_drawer, clock):
    """`station status` opens the station with the real clock: the journal's last entry is put a day ahead of it."""
    st = open_drawer
    clock.now = datetime.now(UTC) + timedelta(days=1)
    session = log_in(st)
    auth = agents.authenticate_customer(st, session, card_customer(), DEMO_CUSTOMER_PIN)
    operations.deposit_cash(st, session, auth, "100", receipts.new_txn_id())
    runner = CliRunner()
    status = json.loads(runner.invoke(cli.cli, ["status", "--data-dir", str(st.data_dir), "--json"]).output)
    assert status["device_state"] == "clock_wrong" and status["clock_floor"] == utc_text(clock.now)
    text = runner.invoke(cli.cli, ["status", "--data-dir", str(st.data_dir)]).output
    assert "CLOCK WRONG" in text


# -- the bank measures and reports the offset ---------------------------------------------------------------------
def test_the_bank_reports_a_station_whose_clock_is_off(server, tmp_path, clock):
    """The station syncs with its clock an hour behind the bank's (the sync itself is allowed: it records nothing,
    and it is how the bank learns): `sync-server station list` and `show` flag it; set right, the flag goes. The
    bank reads the real time, so the station's clock starts from it (the offsets are then within a few ms)."""
    clock.now = datetime.now(UTC)
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=1)
    db = ["--database-url", server.database_url]
    runner = CliRunner()

    def listed() -> tuple[int, bool]:
        row = json.loads(runner.invoke(server_cli, ["station", "list", "--json", *db]).output)[0]
        return row["clock_offset_ms"], row["clock_wrong"]

    offset, wrong = listed()
    assert abs(offset) < 60_000 and not wrong
    clock.now = datetime.now(UTC)
    st.clock = lambda: clock.now - timedelta(hours=1)
    assert device_state(st) is DeviceState.CLOCK_WRONG
    sync_once(st)
    offset, wrong = listed()
    assert 3_600_000 <= offset < 3_660_000 and wrong
    line = runner.invoke(server_cli, ["station", "list", *db]).output.splitlines()[0]
    assert line.startswith("ST-0001") and "clock 60 min behind" in line and line.endswith("CLOCK WRONG")
    shown = runner.invoke(server_cli, ["station", "show", "ST-0001", *db]).output
    assert f"{offset} ms (60 min behind) CLOCK WRONG" in shown
    clock.now = datetime.now(UTC)
    st.clock = clock
    sync_once(st)
    offset, wrong = listed()
    assert abs(offset) < 60_000 and not wrong
    assert "CLOCK WRONG" not in runner.invoke(server_cli, ["station", "list", *db]).output
