"""The bank's side of unlocking (SQLite and, with TEST_DATABASE_URL, PostgreSQL): ``sync-server agents
unlock-code`` issues a code that the enrolled station, with no network, accepts once; the issue is in the station's
audit trail; the ``agent_unlocked`` entries that reach the bank are checked against what it can check (a supervisor
the station added, a code it issued), and one that fails is rejected ``unlock_not_authorized``, never a failed
sync."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sync_support import append_forged_entry, enrolled_station, open_counter, server_db

from station import agents, bank_unlock, errors
from station.sync import sync_once
from sync_server.cli import cli as server_cli
from sync_server.db import Entry, StationEvent


def issue(server, *args: str):
    return CliRunner().invoke(server_cli, ["agents", "unlock-code", "--database-url", server.database_url,
                                           "--keys-dir", str(server.keys_dir), *args])


def code_of(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def lock(st, agent_id: str) -> None:
    for _ in range(st.policy["agent_pin_tries"]):
        with pytest.raises((errors.WrongAgentPin, errors.AgentLocked, errors.AgentWaiting)):
            agents.login_agent(st, agent_id, "0000")


def forge(st, body: dict) -> int:
    with st.write():
        return append_forged_entry(st, "agent_unlocked", st.now(), body).seq


def test_a_code_read_out_over_the_phone_unlocks_once_and_the_bank_accepts_it(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    open_counter(st)
    sync_once(st)  # the bank learns of the station's people
    lock(st, "A01")
    result = issue(server, "ST-0001", "a01", "--reason", "agent forgot PIN, called 10:40", "--by", "Li Wei")
    assert "Unlock code 1 for A01 at ST-0001" in result.output
    code = code_of(result)
    assert len(code.replace(" ", "")) == 8
    receipt = bank_unlock.unlock_with_code(st, "A01", code)
    lock(st, "A01")
    with pytest.raises(errors.UnlockCodeWrong):
        bank_unlock.unlock_with_code(st, "A01", code)  # used once already
    assert sync_once(st).rejected == {}
    server_db()
    entry = Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == receipt.seq))
    assert (entry.type, entry.outcome) == ("agent_unlocked", "acknowledged")
    (event,) = StationEvent.select().where(StationEvent.action == "unlock_code")
    assert (event.by, event.reason, event.detail) == ("Li Wei", "agent forgot PIN, called 10:40",
                                                      {"agent": "A01", "counter": 1})
    # The next code takes the next counter.
    assert "Unlock code 2 for A01" in issue(server, "ST-0001", "A01", "--reason", "again", "--by", "Li Wei").output


def test_the_bank_rejects_an_unlock_it_cannot_vouch_for(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    open_counter(st)
    sync_once(st)
    code_of(issue(server, "ST-0001", "A01", "--reason", "called", "--by", "Li Wei"))
    seqs = {
        "supervisor": forge(st, {"agent": "A01", "by": "supervisor", "supervisor": "S01"}),
        "older station": forge(st, {"agent": "A01", "supervisor": "S01"}),
        "technician": forge(st, {"agent": "A01", "by": "technician"}),
        "issued code": forge(st, {"agent": "A01", "by": "bank_code", "code_counter": 1}),
        "agent as supervisor": forge(st, {"agent": "S01", "by": "supervisor", "supervisor": "A01"}),
        "own unlock": forge(st, {"agent": "S01", "supervisor": "S01"}),
        "no supervisor": forge(st, {"agent": "A01", "by": "supervisor"}),
        "code never issued": forge(st, {"agent": "A01", "by": "bank_code", "code_counter": 2}),
        "code for another": forge(st, {"agent": "S01", "by": "bank_code", "code_counter": 1}),
        "code without counter": forge(st, {"agent": "A01", "by": "bank_code"}),
        "counter on a supervisor's": forge(st, {"agent": "A01", "supervisor": "S01", "code_counter": 1}),
        "unknown by": forge(st, {"agent": "A01", "by": "the mayor"}),
    }
    rejected = sync_once(st).rejected
    assert {name: rejected.get(seq) for name, seq in seqs.items()} == {
        "supervisor": None, "older station": None, "technician": None, "issued code": None,
        "agent as supervisor": "unlock_not_authorized", "own unlock": "unlock_not_authorized",
        "no supervisor": "unlock_not_authorized", "code never issued": "unlock_not_authorized",
        "code for another": "unlock_not_authorized", "code without counter": "unlock_not_authorized",
        "counter on a supervisor's": "malformed_entry", "unknown by": "malformed_entry",
    }


@pytest.mark.parametrize(("args", "message"), [
    (["ST-9999", "A01", "--reason", "x", "--by", "Li Wei"], "The bank knows no station ST-9999."),
    (["ST-0001", "A01", "--reason", " ", "--by", "Li Wei"], "Give the reason (--reason)"),
    (["ST-0001", "A02", "--reason", "x", "--by", "Li Wei"], "The bank has no record of an agent A02 at station "
                                                              "ST-0001"),
    (["ST-0002", "A01", "--reason", "x", "--by", "Li Wei"], "Station ST-0002 has not enrolled"),
])
def test_a_code_the_bank_cannot_issue_is_refused_with_the_reason(server, tmp_path, clock, args, message):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    open_counter(st)
    sync_once(st)
    st.close()
    server_db()
    # ST-0002 is known to the bank, its agent A01 too (as if reported), but it never enrolled: no key to derive from.
    Entry.insert(station_id="ST-0002", seq=1, type="agent_added", txn=None, received_at="2026-11-02T00:00:00Z",
                 outcome="acknowledged", token=Entry.get((Entry.station_id == "ST-0001")
                                                         & (Entry.type == "agent_added")).token).execute()
    result = issue(server, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert StationEvent.select().where(StationEvent.action == "unlock_code").count() == 0
