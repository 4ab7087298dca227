"""A clock that ran ahead and was set right: the technician's override (``station clock show`` / ``accept``).

The story first (the bank on loopback, SQLite and, with TEST_DATABASE_URL, PostgreSQL): fake-hwclock puts the
clock three days ahead; the station opens a day, records, syncs; the clock is set right and the station refuses
everything; the technician looks and accepts; the station serves again, but offline debits wait for a sync
(the last sync was stamped three days ahead), then work; the bank acknowledges the correction, recon lists it. Then
each rule on its own: what ``accept`` refuses, the money rule, the floor, the other process, the screens, and the
bank's checks of a forged correction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FakeClock
from hypothesis import given, settings, strategies
from recon_support import counts_of
from storage_support import lift_database_limit, limit_database
from sync_support import append_forged_entry, enrolled_station, open_counter, server_db
from ui_helpers import card_customer, english, login

from station import agents, business_day, cli, errors, online, operations, receipts
from station.clock import accept_clock, read_clock
from station.context import Station
from station.db import BusinessDay, Customer, JournalEntry
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.device_state import DeviceState, clock_floor, device_state
from station.journal import journal_head
from station.link import LINK_SETTING, note_failure, note_success
from station.protocol.clock_corrections import correction_problem
from station.protocol.times import utc_text
from station.protocol.tokens import unverified_payload
from station.provision import init_station
from station.sync import station_status, sync_once
from sync_server.cli import cli as server_cli
from sync_server.db import Entry
from sync_server.db import Station as BankStation
from sync_server.recon.context import Scope
from sync_server.recon.run import find_discrepancies

ROOT = Path(__file__).resolve().parents[1]
REASON = "fake-hwclock restored a later time"
SYNC_FIRST = "The clock was corrected: connect to the bank once before offline operations."
#: The home screen's notice after a correction, until the next sync.
SYNC_ONCE = "Clock corrected: sync once before offline operations."


def real_time() -> datetime:
    """Now, to the second: the bank and the `station` command read the real clock."""
    return datetime.now(UTC).replace(microsecond=0)


def log_in(st, index: int = 0) -> agents.AgentSession:
    agent_id, _, _, pin = DEMO_AGENTS[index]
    return agents.login_agent(st, agent_id, pin)


def customer_auth(st, session, who: Customer | None = None) -> agents.CustomerAuth:
    return agents.authenticate_customer(st, session, who or card_customer(), DEMO_CUSTOMER_PIN)


def withdraw(st, session, amount="100", authorization=None, txn=None, who: Customer | None = None):
    return operations.withdraw_cash(st, session, customer_auth(st, session, who), amount,
                                    txn or receipts.new_txn_id(), authorization=authorization)


def deposit(st, session, amount="100"):
    return operations.deposit_cash(st, session, customer_auth(st, session), amount, receipts.new_txn_id())


def station_command(st, *args, input=None):
    """``station ARGS --data-dir`` through click's CliRunner (it opens the station itself, with the real clock)."""
    return CliRunner().invoke(cli.cli, [*args, "--data-dir", str(st.data_dir)], input=input)


@pytest.fixture
def on_this_clock(monkeypatch):
    """The `station` command opens the test's station object (its clock, its connection) instead of its own."""
    opened = {}

    def use(st):
        opened["st"] = st
        monkeypatch.setattr(cli, "open_station", lambda data_dir, **_: opened["st"])

    return use


