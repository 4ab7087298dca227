"""Hostile input to the bank's side of issue 12's entry fields and policy keys, on SQLite and PostgreSQL
(``TEST_DATABASE_URL``): signed entries with the new fields of the wrong JSON type or shape, a stopped transfer of
another station's customer, a day close approved by an agent or by another station's supervisor, and policy values
an admin typed wrong. Each is rejected with its reason (or the default policy applies), the rest of the batch goes
on, nothing fails the sync, and recon reads the result."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sync_support import BACKENDS, append_forged_entry, enrolled_station, open_counter, server_db, start_module_bank

from station import receipts
from station.protocol.entry_types import MAX_TEXT, MAX_TEXTS
from station.sync import sync_once
from sync_server.checks import check_ledger
from sync_server.db import Entry, ServerSetting, db_proxy

HOME = "DM00010000"  # home only at ST-0001
OTHERS = "DM00020000"  # home only at ST-0002
PAYEE = "6222000011112222"
HASH = "0" * 64


class Clock:
    def __init__(self):
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self):
        return self.now


@pytest.fixture(scope="module", params=BACKENDS)
def bank(request, tmp_path_factory):
    """The bank, ST-0001 with the demo agents (S01 its supervisor) and the day open, and ST-0002, which added a
    supervisor S77 of its own."""
    tmp = tmp_path_factory.mktemp("hostile12")
    server = start_module_bank(request, tmp, ["ST-0001", "ST-0002"])
    st = enrolled_station(server, tmp, "ST-0001", Clock())
    open_counter(st)
    other = enrolled_station(server, tmp / "other", "ST-0002", Clock())
    forge(other, {"agent": "S77", "role": "supervisor"}, "agent_added", txn=None)
    assert sync_once(other).rejected == {}
    other.close()
    yield server, st
    st.close()
    server.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


def forge(st, body: dict, entry_type: str, txn: str | None | bool = True) -> int:
    """An entry the station's own key signs without the station's checks; its seq."""
    with st.write():
        return append_forged_entry(st, entry_type, st.now(), body,
                                   txn=receipts.new_txn_id() if txn is True else txn).seq


def transfer(**extra) -> dict:
    return {"agent": "A01", "account": HOME, "amount": 10_000, "fee": 200, "payee_account": PAYEE,
            "payee_name": "王小明", "warned": True, **extra}


def withdrawal(**extra) -> dict:
    return {"agent": "A01", "account": HOME, "amount": 10_000, **extra}


def stopped(**extra) -> dict:
    return {"agent": "A01", "account": HOME, "amount": 10_000, "payee_account": PAYEE, "payee_name": "公安局安全账户",
            "new_payee": True, "over_threshold": False, "markers": ["公安"], **extra}


def day_close(**extra) -> dict:
    # 50 yuan short: beyond the default tolerance (10 yuan).
    return {"agent": "A01", "amount": 2_995_000, "expected": 3_000_000, "variance": -5_000, "counts": {"5000": 599},
            "operations": 0, "business_date": "2026-12-02", **extra}


def station_policy(**overrides) -> None:
    server_db()
    row = ServerSetting.get_by_id("policy")
    ServerSetting.update(value={**row.value, "station": {**row.value.get("station", {}), **overrides}}).where(
        ServerSetting.key == "policy").execute()


def test_new_fields_of_the_wrong_type_or_shape_are_rejected_and_the_batch_goes_on(bank):
    _, st = bank
    malformed = [
        forge(st, transfer(warned="true"), "transfer"),
        forge(st, transfer(warned=1), "transfer"),
        forge(st, transfer(warned=None), "transfer"),
        forge(st, transfer(approved_by=5), "transfer"),
        forge(st, transfer(approved_by=""), "transfer"),
        forge(st, transfer(approved_by="S0\x001"), "transfer"),
        forge(st, transfer(approved_by=["S01"]), "transfer"),
        forge(st, withdrawal(proxy="yes"), "withdrawal"),
        forge(st, withdrawal(id_hash=12345, id_last4="1234"), "withdrawal"),
        forge(st, withdrawal(id_hash=HASH.upper().replace("0", "A"), id_last4="1234"), "withdrawal"),
        forge(st, withdrawal(id_hash=HASH[:63], id_last4="1234"), "withdrawal"),
        forge(st, withdrawal(id_hash=HASH, id_last4="12345"), "withdrawal"),
        forge(st, withdrawal(id_hash=HASH, id_last4="x234"), "withdrawal"),
        forge(st, withdrawal(id_hash=HASH), "withdrawal"),
        forge(st, withdrawal(id_last4="1234", proxy=True), "withdrawal"),
        forge(st, stopped(markers="公安"), "transfer_stopped"),
        forge(st, stopped(markers=[1]), "transfer_stopped"),
        forge(st, stopped(markers=[""]), "transfer_stopped"),
        forge(st, stopped(markers=["公\x07安"]), "transfer_stopped"),
        forge(st, stopped(markers=["公" * 65]), "transfer_stopped"),
        forge(st, stopped(markers=["公安"] * (MAX_TEXTS + 1)), "transfer_stopped"),
        forge(st, stopped(markers={"公安": 1}), "transfer_stopped"),
        forge(st, stopped(new_payee="true"), "transfer_stopped"),
        forge(st, stopped(over_threshold=0), "transfer_stopped"),
        forge(st, stopped(payee_name="公安\n局"), "transfer_stopped"),
        forge(st, day_close(reason=["drawer"], supervisor="S01"), "day_close", txn=None),
        forge(st, day_close(reason="x" * (MAX_TEXT + 1), supervisor="S01"), "day_close", txn=None),
        forge(st, day_close(reason="少\x1b[2J一张", supervisor="S01"), "day_close", txn=None),
        forge(st, day_close(reason="少一张", supervisor=77), "day_close", txn=None),
        forge(st, day_close(reason="少一张", supervisor=None), "day_close", txn=None),
    ]
    fine = forge(st, {"agent": "A01", "account": HOME, "amount": 10_000}, "deposit")
    result = sync_once(st)
    assert result.rejected == dict.fromkeys(malformed, "malformed_entry")
    server_db()
    assert Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == fine)).outcome == "settled"
    assert check_ledger() == []


def test_a_stopped_transfer_of_another_stations_customer_is_not_authorized(bank):
    _, st = bank
    others = forge(st, stopped(account=OTHERS), "transfer_stopped")
    own = forge(st, stopped(), "transfer_stopped")
    assert sync_once(st).rejected == {others: "not_authorized"}
    server_db()
    assert Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == own)).outcome == "acknowledged"


def test_a_variance_approved_by_an_agent_or_another_stations_supervisor_is_not_approved(bank):
    _, st = bank
    refused = [
        forge(st, day_close(reason="少一张", supervisor="A01"), "day_close", txn=None),  # an agent, not a supervisor
        forge(st, day_close(reason="少一张", supervisor="S77"), "day_close", txn=None),  # ST-0002's supervisor
        forge(st, day_close(reason="少一张", supervisor="S99"), "day_close", txn=None),  # nobody
        forge(st, day_close(reason="   ", supervisor="S01"), "day_close", txn=None),  # no reason
        forge(st, day_close(supervisor="S01"), "day_close", txn=None),
        forge(st, day_close(variance=0), "day_close", txn=None),  # the stated variance is not the count's
    ]
    assert sync_once(st).rejected == dict.fromkeys(refused, "variance_not_approved")


def test_a_transfer_approved_by_another_stations_supervisor_is_missing_its_approval(bank):
    _, st = bank
    big = 1_000_000  # fraud_supervisor_fen: above the customer's hold too, which the bank checks after the warning
    seqs = {who: forge(st, transfer(amount=big, approved_by=who), "transfer") for who in ("S77", "A01", "S01")}
    assert sync_once(st).rejected == {seqs["S77"]: "supervisor_approval_missing",
                                      seqs["A01"]: "supervisor_approval_missing", seqs["S01"]: "not_authorized"}


def test_policy_values_an_admin_typed_wrong_keep_the_defaults_on_both_sides(bank):
    _, st = bank
    station_policy(id_check_fen="500 yuan", day_close_tolerance_fen=None, fraud_warning_fen="5000",
                   fraud_supervisor_fen=True)
    try:
        # The bank re-checks these against its policy (never a 500 for the batch)...
        no_id = forge(st, withdrawal(amount=60_000), "withdrawal")
        short = forge(st, day_close(), "day_close", txn=None)
        unwarned = forge(st, transfer(warned=False), "transfer")
        assert sync_once(st).rejected == {no_id: "id_required", short: "variance_not_approved",
                                          unwarned: "fraud_warning_skipped"}
        # ...and the policy that came down leaves the station with the defaults the bank applied.
        assert (st.policy["id_check_fen"], st.policy["day_close_tolerance_fen"], st.policy["fraud_warning_fen"],
                st.policy["fraud_supervisor_fen"]) == (50_000, 1_000, 500_000, 1_000_000)
    finally:
        station_policy(id_check_fen=50_000, day_close_tolerance_fen=1_000, fraud_warning_fen=500_000,
                       fraud_supervisor_fen=1_000_000)
        sync_once(st)


def test_recon_reports_what_the_hostile_batches_left(bank):
    server, _ = bank
    from sync_server.recon.cli import cli

    bound = db_proxy.obj
    try:
        result = CliRunner().invoke(cli, ["run", "--format", "json", "--database-url", server.database_url],
                                    catch_exceptions=False)
    finally:
        db_proxy.initialize(bound)
    assert result.exit_code in (0, 1), result.output
    document = json.loads(result.stdout)
    explained = " ".join(item["explanation"] for item in document["discrepancies"]
                         if item["kind"] == "rejected_offline_debit")
    assert "id_required" in explained  # the cash paid out without the ID card is to be recovered
    # The transfer the bank refused for the fraud warning: the customer believes it was sent.
    refused = [item for item in document["discrepancies"] if item["kind"] == "allowance_exceeded"]
    assert any("fraud_warning_skipped" in item["explanation"] for item in refused)
    # The day closes refused for their variance are still the cash variances they are.
    assert any(item["kind"] == "cash_variance" for item in document["discrepancies"])
