"""The login screen's ways out of a lock (Flask test client): a locked name shows why and the unlock buttons instead
of the PIN pad; a supervisor unlocks with their own PIN; the bank's code unlocks; the last supervisor's wait is shown
with the time to try again; each refusal is a plain message, never a 500."""

from __future__ import annotations

import re

import pytest
from test_agent_unlock import BootClock, bank_code, server_key, wrong_pins  # noqa: F401 (server_key: a fixture)
from ui_helpers import AGENT_PIN, SUPERVISOR_PIN, english, error_of

from station import agents
from station.app import create_app
from station.db import Agent, JournalEntry


@pytest.fixture
def boot(station):
    station.boot_clock = BootClock()
    return station.boot_clock


@pytest.fixture
def client(ui_client, station, boot):
    english(ui_client)
    return ui_client


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_locked_name_shows_the_ways_out_instead_of_the_pin_pad(client, station):
    wrong_pins(station, "A01", 5)
    html = page(client, "/login?agent_id=A01")
    assert error_of(html) == "This agent is locked after too many wrong PINs. A supervisor must unlock it."
    assert 'id="pin"' not in html
    assert 'id="unlock-supervisor"' in html and 'id="unlock-code"' in html


def test_the_fifth_wrong_pin_on_screen_leads_to_the_ways_out(client, station):
    for _ in range(4):
        client.post("/login", data={"agent_id": "A01", "pin": "0000"})
    html = client.post("/login", data={"agent_id": "A01", "pin": "0000"}).get_data(as_text=True)
    assert "A supervisor must unlock it" in error_of(html)
    assert 'id="unlock-supervisor"' in html


def test_a_supervisor_unlocks_with_their_own_pin(client, station):
    wrong_pins(station, "A01", 5)
    html = page(client, "/unlock/?agent_id=A01")  # one supervisor: straight to their PIN pad
    assert "Supervisor 周主管 Zhou: type your own PIN" in html
    refused = client.post("/unlock/", data={"agent_id": "A01", "supervisor_id": "S01", "pin": "0000"})
    assert error_of(refused.get_data(as_text=True)) == "Wrong PIN. Tries left before a wait: 4."
    assert Agent.get_by_id("A01").locked
    done = client.post("/unlock/", data={"agent_id": "A01", "supervisor_id": "S01", "pin": SUPERVISOR_PIN})
    assert done.status_code == 302 and done.headers["Location"] == "/login?agent_id=A01"
    assert "田师傅 Tian is unlocked: type your PIN." in page(client, "/login?agent_id=A01")
    assert client.post("/login", data={"agent_id": "A01", "pin": AGENT_PIN}).headers["Location"] == "/home"
    # The supervisor was not logged in by unlocking: the agent's session is the agent's.
    assert JournalEntry.select().where(JournalEntry.type == "agent_unlocked").count() == 1


def test_an_agent_cannot_unlock_and_a_person_not_locked_goes_back_to_login(client, station):
    wrong_pins(station, "A01", 5)
    agents.add_agent(station, "A02", "小刘 Liu", "agent", "8642")
    # Only supervisors are offered; naming an agent as the supervisor shows the choice again, unlocks nothing.
    html = client.post("/unlock/", data={"agent_id": "A01", "supervisor_id": "A02", "pin": "8642"}).get_data(
        as_text=True)
    assert 'id="supervisor-A02"' not in html and Agent.get_by_id("A01").locked
    assert client.get("/unlock/?agent_id=A02").headers["Location"] == "/login?agent_id=A02"
    assert client.get("/unlock/code?agent_id=NOBODY").headers["Location"] == "/login?agent_id=NOBODY"


def test_the_last_supervisor_sees_when_to_try_again(client, station, boot):
    wrong_pins(station, "S01", 5)
    html = page(client, "/login?agent_id=S01")
    assert error_of(html) == "Too many wrong PINs. Try again in 1 min, at 07:41."
    assert 'http-equiv="refresh" content="61;url=/login?agent_id=S01"' in html
    assert 'id="unlock-supervisor"' not in html  # no other supervisor: the bank's code is the way out
    assert "the bank reads out a one-time code by phone" in html
    boot.advance(60)
    assert 'id="pin"' in page(client, "/login?agent_id=S01")


def test_the_bank_code_unlocks_on_screen(client, station, server_key):  # noqa: F811
    wrong_pins(station, "S01", 5)
    html = page(client, "/unlock/code?agent_id=S01")
    assert "Tell them station ST-0001 and ID S01; type the 8 digits they read out." in html
    wrong = client.post("/unlock/code", data={"agent_id": "S01", "code": "1234"})
    assert error_of(wrong.get_data(as_text=True)) == (
        "This unlock code is wrong, used already, or for another person. Check it with the bank.")
    done = client.post("/unlock/code", data={"agent_id": "S01", "code": bank_code(station, server_key, "S01", 1)})
    assert done.headers["Location"] == "/login?agent_id=S01"
    assert client.post("/login", data={"agent_id": "S01", "pin": SUPERVISOR_PIN}).headers["Location"] == "/home"


def test_a_station_not_enrolled_says_it_cannot_check_codes(client, station):
    wrong_pins(station, "A01", 5)
    html = client.post("/unlock/code", data={"agent_id": "A01", "code": "12345678"}).get_data(as_text=True)
    assert error_of(html) == ("This station is not enrolled with the bank, so it cannot check unlock codes. Call the "
                              "technician.")


def test_an_unlock_needs_the_form_token(station, boot):
    """A page elsewhere cannot post an unlock (the supervisor's PIN would be a guess anyway: it counts as one)."""
    wrong_pins(station, "A01", 5)
    client = create_app({"STATION": station, "SECRET_KEY": "csrf-test"}).test_client()
    for path in ("/unlock/", "/unlock/code"):
        response = client.post(path, data={"agent_id": "A01", "supervisor_id": "S01", "pin": SUPERVISOR_PIN,
                                           "code": "12345678"})
        assert response.status_code == 400
    assert Agent.get_by_id("A01").locked and Agent.get_by_id("S01").failed_pins == 0
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/unlock/?agent_id=A01").get_data(
        as_text=True)).group(1)
    client.post("/unlock/", data={"agent_id": "A01", "supervisor_id": "S01", "pin": SUPERVISOR_PIN,
                                  "csrf_token": token})
    assert not Agent.get_by_id("A01").locked


def test_with_the_clock_wrong_the_ways_out_say_so_and_keep_the_code(client, station, clock, server_key):  # noqa: F811
    """The unlock is a journaled write: with the clock set back it is refused with the clock's message (by a
    supervisor and by the bank's code), the person stays locked, and the code is not used up: it works once the
    clock is right."""
    wrong_pins(station, "A01", 5)
    clock.advance(hours=-1)
    clock_wrong = "The clock is wrong: it is earlier than what this station already recorded."
    by_supervisor = client.post("/unlock/", data={"agent_id": "A01", "supervisor_id": "S01", "pin": SUPERVISOR_PIN})
    assert error_of(by_supervisor.get_data(as_text=True)).startswith(clock_wrong)
    code = bank_code(station, server_key, "A01", 1)
    by_code = client.post("/unlock/code", data={"agent_id": "A01", "code": code})
    assert error_of(by_code.get_data(as_text=True)).startswith(clock_wrong)
    assert Agent.get_by_id("A01").locked
    clock.advance(hours=1)
    done = client.post("/unlock/code", data={"agent_id": "A01", "code": code})
    assert done.status_code == 302 and not Agent.get_by_id("A01").locked
