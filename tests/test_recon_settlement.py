"""``recon report settlement``: a worked day at a station, figured by hand, tied to the ledger; then the ledger
tampered with, and the report fails loudly. On SQLite and (``TEST_DATABASE_URL``) PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import pytest
from click.testing import CliRunner
from sync_support import append_only_lifted, enrolled_station, server_db

from station import agents, business_day, operations, receipts
from station.db import Customer
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.journal import journal_head
from station.simulate import simulate
from station.sync import sync_once
from sync_server.admin import _bank_booking
from sync_server.db import Customer as BankCustomer
from sync_server.db import Posting, ServerSetting, db_proxy
from sync_server.recon.cli import cli

ACCOUNT = "DM00010003"
CLOSED_AT_THE_BANK = "DM00010004"
# The clock fixture starts at 07:40 in Beijing on 3 November 2026 (23:40 UTC on the 2nd).
DAY = "2026-11-03"
NEXT_DAY = "2026-11-04"
FLOAT = 3_000_000  # 300 notes of 100 yuan
WITHDRAWAL, WITHDRAWAL_FEE = 50_000, 200
DEPOSIT = 30_000
BILL, BILL_FEE = 8_850, 100
EXPECTED = FLOAT - WITHDRAWAL + DEPOSIT + (BILL + BILL_FEE) - DEPOSIT  # the deposit is reversed
SHORTAGE = 5_000
# 2,953,950 fen: 295 notes of 100 yuan, 20 + 10 + 5 + 4 x 1 yuan, one 5 jiao coin.
CLOSE_COUNTS = {"10000": 295, "2000": 1, "1000": 1, "500": 1, "100": 4, "50": 1}


def fees_at_the_bank(**fees) -> None:
    """The bank's policy for every station: these fees (sent down at the first sync)."""
    server_db()
    row = ServerSetting.get_by_id("policy")
    station = {**row.value.get("station", {}), "fees": fees}
    ServerSetting.update(value={**row.value, "station": station}).where(ServerSetting.key == "policy").execute()


def counter(st):
    for agent_id, name, role, pin in DEMO_AGENTS:
        agents.add_agent(st, agent_id, name, role, pin)
    agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
    supervisor = agents.login_agent(st, DEMO_AGENTS[1][0], DEMO_AGENTS[1][3])
    return agent, supervisor


def authenticated(st, agent, account=ACCOUNT):
    return agents.authenticate_customer(st, agent, Customer.get(Customer.account_id == account), DEMO_CUSTOMER_PIN)


def worked_day(server, tmp_path, clock):
    """Day D at ST-0001: open with 30,000 yuan; a 500 yuan withdrawal (fee 2), a 300 yuan deposit, an 88.50 yuan
    electricity bill paid in cash (fee 1), the deposit reversed, the day closed 50 yuan short; all synced."""
    fees_at_the_bank(withdrawal=WITHDRAWAL_FEE, bill_payment=BILL_FEE)
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        agent, supervisor = counter(st)
        assert st.policy["fees"]["withdrawal"] == WITHDRAWAL_FEE
        business_day.open_day(st, agent, {"10000": 300})
        clock.advance(minutes=10)
        paid = operations.withdraw_cash(st, agent, authenticated(st, agent), WITHDRAWAL, receipts.new_txn_id())
        clock.advance(minutes=10)
        deposit = operations.deposit_cash(st, agent, authenticated(st, agent), DEPOSIT, receipts.new_txn_id())
        clock.advance(minutes=10)
        operations.pay_bill(st, agent, None, "ELEC-SGCC", "1234567890", BILL, receipts.new_txn_id())
        clock.advance(minutes=10)
        operations.reverse(st, supervisor, deposit.txn, receipts.new_txn_id(), "keyed twice")
        clock.advance(hours=9)
        closed = business_day.close_day(st, agent, CLOSE_COUNTS, reason="Miscount", supervisor=supervisor)
        assert (closed.expected_fen, closed.variance_fen) == (EXPECTED, -SHORTAGE)
        assert sync_once(st).rejected == {}
        head, _ = journal_head(st)
    return st, paid, head


