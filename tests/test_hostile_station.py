"""A hostile station: well-formed entries signed with the station's own key (the key a thief takes with the SD
card) that the bank's rules do not allow. Each is rejected with its reason in the signed ack, the batch goes
through, nothing moves, the ledger checks clean, rejected debits are recon items, and the station's later honest
entries still settle. The cases of issue 8's review, on SQLite and on PostgreSQL (``TEST_DATABASE_URL``)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sync_support import append_forged_entry, enrolled_station, server_db
from ui_helpers import ID_NUMBER

from station import receipts
from station.identity import identity_fields
from station.sync import apply_ack, build_batch, open_answer, send_batch, sync_once
from sync_server.admin import list_recon_items
from sync_server.checks import check_ledger
from sync_server.cli import cli
from sync_server.db import Account, Customer, Posting, ServerSetting
from sync_server.db import Station as ServerStation

OWN = "DM00010005"  # home only at ST-0001: its hold there is 1,000 yuan
OTHER = "DM00010006"  # home only at ST-0001 too
FOREIGN = "DM00020005"  # home only at ST-0002
PAYEE = "6222000011112222"


def forge(st, entry_type: str, body: dict, txn: str | None = None, with_txn: bool = True):
    """An entry of ``entry_type`` signed by the station's own key, without the station's checks."""
    with st.write():
        return append_forged_entry(st, entry_type, st.now(), {"agent": "A01", **body},
                                   txn=(txn or receipts.new_txn_id()) if with_txn else None)


def balance(account_id: str) -> int:
    """The account's balance at the bank (0 for a station account not opened yet)."""
    server_db()
    account = Account.get_or_none(Account.account_id == account_id)
    return account.balance_fen if account is not None else 0


def posted(station_id: str, seq: int) -> bool:
    server_db()
    return Posting.select().where((Posting.station_id == station_id) & (Posting.seq == seq)).exists()


def station_overrides(**overrides) -> None:
    """Lay ``overrides`` over the stations' policy the bank sends down (and so applies itself)."""
    server_db()
    row = ServerSetting.get_by_id("policy")
    ServerSetting.update(value={**row.value, "station": {**row.value.get("station", {}), **overrides}}).where(
        ServerSetting.key == "policy").execute()


def server_overrides(**overrides) -> None:
    server_db()
    row = ServerSetting.get_by_id("policy")
    ServerSetting.update(value={**row.value, **overrides}).where(ServerSetting.key == "policy").execute()


def assert_still_honest(st) -> None:
    """The ledger checks clean, and the station's next honest withdrawal settles."""
    server_db()
    assert check_ledger() == []
    honest = forge(st, "withdrawal", {"account": OTHER, "amount": 10_000})
    assert sync_once(st).rejected == {}
    assert posted(st.station_id, honest.seq)
    server_db()
    assert check_ledger() == []


def recon(station_id: str = "ST-0001") -> list[tuple]:
    server_db()
    return [(item["seq"], item["kind"], item["account_id"], item["amount_fen"], item["reason"])
            for item in list_recon_items(station_id)]


def test_a_foreign_customers_transfers_are_not_authorized(server, tmp_path, clock):
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = balance(FOREIGN)
    sent = [forge(one, "transfer", {"account": FOREIGN, "amount": 499_900, "fee": 200, "payee_account": PAYEE,
                                    "payee_name": "李伟", "warned": True}) for _ in range(7)]
    assert sync_once(one).rejected == {entry.seq: "not_authorized" for entry in sent}
    assert balance(FOREIGN) == before
    assert not any(posted("ST-0001", entry.seq) for entry in sent)
    assert recon() == [(e.seq, "rejected_offline_debit", FOREIGN, 500_100, "not_authorized") for e in sent]
    result = CliRunner().invoke(cli, ["recon-items", "list", "--database-url", server.database_url,
                                      "--station", "ST-0001"])
    assert result.exit_code == 0, result.output
    assert f"ST-0001\t{sent[0].seq}\trejected_offline_debit\t{FOREIGN}\t500100\tnot_authorized" in result.output
    assert_still_honest(one)