# -- the story --------------------------------------------------------------------------------------------------
def test_three_days_ahead_set_right_accepted_and_synced(server, tmp_path):
    """The whole story, with the balances of what the technician and the bank see at each step."""
    clock = FakeClock(real_time())
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    agent, _ = open_counter(st)
    with st.bound():
        who = card_customer()
        assert who.allowance_fen > 0
        withdraw(st, agent, "100")
        business_day.close_day(st, agent, counts_of(business_day.drawer_cash(st)))
        sync_once(st)

        # fake-hwclock restores a time three days ahead: the station opens a day (dated then), records and syncs.
        clock.advance(days=3)
        ahead = clock.now
        agent = log_in(st)
        business_day.open_day(st, agent, {"10000": 299})
        deposit(st, agent, "200")
        sync_once(st)
        server_db()
        assert BankStation.get_by_id("ST-0001").clock_offset_ms < -3 * 86_400_000 + 60_000
        sid = agents.bind_session(st, agent)

        # Set right: nothing new is recorded.
        clock.now = real_time()
        assert device_state(st) is DeviceState.CLOCK_WRONG
        with pytest.raises(errors.ClockWrong):
            deposit(st, log_in(st))
        status = station_command(st, "status")
        assert "CLOCK WRONG" in status.output and "station clock accept" in status.output

        # The technician looks, then accepts.
        shown = station_command(st, "clock", "show")
        assert shown.exit_code == 0, shown.output
        assert "State:      CLOCK WRONG" in shown.output and "station clock accept" in shown.output
        ahead_lines = [line.split(":")[0].strip() for line in shown.output.splitlines() if "AHEAD" in line]
        assert {"the journal's last entry", "the last successful sync"} <= set(ahead_lines)
        head_before = journal_head(st)[0]
        accepted = station_command(st, "clock", "accept", "--reason", REASON, input="y\n")
        assert accepted.exit_code == 0, accepted.output
        assert "Is the clock right NOW" in accepted.output
        assert f"Clock corrected at seq {head_before + 1}" in accepted.output
        assert "offline withdrawals, transfers and account payments wait for a sync" in accepted.output
        clock.now = real_time()

        entry = JournalEntry.get_by_id(head_before + 1)
        payload = unverified_payload(entry.token)
        floor = payload["floor"]
        assert payload["type"] == "clock_corrected" and payload["by"] == "technician" and payload["reason"] == REASON
        assert utc_text(ahead) <= floor and correction_problem(payload) is None
        assert 3 * 86_400_000 - 60_000 < payload["behind_ms"] < 3 * 86_400_000 + 60_000
        corrected = st.setting("clock_corrected")
        assert corrected == {"at": payload["ts"], "seq": entry.seq, "floor": floor, "sync_unknown": True}
        assert clock_floor(st) == entry.recorded_at and device_state(st) is DeviceState.READY
        assert st.setting("last_sync_at") == payload["ts"] and st.setting("server_time_offset_ms") is None
        assert not agents.session_bound(st, sid, agent.agent_id)  # every session ended

        # The station serves again: credits, and what the bank authorizes online; offline debits wait for a sync.
        agent = log_in(st)
        deposit(st, agent, "50")
        with pytest.raises(errors.OfflineAgeUnknown) as refused:
            withdraw(st, agent, "100")
        assert refused.value.message.startswith(SYNC_FIRST)
        txn = receipts.new_txn_id()
        fee = operations.quote_fee(st, "withdrawal")
        grant = online.authorize(st, "withdrawal", txn=txn, agent=agent.agent_id, account=who.account_id,
                                 amount=10_000, fee=fee)
        assert grant is not None and grant.granted
        assert unverified_payload(withdraw(st, agent, "100", authorization=grant, txn=txn).token)["auth"]
        assert "unknown" in station_command(st, "status").output

        # The day opened while the clock was three days ahead closes as any other.
        day = business_day.current_day(st)
        assert day.business_date == ahead.astimezone(st.timezone).date().isoformat()
        business_day.close_day(st, agent, counts_of(business_day.drawer_cash(st)))
        assert BusinessDay.get_by_id(day.id).closed_at is not None

        # One sync: the bank acknowledges the correction, measures the clock right, and the offline age is known.
        result = sync_once(st)
        assert result.pending == 0 and result.rejected == {}
        assert st.setting("clock_corrected")["sync_unknown"] is False
        agent = log_in(st)
        business_day.open_day(st, agent, {"10000": 300})
        withdraw(st, agent, "100")

    server_db()
    assert Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == entry.seq)).outcome == "acknowledged"
    assert abs(BankStation.get_by_id("ST-0001").clock_offset_ms) < 60_000
    found = find_discrepancies(server_db(), Scope(now=datetime.now(UTC)), datetime.now(UTC)).discrepancies
    listed = [d for d in found if d.kind == "clock_corrected"]
    assert [(d.station, d.seq, d.detail["note"]) for d in listed] == [("ST-0001", entry.seq, REASON)]
    assert round(listed[0].detail["minutes"]) == round(payload["behind_ms"] / 60_000)
    assert [d.kind for d in found if d.kind.startswith("clock")] == ["clock_corrected"]
    runner = CliRunner()
    shown = runner.invoke(server_cli, ["station", "show", "ST-0001", "--database-url", server.database_url])
    assert f"clock fixed:  seq {entry.seq} at {payload['ts']}: the clock had run" in shown.output
    assert REASON in shown.output
    as_json = json.loads(runner.invoke(server_cli, ["station", "show", "ST-0001", "--json", "--database-url",
                                                    server.database_url]).output)
    assert as_json["clock_corrected"]["seq"] == entry.seq and as_json["clock_corrected"]["floor"] == floor
    st.close()


