"""The bank's side of the fraud warning, on SQLite and PostgreSQL (``TEST_DATABASE_URL``): it re-checks the warning
and the supervisor's approval of every transfer, acknowledges stopped transfers without moving money and lists them
(``sync-server fraud stopped``), and sends the scam markers and the customers' birth years down."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sync_support import BACKENDS, append_forged_entry, enrolled_station, open_counter, server_db, start_module_bank

from station import operations, receipts
from station.db import Customer, Payee
from station.protocol.demo_data import demo_birth_year
from station.sync import sync_once
from sync_server.checks import check_ledger
from sync_server.cli import cli
from sync_server.db import Posting, ServerSetting, db_proxy

HOME = "DM00010000"  # home only at ST-0001 (hold 1,000 yuan), with a known payee (index 0)
NEW_PAYEE = "6222000011112222"


class Clock:
    def __init__(self):
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self):
        return self.now


@pytest.fixture(scope="module", params=BACKENDS)
def bank(request, tmp_path_factory):
    """One bank and its station ST-0001, the demo agents added (S01 is its supervisor) and the day open."""
    tmp = tmp_path_factory.mktemp("fraud")
    server = start_module_bank(request, tmp, ["ST-0001", "ST-0002"])
    st = enrolled_station(server, tmp, "ST-0001", Clock())
    agent, _supervisor = open_counter(st)
    yield server, st, agent
    st.close()
    server.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


def forge(st, body: dict, entry_type: str = "transfer") -> int:
    """An entry the station's own key signs without the station's checks; its seq."""
    with st.write():
        return append_forged_entry(st, entry_type, st.now(), {"agent": "A01", **body},
                                   txn=receipts.new_txn_id()).seq


def transfer(payee_account: str, name: str, amount: int, **extra) -> dict:
    return {"account": HOME, "amount": amount, "fee": 200, "payee_account": payee_account, "payee_name": name, **extra}


def known_payee(st) -> str:
    with st.bound():
        return Payee.get(Payee.customer == Customer.get(Customer.account_id == HOME).id).account


def station_policy(**overrides) -> None:
    server_db()
    row = ServerSetting.get_by_id("policy")
    ServerSetting.update(value={**row.value, "station": {**row.value.get("station", {}), **overrides}}).where(
        ServerSetting.key == "policy").execute()


@pytest.fixture
def invoke(bank):
    server, _, _ = bank

    def call(*args: str):
        result = CliRunner().invoke(cli, [*args, "--database-url", server.database_url])
        server_db()
        return result

    return call


def test_the_bank_refuses_a_transfer_the_warning_was_due_for_and_not_gone_past(bank):
    _, st, _ = bank
    known = known_payee(st)
    seqs = {
        "new payee": forge(st, transfer(NEW_PAYEE, "王小明", 10_000)),
        "scam name, known payee": forge(st, transfer(known, "公 安 局 安全账户", 10_000)),
        "full-width scam name": forge(st, transfer(known, "ＸＸ法院专案组", 10_000)),
        "scam name, gone past": forge(st, transfer(known, "公安局安全账户", 10_000, warned=True)),
        "known payee": forge(st, transfer(known, "王秀英", 10_000)),
    }
    assert sync_once(st).rejected == {seqs["new payee"]: "fraud_warning_skipped",
                                      seqs["scam name, known payee"]: "fraud_warning_skipped",
                                      seqs["full-width scam name"]: "fraud_warning_skipped"}
    server_db()
    assert check_ledger() == []


def test_past_the_supervisor_threshold_the_bank_wants_a_supervisor_of_the_station(bank):
    _, st, _ = bank
    station_policy(fraud_supervisor_fen=20_000)
    sync_once(st)
    assert st.policy["fraud_supervisor_fen"] == 20_000  # sent down: the station applies what the bank checks
    seqs = {who: forge(st, transfer(NEW_PAYEE, "王小明", 20_000, warned=True,
                                    **({"approved_by": who} if who else {})))
            for who in (None, "A01", "S09", "S01")}
    assert sync_once(st).rejected == {seqs[who]: "supervisor_approval_missing" for who in (None, "A01", "S09")}
    station_policy(fraud_supervisor_fen=1_000_000)
    sync_once(st)


def test_a_stopped_transfer_is_acknowledged_moves_nothing_and_is_listed(bank, invoke):
    _, st, agent = bank
    with st.bound():
        customer = Customer.get(Customer.account_id == HOME)
    stopped = operations.stop_transfer(st, agent, customer, NEW_PAYEE, "公安局安全账户", "8000", receipts.new_txn_id())
    bad_marker = forge(st, {"account": HOME, "amount": 100, "payee_account": NEW_PAYEE, "payee_name": "王小明",
                            "new_payee": True, "over_threshold": False, "markers": ["公安"]}, "transfer_stopped")
    stranger = forge(st, {"account": "NOBODY01", "amount": 100, "payee_account": NEW_PAYEE, "payee_name": "公安",
                          "new_payee": True, "over_threshold": False, "markers": ["公安"]}, "transfer_stopped")
    assert sync_once(st).rejected == {bad_marker: "malformed_entry", stranger: "unknown_account"}
    server_db()
    assert not Posting.select().where((Posting.station_id == "ST-0001") & (Posting.seq == stopped.seq)).exists()
    assert check_ledger() == []

    listed = invoke("fraud", "stopped", "--station", "ST-0001")
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.output.splitlines()]
    assert [(row[0], row[1], row[3], row[4], row[5], row[6], row[7], row[8]) for row in lines] == [
        ("ST-0001", str(stopped.seq), "A01", HOME, "800000", NEW_PAYEE, "公安局安全账户",
         "new payee, large amount, 安全账户, 公安")]
    rows = json.loads(invoke("fraud", "stopped", "--json").output)
    assert [(row["station_id"], row["seq"], row["markers"]) for row in rows] == [
        ("ST-0001", stopped.seq, ["安全账户", "公安"])]
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert invoke("fraud", "stopped", "--since", tomorrow).output == "No transfer was stopped at the fraud warning.\n"
    assert "No transfer" in invoke("fraud", "stopped", "--station", "ST-0002").output
    assert invoke("fraud", "stopped", "--since", "yesterday").exit_code == 2


def test_the_banks_markers_and_birth_years_come_down(bank, invoke):
    _, st, _ = bank
    refused = invoke("fraud", "markers", "--set", "x" * 17)
    assert refused.exit_code == 1 and "1 to 16 characters" in refused.output
    assert invoke("fraud", "markers").output.splitlines()[:3] == ["安全账户", "安全帐户", "警官"]
    assert invoke("fraud", "markers", "--set", "刷单返利", "--set", "安全账户").output == "刷单返利\n安全账户\n"
    sync_once(st)
    assert st.policy["scam_markers"] == ["刷单返利", "安全账户"]
    assert forge(st, transfer(known_payee(st), "刷 单 返 利", 10_000)) in sync_once(st).rejected
    with st.bound():
        years = {c.account_id: c.birth_year for c in Customer.select()}
    assert years[HOME] == demo_birth_year(0) and years["DM00010001"] == demo_birth_year(1)