@pytest.mark.parametrize("overrides, bodies, reason", [
    ({}, [{"amount": 5_000_000}], "not_authorized"),  # 50,000 yuan against a 1,000-yuan hold
    ({}, [{"amount": 1_000, "fee": 300_000}], "not_authorized"),  # a 3,000-yuan fee on a 10-yuan withdrawal
    ({}, [{"amount": 1_000, "fee": 100}], "wrong_fee"),  # within the hold, but not the fee schedule's
    ({}, [{"amount": 1_500}], "amount_rule"),  # not a multiple of 10 yuan
    ({}, [{"amount": 0}], "invalid_amount"),
    ({"limits": {"withdrawal": {"per_txn": 50_000}}}, [{"amount": 60_000}], "over_transaction_limit"),
    ({"limits": {"withdrawal": {"daily": 80_000}}}, [{"amount": 50_000}, {"amount": 50_000}], "over_daily_limit"),
    ({"max_unsynced_count": 2}, [{"amount": 10_000}] * 3, "over_exposure_limit"),
    ({"max_unsynced_fen": 25_000}, [{"amount": 10_000}] * 3, "over_exposure_limit"),
])
def test_a_withdrawal_beyond_what_the_bank_allows_is_rejected(server, tmp_path, clock, overrides, bodies, reason):
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    station_overrides(**overrides)
    before = balance(OWN)
    entries = [forge(one, "withdrawal", {"account": OWN, **body}) for body in bodies]
    last, body = entries[-1], bodies[-1]
    assert sync_once(one).rejected == {last.seq: reason}
    settled = sum(b["amount"] for b in bodies[:-1])
    assert balance(OWN) == before - settled
    assert not posted("ST-0001", last.seq)
    # A withdrawal of nothing paid nothing out: the registry refuses it before any rule, and there is no cash to find.
    paid = body["amount"] + body.get("fee", 0)
    assert recon() == ([(last.seq, "rejected_offline_debit", OWN, paid, reason)] if paid else [])
    assert_still_honest(one)  # after a complete sync the exposure starts again


def test_the_exposure_cap_spans_the_batches_of_one_sync(server, tmp_path, clock):
    """The bank keeps a station's unsynced exposure as a running total on its row: what the sync's earlier batches
    settled counts against the cap in its later ones, the ledger check agrees with it mid-sync, and the complete
    sync zeroes it."""
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    station_overrides(max_unsynced_count=2)
    entries = [forge(one, "withdrawal", {"account": OWN, "amount": 10_000}) for _ in range(3)]
    sealed = build_batch(one, max_entries=1)
    apply_ack(one, open_answer(one, send_batch(one, sealed, more=True)), sealed)
    server_db()
    row = ServerStation.get_by_id("ST-0001")
    assert (row.unsynced_debit_fen, row.unsynced_debit_count) == (10_000, 1)
    assert check_ledger() == []
    one.config["sync"] = {"max_entries": 1}
    assert sync_once(one).rejected == {entries[-1].seq: "over_exposure_limit"}
    row = ServerStation.get_by_id("ST-0001")
    assert (row.synced_seq, row.unsynced_debit_fen, row.unsynced_debit_count) == (entries[-1].seq, 0, 0)
    assert_still_honest(one)


@pytest.mark.parametrize("overrides, amounts, reason", [
    ({}, [1_000_000_000], "over_transaction_limit"),  # 10,000,000 yuan, no cash behind it
    ({}, [500], "amount_rule"),  # below the deposits' minimum (10 yuan)
    ({}, [0], "invalid_amount"),
    ({"limits": {"deposit": {"daily": 6_000_000}}}, [5_000_000, 5_000_000], "over_daily_limit"),
])
def test_a_deposit_beyond_the_limits_is_rejected(server, tmp_path, clock, overrides, amounts, reason):
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    station_overrides(**overrides)
    before = balance(OWN)
    entries = [forge(one, "deposit", {"account": OWN, "amount": amount}) for amount in amounts]
    assert sync_once(one).rejected == {entries[-1].seq: reason}
    assert balance(OWN) == before + sum(amounts[:-1])
    assert recon() == []  # no customer's money was taken: the drawer's cash is the day count's business
    assert_still_honest(one)


def test_a_stations_deposits_of_the_day_are_capped(server, tmp_path, clock):
    """200,000 yuan a day per station (each customer within their own daily limit): cash has to come from
    somewhere."""
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    accounts = ["DM00010002", "DM00010003", "DM00010004", OWN, OTHER]
    entries = [forge(one, "deposit", {"account": account, "amount": 5_000_000}) for account in accounts]
    assert sync_once(one).rejected == {entries[-1].seq: "over_deposit_limit"}
    assert balance(OTHER) > 0 and not posted("ST-0001", entries[-1].seq)
    clock.advance(days=1)  # a new local day: deposits are taken in again
    again = forge(one, "deposit", {"account": OTHER, "amount": 5_000_000})
    assert sync_once(one).rejected == {}
    assert posted("ST-0001", again.seq)