def test_accept_as_the_real_command_on_a_new_station(tmp_path):
    """A station made while its clock was a day ahead (its only entry, the start, dated then), run as the real
    `station` command: `show` says what to do, `accept --yes` corrects it, a second `accept` has nothing to correct.
    The station never synced: the offline age counted from the start entry, stamped ahead, so it is unknown."""
    st = init_station(tmp_path / "st", "ST-0009", clock=FakeClock(datetime.now(UTC) + timedelta(days=1)))
    st.close()

    def station(*args):
        return subprocess.run([sys.executable, "-c", "from station.cli import cli; cli()", *args,
                               "--data-dir", str(tmp_path / "st")], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)

    shown = station("clock", "show")
    assert shown.returncode == 0 and "CLOCK WRONG" in shown.stdout
    accepted = station("clock", "accept", "--yes", "--reason", "set by hand a day ahead")
    assert accepted.returncode == 0, accepted.stderr
    assert "Clock corrected at seq 2" in accepted.stdout and "Traceback" not in accepted.stderr
    assert "offline withdrawals, transfers and account payments wait for a sync" in accepted.stdout
    again = station("clock", "accept", "--yes")
    assert again.returncode == 1 and "nothing to correct" in again.stderr and "Traceback" not in again.stderr
    reading = json.loads(station("clock", "show", "--json").stdout)
    assert reading["state"] == "ready" and reading["last_correction"]["seq"] == 2
    assert reading["last_correction"]["sync_unknown"] is True
    assert station("verify-journal").returncode == 0


# -- what accept refuses --------------------------------------------------------------------------------------
def ahead_then_right(st, clock, days: int = 2) -> datetime:
    """The clock runs ``days`` ahead while the station tries to reach the bank, then is set right; the floor."""
    real = clock.now
    clock.now = real + timedelta(days=days)
    note_failure(st, "probe", "unreachable")
    floor = clock.now
    clock.now = real
    return floor


def test_nothing_to_correct_on_a_clock_that_is_right(station, on_this_clock):
    on_this_clock(station)
    head = journal_head(station)[0]
    result = station_command(station, "clock", "accept", "--yes")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "The clock is not behind what this station already wrote down" in result.output
    assert "nothing to correct" in result.output and journal_head(station)[0] == head


def test_a_second_accept_right_after_the_first_says_nothing_to_correct(station, clock):
    ahead_then_right(station, clock)
    first = accept_clock(station, REASON)
    with pytest.raises(errors.ClockNotBehind):
        accept_clock(station, REASON)
    assert journal_head(station)[0] == first.seq


def test_a_clock_not_set_is_not_accepted(station, clock, on_this_clock):
    ahead_then_right(station, clock)
    clock.now = datetime(1970, 1, 1, tzinfo=UTC)
    on_this_clock(station)
    head = journal_head(station)[0]
    result = station_command(station, "clock", "accept", "--yes")
    assert result.exit_code == 1
    assert "The clock is not set" in result.output and "Wait for network time" in result.output
    shown = station_command(station, "clock", "show")
    assert "CLOCK NOT SET" in shown.output
    with pytest.raises(errors.ClockNotSet):
        accept_clock(station)
    assert journal_head(station)[0] == head


