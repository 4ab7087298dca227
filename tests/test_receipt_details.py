"""A day close's receipt gives the variance in words with its reason and approving supervisor, and a withdrawal
that recorded an ID card shows its last 4 (and 代办): on screen (zh and en) and on paper."""

from __future__ import annotations

from escpos.printer import Dummy
from ui_helpers import CUSTOMER_PIN, card_customer, english, login

from station import business_day, operations, printing, receipts
from station.agents import authenticate_customer
from station.identity import identity_fields
from station.receipt_layout import render_receipt
from station.ui.receipts import receipt_at

ID_NUMBER = "11010519491231002X"


def paper(st, receipt) -> str:
    printer = Dummy(profile="POS-5890")
    render_receipt(printer, printing.receipt_sheet(st, receipt), copy="customer")
    return printer.output.decode("gb18030", errors="replace")


def test_a_short_day_close_names_the_shortage_the_reason_and_the_supervisor(station, agent, supervisor, ui_client):
    business_day.open_day(station, agent, {"10000": 300})
    closed = business_day.close_day(station, agent, {"10000": 299, "5000": 1}, reason="Miscount: 50 yuan note",
                                    supervisor=supervisor)
    login(ui_client)
    page = ui_client.get(f"/receipts/{closed.receipt.seq}").get_data(as_text=True)
    assert 'id="variance" data-fen="-5000">短款 ¥50.00<' in page
    assert 'id="variance-reason">清点差错：50 yuan note<' in page
    assert f'id="approved-by">{supervisor.agent_id}<' in page
    english(ui_client)
    page = ui_client.get(f"/receipts/{closed.receipt.seq}").get_data(as_text=True)
    assert ">Short ¥50.00<" in page and 'id="variance-reason">Miscount: 50 yuan note<' in page
    with station.bound():
        printed = paper(station, receipt_at(closed.receipt.seq))
    assert "短款 Short: 50.00 元" in printed
    assert "清点差错：50 yuan note" in printed and f"主管批准 Approved by: {supervisor.agent_id}" in printed


def test_an_over_day_close_says_over(station, agent, supervisor, ui_client):
    business_day.open_day(station, agent, {"10000": 300})
    closed = business_day.close_day(station, agent, {"10000": 301}, reason="Unknown", supervisor=supervisor)
    login(ui_client)
    page = ui_client.get(f"/receipts/{closed.receipt.seq}").get_data(as_text=True)
    assert ">长款 ¥100.00<" in page and 'id="variance-reason">原因待查<' in page
    with station.bound():
        assert "长款 Over: 100.00 元" in paper(station, receipt_at(closed.receipt.seq))


def test_a_withdrawal_with_an_id_card_shows_its_last_4_and_proxy(station, agent, ui_client):
    business_day.open_day(station, agent, {"10000": 300})
    customer = card_customer(0)
    auth = authenticate_customer(station, agent, customer, CUSTOMER_PIN)
    paid = operations.withdraw_cash(station, agent, auth, "1000", receipts.new_txn_id(),
                                    identity=identity_fields(station, ID_NUMBER, proxy=True))
    login(ui_client)
    page = ui_client.get(f"/receipts/{paid.seq}").get_data(as_text=True)
    assert 'id="id-card">****002X · 代办<' in page and ID_NUMBER not in page
    printed = paper(station, paid)
    assert "身份证 ID card:\n  ****002X 代办 proxy" in printed and ID_NUMBER not in printed