def test_a_foreigners_deposit_is_allowed(server, tmp_path, clock):
    """Anyone may pay cash into an existing open account, wherever it calls home."""
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    before = balance(FOREIGN)
    forge(one, "deposit", {"account": FOREIGN, "amount": 20_000})
    assert sync_once(one).rejected == {}
    assert balance(FOREIGN) == before + 20_000


@pytest.mark.parametrize("same_batch", [True, False])
def test_a_txn_is_unique_bank_wide(server, tmp_path, clock, same_batch):
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    two = enrolled_station(server, tmp_path, "ST-0002", clock)
    before = balance(OWN)
    txn = receipts.new_txn_id()
    first = forge(one, "deposit", {"account": OWN, "amount": 10_000}, txn=txn)
    if not same_batch:
        assert sync_once(one).rejected == {}
    second = forge(one, "deposit", {"account": OWN, "amount": 5_000_000}, txn=txn)
    assert sync_once(one).rejected == {second.seq: "duplicate_txn"}
    elsewhere = forge(two, "deposit", {"account": "DM00020006", "amount": 20_000}, txn=txn)
    assert sync_once(two).rejected == {elsewhere.seq: "duplicate_txn"}
    assert balance(OWN) == before + 10_000
    assert posted("ST-0001", first.seq) and not posted("ST-0001", second.seq)
    assert_still_honest(one)


def test_a_station_locks_only_its_own_customers(server, tmp_path, clock):
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    foreign = forge(one, "customer_pin_failed", {"account": FOREIGN, "failures": 3, "locked": True}, with_txn=False)
    forge(one, "customer_pin_failed", {"account": OWN, "failures": 3, "locked": True}, with_txn=False)
    assert sync_once(one).rejected == {foreign.seq: "not_authorized"}
    server_db()
    assert Customer.get_by_id(FOREIGN).status == "active"
    assert Customer.get_by_id(OWN).status == "locked"
    assert recon() == []
    assert_still_honest(one)


def test_commission_cannot_be_farmed(server, tmp_path, clock):
    """200 deposits of 0.01 yuan and withdraw/re-deposit cycles earn nothing beyond the agent's daily cap."""
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    agent = "agent:ST-0001"
    pennies = [forge(one, "deposit", {"account": OWN, "amount": 1}) for _ in range(200)]
    small = [forge(one, "deposit", {"account": OWN, "amount": 5_000}) for _ in range(10)]  # below the minimum
    assert sync_once(one).rejected == {entry.seq: "amount_rule" for entry in pennies}
    assert all(posted("ST-0001", entry.seq) for entry in small)
    assert balance(agent) == 0
    for _ in range(5):  # 5 x (100 + 50) fen
        forge(one, "withdrawal", {"account": OWN, "amount": 10_000})
        forge(one, "deposit", {"account": OWN, "amount": 10_000})
    assert sync_once(one).rejected == {}
    assert balance(agent) == 750
    cycles = [forge(one, "deposit", {"account": OWN, "amount": 10_000}) for _ in range(100)]
    assert sync_once(one).rejected == {}
    assert all(posted("ST-0001", entry.seq) for entry in cycles)  # the operations still settle
    assert balance(agent) == 5_000  # the daily cap
    server_db()
    assert check_ledger() == []


def test_a_reversed_withdrawal_gives_back_its_daily_limit_and_commission(server, tmp_path, clock):
    """The bank counts the day as the station does: a reversed operation no longer counts."""
    one = enrolled_station(server, tmp_path, "ST-0001", clock)
    server_overrides(commission_daily_cap_fen=100)
    shown = identity_fields(one, ID_NUMBER, proxy=False)  # above 500 yuan the ID card of the person present
    paid = forge(one, "withdrawal", {"account": OWN, "amount": 100_000, **shown})
    forge(one, "reversal", {"ref_txn": paid.txn})
    assert sync_once(one).rejected == {}
    assert balance("agent:ST-0001") == 0
    again = forge(one, "withdrawal", {"account": OWN, "amount": 100_000, **shown})
    assert sync_once(one).rejected == {}
    assert posted("ST-0001", again.seq)
    assert balance("agent:ST-0001") == 100