def settlement(server, day=DAY, fmt="json", lang="en"):
    # The command binds the server's models to a database of its own (``db_proxy``), in this process where the
    # test server runs: the test thread's connection is closed first, and every sync of a test happens before its
    # first report (else a connection of the replaced Database object is dropped while still open).
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()
    result = CliRunner().invoke(cli, ["report", "settlement", "--database-url", server.database_url, "--date", day,
                                      "--format", fmt, "--lang", lang])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def failing(document) -> set:
    return {(line["line"], line["station"] or line["biller"]) for line in document["tie_out"] if not line["ties"]}


def test_a_worked_day_figured_by_hand_ties_to_the_ledger(server, tmp_path, clock):
    _, _, head = worked_day(server, tmp_path, clock)
    result = settlement(server)
    assert result.exit_code == 0, result.output + result.stderr
    document = json.loads(result.stdout)
    assert document["date"] == DAY and document["ties"] is True
    commission = 100 + 50 + 50 - 50  # withdrawal, deposit, bill; the reversal takes the deposit's back
    assert document["stations"] == [{
        "station": "ST-0001", "entries": head, "rejected": 0,
        "cash_paid_out_fen": WITHDRAWAL + DEPOSIT,  # the reversal pays the deposit back out
        "cash_taken_in_fen": DEPOSIT + BILL + BILL_FEE, "cash_unbooked_fen": 0, "float_funded_fen": FLOAT,
        "float_journal_fen": EXPECTED - SHORTAGE, "float_booked_fen": EXPECTED - SHORTAGE,
        "cash_account_fen": EXPECTED - SHORTAGE, "last_count_seq": head, "day_closes": 1,
        "variance_fen": -SHORTAGE, "variance_booked_fen": -SHORTAGE, "commission_fen": commission,
        "fees_fen": WITHDRAWAL_FEE + BILL_FEE,
    }]
    assert document["billers"] == [{"biller": "ELEC-SGCC", "payments": 1, "reversals": 0, "payable_fen": BILL,
                                    "payable_by_journal_fen": BILL}]
    totals = document["totals"]
    assert totals["ledger_by_kind_fen"] == {
        "agent_payable": -commission, "biller_payable": -BILL, "cash_variance": SHORTAGE,
        "commission_expense": commission, "customer": WITHDRAWAL + WITHDRAWAL_FEE, "fee_income": -300,
        "float_funding": -FLOAT, "station_cash": EXPECTED - SHORTAGE}
    assert (totals["cash_paid_out_fen"], totals["cash_taken_in_fen"], totals["biller_payable_fen"],
            totals["commission_fen"], totals["fees_fen"], totals["variance_fen"]) == (
        WITHDRAWAL + DEPOSIT, DEPOSIT + BILL + BILL_FEE, BILL, commission, 300, -SHORTAGE)
    lines = {(line["line"], line["station"] or line["biller"]): (line["report_fen"], line["ledger_fen"])
             for line in document["tie_out"]}
    assert lines == {
        ("cash", None): (-WITHDRAWAL + BILL + BILL_FEE, -WITHDRAWAL + BILL + BILL_FEE),
        ("customer", None): (WITHDRAWAL + WITHDRAWAL_FEE,) * 2,
        ("fees", None): (300, 300), ("biller_payable", None): (BILL, BILL), ("transfer_clearing", None): (0, 0),
        ("agent_payable", None): (commission, commission), ("commission_expense", None): (commission, commission),
        ("day_counts", None): (FLOAT - SHORTAGE,) * 2, ("float_funding", None): (FLOAT, FLOAT),
        ("cash_variance", None): (-SHORTAGE, -SHORTAGE), ("other_accounts", None): (0, 0),
        ("rejected", None): (0, 0), ("balanced", None): (0, 0),
        ("float", "ST-0001"): (EXPECTED - SHORTAGE,) * 2, ("biller", "ELEC-SGCC"): (BILL, BILL),
    }
    assert all(line["ties"] and line["difference_fen"] == 0 for line in document["tie_out"])

    # The table says the same in words, in Chinese by default; nothing the next day.
    table = settlement(server, fmt="table", lang="en")
    assert table.exit_code == 0 and "ties to the ledger" in table.stdout and "ST-0001" in table.stdout
    assert settlement(server, fmt="table", lang="zh").exit_code == 0
    empty = json.loads(settlement(server, day=NEXT_DAY).stdout)
    assert (empty["stations"], empty["billers"], empty["ties"]) == ([], [], True)