def test_without_yes_it_asks_and_a_no_records_nothing(station, clock, on_this_clock):
    floor = ahead_then_right(station, clock)
    on_this_clock(station)
    head = journal_head(station)[0]
    result = station_command(station, "clock", "accept", input="n\n")
    assert result.exit_code == 1 and "Nothing recorded" in result.output
    assert utc_text(floor) in result.output and utc_text(clock.now) in result.output
    assert journal_head(station)[0] == head and device_state(station) is DeviceState.CLOCK_WRONG


@pytest.mark.parametrize("reason", ["two\nlines", "x" * 201, "bidi \u202e override"])
def test_a_reason_that_cannot_be_journaled_is_refused(station, clock, reason):
    ahead_then_right(station, clock)
    result = station_command(station, "clock", "accept", "--yes", "--reason", reason)
    assert result.exit_code == 2 and "--reason" in result.output and "at most 200" in result.output


def test_a_full_disk_refuses_the_correction_whole(station, clock, on_this_clock):
    """No room: the correction is refused with what to do, and nothing of it is written (it is one transaction)."""
    ahead_then_right(station, clock)
    limit_database(station)
    for size in (4000, 400, 40, 4):  # fill the last pages to the byte
        for index in range(10_000):
            try:
                with station.write():
                    station.set_setting(f"filler-{size}-{index}", "x" * size)
            except errors.StorageFull:
                break
    on_this_clock(station)
    head = journal_head(station)[0]
    result = station_command(station, "clock", "accept", "--yes")
    assert result.exit_code == 1 and "Storage is full: the correction was not recorded" in result.output
    lift_database_limit(station)
    assert journal_head(station)[0] == head and station.setting("clock_corrected") is None
    assert read_clock(station).state is DeviceState.CLOCK_WRONG


def test_a_revoked_station_may_still_correct_its_clock(station, clock, on_this_clock):
    """The correction records no operation: a revoked station may make it, and still records nothing new."""
    ahead_then_right(station, clock)
    station.set_setting("revoked", {"at": utc_text(clock.now), "detail": "stolen"})
    on_this_clock(station)
    result = station_command(station, "clock", "accept", "--yes")
    assert result.exit_code == 0, result.output
    assert "The station still records nothing new: revoked" in result.output
    assert device_state(station) is DeviceState.REVOKED


# -- the rules ------------------------------------------------------------------------------------------------
def test_the_correction_lowers_every_part_of_the_floor_and_only_it(open_drawer, clock):
    """The entries journaled whatever the clock keep the floor; the correction is the one that lowers it. The
    parts ahead come back to the correction's time, the link's other times with them."""
    st = open_drawer
    ahead_then_right(st, clock)
    st.set_setting("last_sync_at", utc_text(clock.now + timedelta(days=1)))
    st.set_setting("last_sync_failure", {"at": utc_text(clock.now + timedelta(days=2)), "reason": "timeout"})
    with pytest.raises(errors.WrongAgentPin):
        agents.login_agent(st, "A01", "0000")  # journaled by the clock set right: keeps the floor
    assert device_state(st) is DeviceState.CLOCK_WRONG
    correction = accept_clock(st)
    at = utc_text(correction.at)
    assert set(correction.brought_back) == {"last_sync", "latest_attempt", "kept"}
    reading = read_clock(st)
    assert reading.floor == correction.at and reading.state is DeviceState.READY
    assert {name: utc_text(moment) for name, moment in reading.parts.items() if moment} == {
        "last_entry": at, "last_sync": at, "latest_attempt": at, "kept": at}
    link = st.setting(LINK_SETTING)
    assert link["last_attempt_at"] == link["last_failure_at"] == at and link["rewound"] == 1
    assert st.setting("last_sync_failure")["at"] == at


