"""``sync-server check``: a ledger after a real day is sound; one an insider edited with SQL is reported in full."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sync_support import append_only_lifted, enrolled_station, server_db

from station import agents, business_day, operations, receipts
from station.db import Customer
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.sync import sync_once
from sync_server.admin import execute_due_transfers
from sync_server.book import ledger_totals
from sync_server.checks import CheckFailure, check_ledger
from sync_server.cli import cli
from sync_server.db import Account, Hold, Posting, Station, is_postgres

ACCOUNT = "DM00010003"
#: A customer of ST-0002, which never syncs here: no hold is placed on it.
QUIET_CUSTOMER = "DM00020005"


def a_day_at_the_counter(st) -> None:
    """Deposits, a withdrawal keyed wrong and reversed, a transfer cancelled and one kept, bills in cash and from the
    account, a day close 10 yuan short; synced, and the due transfer executed by the bank."""
    with st.bound():
        for agent_id, name, role, pin in DEMO_AGENTS:
            agents.add_agent(st, agent_id, name, role, pin)
        agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        supervisor = agents.login_agent(st, DEMO_AGENTS[1][0], DEMO_AGENTS[1][3])
        business_day.open_day(st, agent, {"10000": 300})
        customer = Customer.get(Customer.account_id == ACCOUNT)
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        payee = customer.payees.get()
        operations.deposit_cash(st, agent, auth, "200", receipts.new_txn_id())
        keyed_wrong = operations.withdraw_cash(st, agent, auth, "300", receipts.new_txn_id())
        operations.reverse(st, supervisor, keyed_wrong.txn, receipts.new_txn_id(), "keyed wrong amount")
        operations.withdraw_cash(st, agent, auth, "30", receipts.new_txn_id())
        cancelled = operations.transfer(st, agent, auth, payee.account, payee.name, "300", receipts.new_txn_id())
        operations.cancel_transfer(st, agent, auth, cancelled.txn, receipts.new_txn_id())
        operations.transfer(st, agent, auth, payee.account, payee.name, "100", receipts.new_txn_id())
        operations.pay_bill(st, agent, None, "ELEC-SGCC", "3100000001", "86.40", receipts.new_txn_id())
        operations.pay_bill(st, agent, auth, "ELEC-SGCC", "3100000002", "120", receipts.new_txn_id(), funding="account")
        counted = business_day.drawer_cash(st) - 10_00
        business_day.close_day(st, agent, {"10000": counted // 10000, "100": (counted % 10000) // 100,
                                           "10": (counted % 100) // 10})
    assert sync_once(st).rejected == {}
    server_db()
    assert execute_due_transfers() == 1


def test_the_ledger_after_a_day_at_the_counter_is_sound(server, tmp_path, clock):
    a_day_at_the_counter(enrolled_station(server, tmp_path, "ST-0001", clock))
    server_db()
    # The story moved money through accounts of both normal sides, so the sign convention is exercised.
    assert Account.get_by_id("cash:ST-0001").balance_fen > 0
    assert Account.get_by_id("fees:ST-0001").balance_fen > 0
    assert Account.get_by_id("variance:ST-0001").balance_fen == 10_00
    assert sum(ledger_totals().values()) == 0
    assert check_ledger() == []
    result = CliRunner().invoke(cli, ["check", "--database-url", server.database_url])
    assert (result.exit_code, result.output) == (0, "Ledger sound: 5 checks passed.\n")


def _without_check_constraints(database):
    """An insider lifts the CHECK constraints of ``account`` and ``hold`` (SQLite: for this connection)."""
    if not is_postgres(database):
        database.pragma("ignore_check_constraints", 1)
        return
    for table in ("account", "hold"):
        for (name,) in database.execute_sql("SELECT conname FROM pg_constraint WHERE contype = 'c' "
                                            f"AND conrelid = '{table}'::regclass").fetchall():
            database.execute_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')


def test_a_ledger_edited_with_sql_is_reported_in_full(server, tmp_path, clock):
    a_day_at_the_counter(enrolled_station(server, tmp_path, "ST-0001", clock))
    database = server_db()
    balance = {a.account_id: a.balance_fen for a in Account.select()}
    deposit = Posting.get((Posting.station_id == "ST-0001") & (Posting.memo == "deposit"))

    # The drawer's balance (debit-normal) is raised by 500 yuan: no posting says so.
    Account.update(balance_fen=balance["cash:ST-0001"] + 500_00).where(
        Account.account_id == "cash:ST-0001").execute()
    # ST-0002 is said to hold the customer's whole balance, on top of ST-0001's allowance.
    held_at_home = Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == ACCOUNT)).amount_fen
    assert held_at_home > 0
    Hold.create(station_id="ST-0002", account_id=ACCOUNT, amount_fen=balance[ACCOUNT], updated_at="now")
    # A leg slipped into the deposit's entry: the entry no longer balances, nor does the fee income account.
    with append_only_lifted(database):
        Posting.create(station_id="ST-0001", seq=deposit.seq, leg=9, account_id="fees:ST-0001", amount_fen=3_00)
    # With the CHECK constraints dropped: a customer overdrawn, and a negative hold.
    _without_check_constraints(database)
    Account.update(balance_fen=-100).where(Account.account_id == QUIET_CUSTOMER).execute()
    Hold.create(station_id="ST-0002", account_id="DM00020006", amount_fen=-5, updated_at="now")
    # ST-0001's last sync was complete: no offline debit of it is unsynced, whatever its row is made to say.
    Station.update(unsynced_debit_fen=500_00, unsynced_debit_count=1).where(Station.station_id == "ST-0001").execute()

    expected = [
        CheckFailure("legs_balance", "postings sum to 300 fen, not zero", station_id="ST-0001", seq=deposit.seq,
                     expected_fen=0, actual_fen=3_00),
        CheckFailure("balance_matches_postings", f"stored balance -100 fen, its postings make "
                     f"{balance[QUIET_CUSTOMER]} fen",
                     account_id=QUIET_CUSTOMER, expected_fen=balance[QUIET_CUSTOMER], actual_fen=-100),
        CheckFailure("balance_matches_postings",
                     f"stored balance {balance['cash:ST-0001'] + 500_00} fen, its postings make "
                     f"{balance['cash:ST-0001']} fen", account_id="cash:ST-0001",
                     expected_fen=balance["cash:ST-0001"], actual_fen=balance["cash:ST-0001"] + 500_00),
        # fee income is credit-normal: a 3-yuan debit leg makes its postings 3 yuan less than the stored balance.
        CheckFailure("balance_matches_postings",
                     f"stored balance {balance['fees:ST-0001']} fen, its postings make "
                     f"{balance['fees:ST-0001'] - 3_00} fen", account_id="fees:ST-0001",
                     expected_fen=balance["fees:ST-0001"] - 3_00, actual_fen=balance["fees:ST-0001"]),
        CheckFailure("holds_within_balance",
                     f"holds of {held_at_home + balance[ACCOUNT]} fen exceed the balance of {balance[ACCOUNT]} fen",
                     account_id=ACCOUNT, expected_fen=balance[ACCOUNT], actual_fen=held_at_home + balance[ACCOUNT]),
        CheckFailure("holds_within_balance", "hold of -5 fen at ST-0002 is negative", account_id="DM00020006",
                     station_id="ST-0002", expected_fen=0, actual_fen=-5),
        CheckFailure("customer_balance_not_negative", "balance -100 fen is below zero", account_id=QUIET_CUSTOMER,
                     expected_fen=0, actual_fen=-100),
        CheckFailure("unsynced_exposure_matches", "stored unsynced exposure 50000 fen in 1 debits, its postings make "
                     "0 fen in 0", station_id="ST-0001", expected_fen=0, actual_fen=500_00),
    ]
    assert check_ledger() == expected

    result = CliRunner().invoke(cli, ["check", "--database-url", server.database_url])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["Ledger BROKEN: 8 failures."] + [f"  {failure}" for failure in expected]
    result = CliRunner().invoke(cli, ["check", "--json", "--database-url", server.database_url])
    assert result.exit_code == 1
    assert [CheckFailure(**item) for item in json.loads(result.output)] == expected


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite:///{tmp}/missing.db", "No database file at {tmp}/missing.db."),
    ("sqlite:///{tmp}/empty.db", "The database has no sync-server schema; run `sync-server init-db` first."),
    ("postgresql://postgres@127.0.0.1:1/bank", "Cannot read the ledger: connection failed"),
    ("mysql://bank@127.0.0.1/bank", "DATABASE_URL must start with sqlite:/// or postgresql://"),
])
def test_check_without_a_readable_ledger_exits_2_with_a_reason(tmp_path, url, message):
    (tmp_path / "empty.db").touch()
    result = CliRunner().invoke(cli, ["check", "--database-url", url.format(tmp=tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {message.format(tmp=tmp_path)}")
    assert "Traceback" not in result.output
    assert not (tmp_path / "missing.db").exists()