def test_simulated_days_at_two_stations_all_tie(server, tmp_path, clock):
    """Days of the simulator's mix (withdrawals, bills, top-ups, transfers, refusals, reversals, counts a little
    short, commission past its daily cap) at two stations: every day ties, and the figures add up across days."""
    fees_at_the_bank(withdrawal=WITHDRAWAL_FEE, bill_payment=BILL_FEE)
    stations = [enrolled_station(server, tmp_path, station_id, clock) for station_id in ("ST-0001", "ST-0002")]
    for seed, st in enumerate(stations, start=1):
        simulate(st, 200, seed=seed)
        assert sync_once(st).pending == 0
    days = [(date.fromisoformat(DAY) + timedelta(days=n)).isoformat() for n in range(5)]
    reports = [json.loads(settlement(server, day=day).stdout) for day in days]
    assert [report["ties"] for report in reports] == [True] * len(days), [failing(r) for r in reports]
    assert reports[0]["stations"] and reports[1]["stations"] and not reports[-1]["stations"]
    assert sum(r["totals"]["day_closes"] for r in reports) >= 4
    server_db()
    for kind, accounts in (("fee_income", "fees:"), ("agent_payable", "agent:"), ("station_cash", "cash:")):
        total = sum(r["totals"]["ledger_by_kind_fen"].get(kind, 0) for r in reports)
        assert total == sum(p.amount_fen for p in Posting.select().where(Posting.account_id.startswith(accounts)))