def test_offline_debits_wait_for_a_sync_and_a_second_correction_keeps_them_waiting(open_drawer, clock):
    st = open_drawer
    agent = log_in(st)
    withdraw(st, agent)
    st.set_setting("last_sync_at", utc_text(clock.now + timedelta(days=3)))  # a sync by the clock ahead
    assert accept_clock(st, REASON).sync_unknown
    agent = log_in(st)
    with pytest.raises(errors.OfflineAgeUnknown):
        withdraw(st, agent)
    deposit(st, agent)  # credits pass
    # The clock runs ahead again before any sync: the second correction keeps the rule.
    ahead_then_right(st, clock, days=1)
    assert accept_clock(st).sync_unknown
    with pytest.raises(errors.OfflineAgeUnknown):
        withdraw(st, log_in(st))


def test_a_last_sync_stamped_right_leaves_the_offline_rules_as_they_were(open_drawer, clock):
    """Only the link ran ahead (failed probes): the last sync time is true, and offline debits go on."""
    st = open_drawer
    st.set_setting("last_sync_at", utc_text(clock.now))
    ahead_then_right(st, clock)
    correction = accept_clock(st)
    assert not correction.sync_unknown and st.setting("last_sync_at") == utc_text(clock.now)
    withdraw(st, log_in(st))


def test_a_serving_process_does_not_write_the_times_ahead_back(open_drawer, clock):
    """`station serve` keeps the link state in memory (written at most every 15 s): after a correction made by
    `station clock accept` in another process, its next write must not put the floor ahead again."""
    serving = open_drawer
    ahead_then_right(serving, clock)
    technician = Station(serving.data_dir, clock=clock)
    try:
        accept_clock(technician)
    finally:
        technician.close()
    clock.advance(seconds=1)
    note_success(serving, "probe", 40)
    assert serving.setting(LINK_SETTING)["latest_attempt_at"] == utc_text(clock.now)
    assert device_state(serving) is DeviceState.READY
    withdraw(serving, log_in(serving))


def test_the_screens_serve_after_a_correction(ui_client, open_drawer, clock):
    """Nothing on the screens breaks: the home screen has no clock-wrong notice, the bar says the sync time is
    unknown, and the offline withdrawal is refused with its own words (the bank is not reachable here)."""
    st = open_drawer
    st.set_setting("last_sync_at", utc_text(clock.now + timedelta(days=3)))
    ahead_then_right(st, clock, days=3)
    login(ui_client)
    assert 'id="clock-wrong"' in ui_client.get("/home").get_data(as_text=True)
    accept_clock(st, REASON)
    english(ui_client)
    assert ui_client.get("/home").location == "/login"  # the session ended with the correction
    login(ui_client)
    home = ui_client.get("/home").get_data(as_text=True)
    assert 'id="clock-wrong"' not in home and "Sync unknown" in home and SYNC_ONCE in home
    assert 'id="tile-withdrawal" disabled' not in home
    assert "unknown: the clock was corrected" in ui_client.get("/sync").get_data(as_text=True)
    ui_client.post("/lang", data={"lang": "zh_CN", "next": "/"})
    assert "时钟已校正：请先同步一次，再办理离线业务。" in ui_client.get("/home").get_data(as_text=True)


def test_status_names_the_commands_and_the_unknown_sync(station, clock):
    station.set_setting("last_sync_at", utc_text(clock.now + timedelta(days=1)))
    ahead_then_right(station, clock)
    accept_clock(station)
    info = station_status(station)
    assert info["clock_corrected"]["sync_unknown"] is True
    assert cli.last_sync_words({**info}).startswith("unknown (stamped by the clock ahead")


# -- the bank's checks ----------------------------------------------------------------------------------------
TS = "2026-11-02T23:40:00.000Z"


