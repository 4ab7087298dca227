"""Wrong PINs never stop a station (issue 13): the last supervisor who can log in waits instead of being locked, the
waits grow and are measured on the boot clock (setting the date cannot shorten them), and a locked agent is unlocked
by a supervisor, by the technician (``station agent unlock``) or by the bank's one-time code, each journaled."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from station import agents, bank_unlock, errors
from station.cli import cli
from station.db import Agent, JournalEntry
from station.protocol import key_codecs
from station.protocol.tokens import unverified_payload
from station.protocol.unlock_codes import LOOK_AHEAD, unlock_code, unlock_key
from station.sync import ENCRYPTION_KEY_FILE

AGENT_PIN, SUPERVISOR_PIN = "1357", "2468"


class BootClock:
    """The boot clock the test moves by hand: (boot id, seconds since boot)."""

    def __init__(self):
        self.boot, self.seconds = "boot-1", 1000.0

    def __call__(self):
        return self.boot, self.seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds

    def reboot(self) -> None:
        self.boot, self.seconds = f"{self.boot}+", 20.0


@pytest.fixture
def boot(station):
    station.boot_clock = BootClock()
    return station.boot_clock


def entries(st, entry_type: str) -> list[dict]:
    return [unverified_payload(e.token) for e in JournalEntry.select().where(JournalEntry.type == entry_type)
            .order_by(JournalEntry.seq)]


def wrong_pins(st, agent_id: str, count: int) -> list[errors.StationError]:
    """``count`` wrong PINs for ``agent_id``: the refusal of each."""
    refusals = []
    for _ in range(count):
        with pytest.raises(errors.StationError) as refused:
            agents.login_agent(st, agent_id, "0000")
        refusals.append(refused.value)
    return refusals


def test_the_last_supervisor_waits_instead_of_being_locked(station, boot, clock):
    refusals = wrong_pins(station, "S01", 5)
    assert [type(r) for r in refusals] == [errors.WrongAgentPin] * 4 + [errors.AgentWaiting]
    assert refusals[-1].params == {"minutes": 1, "time": "07:41"}  # 23:40 UTC is 07:40 in Beijing
    assert refusals[-1].message == "Too many wrong PINs. Try again in 1 min, at 07:41."
    assert not Agent.get_by_id("S01").locked
    assert entries(station, "agent_pin_failed")[-1] == {
        **entries(station, "agent_pin_failed")[-1], "failures": 5, "locked": False, "wait_seconds": 60}
    # While the wait lasts even the right PIN is refused, and costs no try (nothing journaled).
    head = JournalEntry.select().count()
    with pytest.raises(errors.AgentWaiting):
        agents.login_agent(station, "S01", SUPERVISOR_PIN)
    assert JournalEntry.select().count() == head
    # Setting the station's clock a day forward does not shorten it: the wait runs on the boot clock.
    clock.advance(days=1)
    with pytest.raises(errors.AgentWaiting):
        agents.login_agent(station, "S01", SUPERVISOR_PIN)
    boot.advance(60)
    assert agents.login_agent(station, "S01", SUPERVISOR_PIN).role == "supervisor"
    assert Agent.get_by_id("S01").failed_pins == 0
    assert agents.pin_wait(station, "S01") == 0


def test_each_further_wrong_pin_doubles_the_wait_up_to_four_hours(station, boot):
    wrong_pins(station, "S01", 5)
    waits = []
    for _ in range(10):
        boot.advance(agents.pin_wait(station, "S01"))
        (refusal,) = wrong_pins(station, "S01", 1)
        assert isinstance(refusal, errors.AgentWaiting)
        waits.append(entries(station, "agent_pin_failed")[-1]["wait_seconds"])
    assert waits == [120, 240, 480, 960, 1920, 3840, 7680, 14400, 14400, 14400]
    assert not Agent.get_by_id("S01").locked


def test_a_reboot_starts_the_wait_over(station, boot):
    wrong_pins(station, "S01", 5)
    boot.advance(50)
    assert agents.pin_wait(station, "S01") == 10
    boot.reboot()  # how long the device was off is unknown: the whole wait again
    assert agents.pin_wait(station, "S01") == 60
    boot.advance(60)
    assert agents.pin_wait(station, "S01") == 0


def test_ten_wrong_taps_do_not_stop_the_station(station, boot):
    """Five wrong PINs on the agent and five on the supervisor: the agent is locked, the supervisor waits a
    minute, logs in and unlocks the agent, and the counter serves again."""
    wrong_pins(station, "A01", 5)
    wrong_pins(station, "S01", 5)
    assert Agent.get_by_id("A01").locked
    boot.advance(60)
    supervisor = agents.login_agent(station, "S01", SUPERVISOR_PIN)
    agents.unlock_agent(station, supervisor, "A01")
    assert agents.login_agent(station, "A01", AGENT_PIN).agent_id == "A01"


def test_a_supervisor_is_locked_while_another_can_still_log_in(station, boot):
    agents.add_agent(station, "S02", "王主管 Wang", "supervisor", "8642")
    assert isinstance(wrong_pins(station, "S01", 5)[-1], errors.AgentLocked)
    # S02 is now the last supervisor who can log in: wrong PINs make them wait, never lock them.
    assert isinstance(wrong_pins(station, "S02", 5)[-1], errors.AgentWaiting)
    boot.advance(60)
    second = agents.login_agent(station, "S02", "8642")
    agents.unlock_agent(station, second, "S01")
    assert agents.login_agent(station, "S01", SUPERVISOR_PIN).agent_id == "S01"


def test_a_supervisor_unlock_is_journaled_with_who_unlocked(station, supervisor):
    wrong_pins(station, "A01", 5)
    receipt = agents.unlock_agent(station, supervisor, "A01")
    assert receipt.type == "agent_unlocked"
    assert entries(station, "agent_unlocked") == [{
        **entries(station, "agent_unlocked")[0], "agent": "A01", "by": "supervisor", "supervisor": "S01"}]
    with pytest.raises(errors.AgentNotLocked):
        agents.unlock_agent(station, supervisor, "A01")
    with pytest.raises(errors.AgentUnknown):
        agents.unlock_agent(station, supervisor, "NOBODY")
    assert len(entries(station, "agent_unlocked")) == 1


def test_the_technician_unlocks_at_the_command_line(station, boot):
    wrong_pins(station, "S01", 5)
    wrong_pins(station, "A01", 5)
    runner = CliRunner()
    listed = runner.invoke(cli, ["agent", "list", "--data-dir", str(station.data_dir)]).output
    assert [line.split()[:3] for line in listed.splitlines()] == [["S01", "supervisor", "WAIT"],
                                                                ["A01", "agent", "LOCKED"]]
    result = runner.invoke(cli, ["agent", "unlock", "--data-dir", str(station.data_dir), "s01"])
    assert result.exit_code == 0, result.output
    assert "Unlocked S01 at station ST-0001" in result.output
    assert entries(station, "agent_unlocked")[-1]["by"] == "technician"
    assert "supervisor" not in entries(station, "agent_unlocked")[-1]
    assert agents.login_agent(station, "S01", SUPERVISOR_PIN).agent_id == "S01"  # no wait left
    again = runner.invoke(cli, ["agent", "unlock", "--data-dir", str(station.data_dir), "S01"])
    assert again.exit_code == 1
    assert "S01: This person is not locked: nothing to unlock." in again.output
    unknown = runner.invoke(cli, ["agent", "unlock", "--data-dir", str(station.data_dir), "X9"])
    assert "X9: Unknown agent ID or wrong PIN." in unknown.output


# -- the bank's one-time code -----------------------------------------------------------------------------------
@pytest.fixture
def server_key(station):
    """The station given an encryption key and the server's public one, as enrollment writes them: the server's
    private key (to compute codes as the bank does)."""
    server = key_codecs.generate_encryption_key()
    own = key_codecs.generate_encryption_key()
    (station.data_dir / ENCRYPTION_KEY_FILE).write_text(key_codecs.encryption_private_to_text(own))
    station.config["server"] = {"encryption_jwk": key_codecs.encryption_public_jwk(server)}
    return server


def bank_code(station, server_key, agent_id: str, counter: int) -> str:
    public = key_codecs.encryption_public_from_jwk(
        key_codecs.encryption_public_jwk(key_codecs.encryption_private_from_text(
            (station.data_dir / ENCRYPTION_KEY_FILE).read_text())))
    return unlock_code(unlock_key(server_key, public, station.station_id, agent_id), counter)


def test_a_bank_code_unlocks_once(station, boot, server_key):
    wrong_pins(station, "A01", 5)
    code = bank_code(station, server_key, "A01", 1)
    receipt = bank_unlock.unlock_with_code(station, "A01", f"{code[:4]} {code[4:]}")
    assert receipt.type == "agent_unlocked"
    assert entries(station, "agent_unlocked")[-1] == {
        **entries(station, "agent_unlocked")[-1], "agent": "A01", "by": "bank_code", "code_counter": 1}
    wrong_pins(station, "A01", 5)
    with pytest.raises(errors.UnlockCodeWrong):
        bank_unlock.unlock_with_code(station, "A01", code)  # used already
    # A code for another person, and the next code for the agent typed in full-width digits.
    with pytest.raises(errors.UnlockCodeWrong):
        bank_unlock.unlock_with_code(station, "A01", bank_code(station, server_key, "S01", 2))
    bank_unlock.unlock_with_code(station, "A01", bank_code(station, server_key, "A01", 2).translate(
        str.maketrans("0123456789", "０１２３４５６７８９")))
    assert entries(station, "agent_unlocked")[-1]["code_counter"] == 2


def test_codes_the_station_never_saw_are_skipped_within_the_look_ahead(station, boot, server_key):
    wrong_pins(station, "A01", 5)
    with pytest.raises(errors.UnlockCodeWrong):
        bank_unlock.unlock_with_code(station, "A01", bank_code(station, server_key, "A01", LOOK_AHEAD + 1))
    bank_unlock.unlock_with_code(station, "A01", bank_code(station, server_key, "A01", LOOK_AHEAD))
    # Using counter 5 voided the older codes 1 to 4.
    wrong_pins(station, "A01", 5)
    with pytest.raises(errors.UnlockCodeWrong):
        bank_unlock.unlock_with_code(station, "A01", bank_code(station, server_key, "A01", 3))


def test_wrong_codes_make_the_code_screen_wait(station, boot, server_key, clock):
    wrong_pins(station, "A01", 5)
    for _ in range(bank_unlock.FREE_CODE_TRIES):
        with pytest.raises(errors.UnlockCodeWrong):
            bank_unlock.unlock_with_code(station, "A01", "12345678")
    right = bank_code(station, server_key, "A01", 1)
    with pytest.raises(errors.UnlockCodesWaiting, match="Try again in 1 min"):
        bank_unlock.unlock_with_code(station, "A01", right)
    clock.advance(hours=2)
    with pytest.raises(errors.UnlockCodesWaiting):
        bank_unlock.unlock_with_code(station, "A01", right)
    boot.advance(60)
    bank_unlock.unlock_with_code(station, "A01", right)
    assert bank_unlock.code_wait(station) == 0


def test_a_station_not_enrolled_cannot_check_codes(station, boot):
    wrong_pins(station, "A01", 5)
    with pytest.raises(errors.UnlockCodesUnavailable):
        bank_unlock.unlock_with_code(station, "A01", "12345678")


def test_a_code_unlock_of_an_agent_not_locked_spends_nothing(station, server_key):
    code = bank_code(station, server_key, "A01", 1)
    with pytest.raises(errors.AgentNotLocked):
        bank_unlock.unlock_with_code(station, "A01", code)
    assert station.setting(bank_unlock.COUNTER_SETTING) is None
    assert json.dumps(entries(station, "agent_unlocked")) == "[]"