def test_csv_parses_back_to_the_json_figures(server, tmp_path, clock):
    worked_day(server, tmp_path, clock)
    document = json.loads(settlement(server).stdout)
    result = settlement(server, fmt="csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    sections = [row["section"] for row in rows]
    assert sections == ["station", "biller", "total"] + ["tie_out"] * len(document["tie_out"])
    station, biller, total = rows[:3]
    for key, value in document["stations"][0].items():
        assert station[key] == str(value), key
    assert (biller["biller"], int(biller["payable_fen"]), int(biller["payments"])) == ("ELEC-SGCC", BILL, 1)
    assert int(total["cash_paid_out_fen"]) == WITHDRAWAL + DEPOSIT and int(total["payable_fen"]) == BILL
    assert [(row["line"], int(row["report_fen"]), int(row["ledger_fen"]), row["ties"]) for row in rows[3:]] == [
        (line["line"], line["report_fen"], line["ledger_fen"], "true") for line in document["tie_out"]]


def test_the_next_day_stands_alone_and_the_day_before_keeps_its_close(server, tmp_path, clock):
    """Day D+1 opens with a fresh float and takes a deposit: D's report still ends at D's close."""
    st, _, _ = worked_day(server, tmp_path, clock)
    clock.advance(hours=14)
    with st.bound():
        agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        business_day.open_day(st, agent, {"10000": 300})
        operations.deposit_cash(st, agent, authenticated(st, agent), 20_000, receipts.new_txn_id())
        assert sync_once(st).rejected == {}
    before = json.loads(settlement(server).stdout)
    assert before["ties"] and before["stations"][0]["cash_account_fen"] == EXPECTED - SHORTAGE
    after = json.loads(settlement(server, day=NEXT_DAY).stdout)
    assert after["ties"], failing(after)
    row = after["stations"][0]
    assert (row["cash_paid_out_fen"], row["cash_taken_in_fen"], row["float_journal_fen"], row["cash_account_fen"],
            row["commission_fen"], row["day_closes"]) == (0, 20_000, FLOAT + 20_000, FLOAT + 20_000, 50, 0)
    counts = next(line for line in after["tie_out"] if line["line"] == "float_funding")
    assert counts["ledger_fen"] == FLOAT - (EXPECTED - SHORTAGE) == row["float_funded_fen"]  # topped up at the open


def test_a_deposit_the_bank_rejects_moves_the_drawer_not_the_ledger(server, tmp_path, clock):
    """The customer's account was closed at the bank: the agent took 100 yuan in, the bank booked nothing. The
    report counts it apart, and the ledger, whose drawer lacks it, books the close as 100 yuan over."""
    fees_at_the_bank()
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    server_db()
    BankCustomer.update(status="closed").where(BankCustomer.account_id == CLOSED_AT_THE_BANK).execute()
    with st.bound():
        agent, _ = counter(st)
        business_day.open_day(st, agent, {"10000": 300})
        taken = operations.deposit_cash(st, agent, authenticated(st, agent, CLOSED_AT_THE_BANK), 10_000,
                                        receipts.new_txn_id())
        closed = business_day.close_day(st, agent, {"10000": 301})
        assert closed.variance_fen == 0
        assert sync_once(st).rejected == {taken.seq: "account_closed"}
    document = json.loads(settlement(server).stdout)
    assert document["ties"], failing(document)
    row = document["stations"][0]
    assert (row["rejected"], row["cash_taken_in_fen"], row["cash_unbooked_fen"], row["variance_fen"],
            row["variance_booked_fen"], row["cash_account_fen"], row["commission_fen"]) == (
        1, 0, 10_000, 0, 10_000, FLOAT + 10_000, 0)
    assert document["totals"]["ledger_by_kind_fen"]["cash_variance"] == -10_000

    # Someone books the rejected deposit by hand: the ledger now moves for an entry the bank refused.
    with append_only_lifted(server_db()):
        Posting.insert_many([
            dict(station_id="ST-0001", seq=taken.seq, leg=0, account_id="cash:ST-0001", amount_fen=10_000, memo="x"),
            dict(station_id="ST-0001", seq=taken.seq, leg=1, account_id=CLOSED_AT_THE_BANK, amount_fen=-10_000,
                 memo="x"),
        ]).execute()
    result = settlement(server)
    assert result.exit_code == 1
    assert failing(json.loads(result.stdout)) == {("cash", None), ("customer", None), ("rejected", None),
                                                  ("float", "ST-0001")}
    assert "Postings of entries the bank did not book: report CNY 0.00, ledger CNY 200.00" in result.stderr


def test_an_extra_posting_pair_on_a_settled_entry_does_not_tie(server, tmp_path, clock):
    _, paid, _ = worked_day(server, tmp_path, clock)
    with append_only_lifted(server_db()):
        Posting.insert_many([
            dict(station_id="ST-0001", seq=paid.seq, leg=90, account_id="cash:ST-0001", amount_fen=1_000, memo="x"),
            dict(station_id="ST-0001", seq=paid.seq, leg=91, account_id="fees:ST-0001", amount_fen=-1_000, memo="x"),
        ]).execute()
    result = settlement(server)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ties"] is False
    assert failing(document) == {("cash", None), ("fees", None), ("float", "ST-0001")}
    fees = next(line for line in document["tie_out"] if line["line"] == "fees")
    assert (fees["report_fen"], fees["ledger_fen"], fees["differing_stations"]) == (300, 1_300, ["ST-0001"])
    assert result.stderr.splitlines() == [
        "The settlement of 2026-11-03 does not tie to the ledger:",
        "- Cash taken in less cash paid out (operations): report -CNY 410.50, ledger -CNY 400.50, "
        "difference -CNY 10.00 (stations ST-0001)",
        "- Fees earned: report CNY 3.00, ledger CNY 13.00, difference -CNY 10.00 (stations ST-0001)",
        "- Float position of station ST-0001: report CNY 29,539.50, ledger CNY 29,549.50, difference -CNY 10.00"]
    table = settlement(server, fmt="table")
    assert table.exit_code == 1 and "does not tie" in table.stdout


def test_each_station_is_figured_apart_and_the_tampered_one_is_named(server, tmp_path, clock):
    """ST-0002 on the same day: a cash bill paid and reversed, a transfer, a transfer cancelled, a bill paid from
    the customer's account. Then only ST-0001's ledger is tampered with: the lines that do not tie name it."""
    _, paid, _ = worked_day(server, tmp_path, clock)
    two = enrolled_station(server, tmp_path, "ST-0002", clock)
    with two.bound():
        agent, supervisor = counter(two)
        business_day.open_day(two, agent, {"10000": 100})
        bill = operations.pay_bill(two, agent, None, "ELEC-SGCC", "1234567890", 5_000, receipts.new_txn_id())
        operations.reverse(two, supervisor, bill.txn, receipts.new_txn_id(), "wrong meter")
        auth = authenticated(two, agent, "DM00020003")
        payee = Customer.get(Customer.account_id == "DM00020003").payees.get()
        operations.transfer(two, agent, auth, payee.account, payee.name, 10_000, receipts.new_txn_id())
        withdrawn = operations.transfer(two, agent, auth, payee.account, payee.name, 20_000, receipts.new_txn_id())
        operations.cancel_transfer(two, agent, auth, withdrawn.txn, receipts.new_txn_id())
        operations.pay_bill(two, agent, auth, "ELEC-SGCC", "1234567890", 3_000, receipts.new_txn_id(),
                            funding="account")
        assert sync_once(two).rejected == {}
    document = json.loads(settlement(server).stdout)
    assert document["ties"], failing(document)
    one, other = document["stations"]
    assert one["station"] == "ST-0001" and one["cash_account_fen"] == EXPECTED - SHORTAGE
    assert {key: other[key] for key in ("station", "cash_paid_out_fen", "cash_taken_in_fen", "float_journal_fen",
                                        "cash_account_fen", "day_closes", "commission_fen", "fees_fen")} == {
        "station": "ST-0002", "cash_paid_out_fen": 5_000 + BILL_FEE, "cash_taken_in_fen": 5_000 + BILL_FEE,
        "float_journal_fen": 1_000_000, "cash_account_fen": 1_000_000, "day_closes": 0,
        "commission_fen": 50 - 50 + 100 + 100 - 100 + 50, "fees_fen": BILL_FEE - BILL_FEE + 200 + 200 - 200 + BILL_FEE}
    assert document["billers"] == [{"biller": "ELEC-SGCC", "payments": 3, "reversals": 1,
                                    "payable_fen": BILL + 3_000, "payable_by_journal_fen": BILL + 3_000}]
    lines = {line["line"]: (line["report_fen"], line["ledger_fen"]) for line in document["tie_out"]}
    assert lines["transfer_clearing"] == (10_000, 10_000)
    # ST-0001: the withdrawal and its fee; ST-0002: a transfer and its fee, a bill and its fee from the account.
    assert lines["customer"] == (WITHDRAWAL + WITHDRAWAL_FEE + 10_200 + 3_000 + BILL_FEE,) * 2

    with append_only_lifted(server_db()):
        Posting.insert_many([
            dict(station_id="ST-0001", seq=paid.seq, leg=90, account_id="biller:ELEC-SGCC:ST-0001",
                 amount_fen=-700, memo="x"),
            dict(station_id="ST-0001", seq=paid.seq, leg=91, account_id="DM00010003", amount_fen=700, memo="x"),
        ]).execute()
    result = settlement(server)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert failing(document) == {("customer", None), ("biller_payable", None), ("biller", "ELEC-SGCC")}
    assert {tuple(line["differing_stations"]) for line in document["tie_out"] if not line["ties"]} == {("ST-0001",)}


def test_a_bank_booking_on_a_stations_drawer_does_not_tie(server, tmp_path, clock):
    """After day D closed, the bank books 50 yuan onto the station's cash account (postings and balance, as
    ``sync_server.admin`` books opening balances): no signed entry supports it. D's float does not tie; the next
    morning's count absorbs the booking into the float funded, and that day's counts do not tie."""
    st, _, _ = worked_day(server, tmp_path, clock)
    server_db()
    with server_db().atomic():
        _bank_booking([("cash:ST-0001", 5_000, "x"), ("equity:opening", -5_000, "x")])
    clock.advance(hours=14)
    with st.bound():
        agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        business_day.open_day(st, agent, {"10000": 300})
        assert sync_once(st).rejected == {}

    result = settlement(server)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert failing(document) == {("float", "ST-0001")}
    line = next(line for line in document["tie_out"] if line["line"] == "float")
    assert (line["report_fen"], line["ledger_fen"]) == (EXPECTED - SHORTAGE, EXPECTED)
    assert "Float position of station ST-0001" in result.stderr

    result = settlement(server, day=NEXT_DAY)
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert failing(document) == {("day_counts", None), ("float_funding", None)}
    line = next(line for line in document["tie_out"] if line["line"] == "float_funding")
    assert (line["report_fen"], line["ledger_fen"]) == (FLOAT - (EXPECTED - SHORTAGE), FLOAT - EXPECTED)


@pytest.mark.parametrize("args", [
    ["--date", "2026-13-01"], ["--date", "yesterday"], ["--date", "2026-11-3"], [],
    ["--date", DAY, "--format", "xml"], ["--date", DAY, "--lang", "fr"],
])
def test_usage_errors_exit_2(server, args):
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()
    result = CliRunner().invoke(cli, ["report", "settlement", "--database-url", server.database_url, *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_no_database_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["report", "settlement", "--database-url", f"sqlite:///{tmp_path}/none.db",
                                      "--date", DAY])
    assert result.exit_code == 2 and "No database" in result.stderr


def test_wealth_product_orders_confirmed_and_refused_tie_to_the_ledger(server, tmp_path, clock):
    """A confirmed order's customer debit and the product's subscription account are counted on their lines; a
    refused one (sold out) moves nothing, and recon lists no item for it (nothing was paid out)."""
    from datetime import UTC, datetime

    from station import wmp
    from sync_server.wmp import add_product, set_risk_level

    server_db()
    bank_today = datetime.now(UTC).date()
    add_product("WM-RECON", name_zh="稳健理财", name_en="Steady", risk_level=1, minimum="100", step="100",
                opens_on=DAY, closes_on=(bank_today + timedelta(days=5)).isoformat(), quota="300",
                description_zh="可能亏损本金。", description_en="The capital can be lost.")
    set_risk_level(ACCOUNT, "1")
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        agent, _supervisor = counter(st)
        business_day.open_day(st, agent, {"10000": 300})
        confirmed = wmp.place_order(st, agent, authenticated(st, agent), "WM-RECON", "200", receipts.new_txn_id(),
                                    risk_statement_read=True)
        refused = wmp.place_order(st, agent, authenticated(st, agent), "WM-RECON", "200", receipts.new_txn_id(),
                                  risk_statement_read=True)
        assert sync_once(st).rejected == {refused.seq: "sold_out"}
    document = json.loads(settlement(server).stdout)
    assert failing(document) == set() and document["ties"] is True
    customer_line = next(line for line in document["tie_out"] if line["line"] == "customer")
    assert customer_line["report_fen"] == customer_line["ledger_fen"] == confirmed.amount_fen
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()
    result = CliRunner().invoke(cli, ["run", "--database-url", server.database_url, "--format", "json"])
    found = json.loads(result.stdout)
    assert not [item for item in found["discrepancies"] if item.get("seq") == refused.seq], found