@pytest.mark.parametrize("changes, previous_ts, problem", [
    ({}, None, None),
    ({}, "2026-11-03T00:40:00.000Z", None),  # the floor may be the entry before it
    ({"behind_ms": 3_600_001}, None, "but floor − ts is 3600000 ms"),
    ({"behind_ms": True}, None, "behind_ms is True"),
    ({"floor": "2026-11-02T23:40:05.000Z", "behind_ms": 5_000}, None, "not beyond the clock tolerance"),
    ({"floor": "2026-11-03T00:40:00Z"}, None, "not a UTC time in the journal's form"),
    ({"floor": "2026-11-03T08:40:00.000+08:00"}, None, "not a UTC time in the journal's form"),
    ({"floor": "tomorrow"}, None, "not a UTC time in the journal's form"),
    ({"floor": "9999-99-99T00:00:00.000Z"}, None, "not a UTC time in the journal's form"),
    ({"floor": 1}, None, "not a UTC time in the journal's form"),
    ({"ts": "2026-11-02T23:40:00.000500+00:00"}, None, "not a whole number of milliseconds"),
    ({"ts": "yesterday"}, None, "is not a UTC time"),
    ({}, "2026-11-03T00:40:00.001Z", "earlier than the entry before it"),
    ({}, "not a time", None),  # an unreadable entry before it is no evidence
])
def test_a_correction_must_add_up(changes, previous_ts, problem):
    payload = {"ts": TS, "floor": "2026-11-03T00:40:00.000Z", "behind_ms": 3_600_000, "by": "technician", **changes}
    found = correction_problem(payload, previous_ts)
    assert found is None if problem is None else problem in found, found


_times = strategies.one_of(
    strategies.datetimes(timezones=strategies.just(UTC)).map(utc_text),
    strategies.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999Z", "2026-11-02T23:40:00Z",
                             "2026-11-02T23:40:00.000+14:00", "２０２６-11-02T23:40:00.000Z", "", "Z"]),
    strategies.text(max_size=30), strategies.integers(), strategies.none(), strategies.floats())


@settings(max_examples=300, deadline=None)
@given(payload=strategies.fixed_dictionaries({}, optional={
    "ts": _times, "floor": _times, "by": strategies.just("technician"),
    "behind_ms": strategies.one_of(strategies.integers(), strategies.booleans(), strategies.floats())}),
    previous_ts=_times)
def test_whatever_a_correction_says_the_check_answers(payload, previous_ts):
    """The bank runs the check on whatever a signed entry carries: it answers, never raises."""
    problem = correction_problem(payload, previous_ts)
    assert problem is None or isinstance(problem, str)


def test_the_bank_rejects_forged_corrections_and_acknowledges_an_honest_one(server, tmp_path):
    """Signed with the station's own key (a tampered device), corrections that do not add up are rejected as
    malformed_entry, never a server error; the honest one after them is acknowledged. verify-journal agrees."""
    clock = FakeClock(real_time())
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    now = clock.now
    bodies = [
        {"floor": utc_text(now + timedelta(hours=1)), "behind_ms": 3_600_001},
        {"floor": utc_text(now + timedelta(seconds=5)), "behind_ms": 5_000},
        {"floor": "not a time", "behind_ms": 3_600_000},
        {"floor": utc_text(now + timedelta(hours=1)), "behind_ms": 2**53},
        {"floor": utc_text(now - timedelta(hours=1)), "behind_ms": 0},
        {"floor": utc_text(now + timedelta(hours=1)), "behind_ms": 3_600_000, "by": "agent"},
        {"floor": utc_text(now + timedelta(hours=1)), "behind_ms": 3_600_000, "reason": "x\x00y"},
    ]
    with st.write():
        seqs = [append_forged_entry(st, "clock_corrected", now, {"by": "technician", **body}).seq for body in bodies]
        # A floor earlier than the entry before it (stamped two hours on), although it adds up with its own ts.
        append_forged_entry(st, "feedback", now + timedelta(hours=2),
                            {"agent": "A01", "category": "praise", "text": "kind and quick"})
        late = append_forged_entry(st, "clock_corrected", now + timedelta(minutes=30), {
            "floor": utc_text(now + timedelta(minutes=90)), "behind_ms": 3_600_000, "by": "technician"}).seq
    ahead_then_right(st, clock, days=1)
    with st.bound():
        honest = accept_clock(st, REASON)
    result = sync_once(st)
    assert result.rejected == {seq: "malformed_entry" for seq in [*seqs, late]}
    server_db()
    assert Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == honest.seq)).outcome == "acknowledged"
    audit = station_command(st, "verify-journal", "--json")
    problems = json.loads(audit.output)["problems"]
    assert audit.exit_code == 1
    assert {problem["seq"] for problem in problems} == {*seqs, late}
    st.close()
