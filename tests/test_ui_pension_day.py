"""Pension day at a village shop (../shared/STORIES.md), told through the touchscreen, balances checked at the end."""

from __future__ import annotations

from ui_helpers import (
    CUSTOMER_PIN,
    card_customer,
    customer_with_payee,
    error_of,
    identify,
    login,
    passbook_only_customer,
    start,
    txn_of,
    withdraw,
)

from station import business_day, receipts
from station.db import Customer, JournalEntry, Operation
from station.protocol.tokens import unverified_payload


def pay_electricity_in_cash(client, reference, amount):
    start(client, "bill_payment")
    client.post("/op/bill_payment/biller", data={"biller": "ELEC-SGCC"})
    client.post("/op/bill_payment/reference", data={"reference": reference})
    client.post("/op/bill_payment/amount", data={"amount": amount})
    page = client.get("/op/bill_payment/confirm").get_data(as_text=True)
    return client.post("/op/bill_payment/confirm", data={"funding": "cash", "txn": txn_of(page)})


def test_pension_day(ui_client, station, clock, printed):
    client = ui_client

    # 07:40 Tian logs in and opens the day, the float counted by denomination (12,000 yuan here rather than the
    # story's 30,000: the test station has 20 customers, not forty, and the drawer must still run low).
    login(client)
    client.post("/day/open", data={"n10000": "100", "n5000": "30", "n2000": "25"})
    assert business_day.drawer_cash(station) == 1_200_000

    # Pension withdrawals, by card and by passbook.
    customers = [card_customer(i) for i in range(6)]
    for customer in customers[:4]:
        assert withdraw(client, customer, "800").status_code == 302
    start(client, "withdrawal")
    identify(client, "withdrawal", passbook_only_customer(), "passbook")
    client.post("/op/withdrawal/amount", data={"amount": "500"})
    client.post("/op/withdrawal/confirm")
    txn = txn_of(client.get("/op/withdrawal/pin").get_data(as_text=True))
    # A double tap on the PIN pad's OK records once.
    first = client.post("/op/withdrawal/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    assert client.post("/op/withdrawal/pin", data={"pin": CUSTOMER_PIN, "txn": txn}).location == first.location

    # Mrs. Li types her PIN wrong three times: locked, told to visit the branch, nothing recorded.
    li = customers[4]
    withdraw(client, li, "300", pin="111111")
    client.post("/op/withdrawal/pin", data={"pin": "222222", "txn": receipts.new_txn_id()})
    page = client.post("/op/withdrawal/pin", data={"pin": "333333", "txn": receipts.new_txn_id()})
    assert "请到银行网点解锁" in error_of(page.get_data(as_text=True))
    assert Customer.get_by_id(li.id).status == "locked"

    # Mr. Wang asks for 1,200: refused (the cap is 1,000); he takes 1,000.
    wang = customers[5]
    assert error_of(withdraw(client, wang, "1200").get_data(as_text=True)) == "单笔最多 1,000.00 元。"
    assert withdraw(client, wang, "1000").status_code == 302

    # 11:30 the drawer runs low: a withdrawal bigger than the cash left is refused before any PIN.
    clock.advance(hours=3, minutes=50)
    login(client)
    for customer in [card_customer(i) for i in range(6, 13)]:
        assert withdraw(client, customer, "1000").status_code == 302
    assert business_day.drawer_cash(station) == 30_000
    start(client, "withdrawal")
    identify(client, "withdrawal", card_customer(14))
    page = client.post("/op/withdrawal/amount", data={"amount": "500"}).get_data(as_text=True)
    assert error_of(page) == "钱箱现金不够：只剩 300.00 元。"
    client.post("/op/cancel")

    # A man wants to send 8,000 to a new payee "because the police called": he decides not to send.
    start(client, "transfer")
    identify(client, "transfer", card_customer(13))
    client.post("/op/transfer/payee", data={"payee_account": "6222000011112222", "payee_name": "王警官"})
    assert client.post("/op/transfer/amount", data={"amount": "8000"}).location == "/op/transfer/warning"
    client.post("/op/transfer/warning", data={"decision": "stop"})
    assert Operation.select().where(Operation.type == "transfer").count() == 0

    # Another customer sends 500 to her son (a known payee): the receipt says waiting for the bank.
    mother, son = customer_with_payee()
    start(client, "transfer")
    identify(client, "transfer", mother)
    client.post("/op/transfer/payee", data={"payee_account": son.account, "payee_name": son.name})
    client.post("/op/transfer/amount", data={"amount": "500"})
    assert client.get("/op/transfer/warning").location == "/op/transfer/confirm"
    client.post("/op/transfer/confirm")
    txn = txn_of(client.get("/op/transfer/pin").get_data(as_text=True))
    receipt = client.post("/op/transfer/pin", data={"pin": CUSTOMER_PIN, "txn": txn}).location
    assert "银行执行前可以撤销" in client.get(receipt).get_data(as_text=True)

    # Three electricity bills paid in cash; a reprint is marked duplicate.
    for reference, amount in (("3300000001", "86.40"), ("3300000002", "120"), ("3300000003", "45.50")):
        assert pay_electricity_in_cash(client, reference, amount).status_code == 302
    seq = int(receipt.rsplit("/", 1)[1])
    client.post(f"/receipts/{seq}/print")
    client.post(f"/receipts/{seq}/print")
    assert [(job_seq, duplicate) for job_seq, duplicate, _ in printed] == [(seq, False), (seq, True)]
    assert "重印".encode("gb18030") in printed[1][2] and "重印".encode("gb18030") not in printed[0][2]

    # The bank settles the son's transfer: the receipts screen shows it.
    Operation.update(status="settled").where(Operation.seq == seq).execute()
    assert "银行已确认" in client.get("/receipts/").get_data(as_text=True)

    # 17:30 day close: the count is 10 yuan short; the variance is recorded and signed.
    expected = business_day.drawer_cash(station)
    hundreds, rest = divmod(expected - 1_000, 10_000)
    counts = {"n10000": str(hundreds), "n10": str(rest // 10), "confirm": "1"}
    response = client.post("/day/close", data=counts)
    close = unverified_payload(JournalEntry.get_by_id(int(response.location.rsplit("/", 1)[1])).token)
    assert (close["type"], close["expected"], close["variance"]) == ("day_close", expected, -1_000)

    # The withdrawals, bills and transfer add up: float - withdrawals + bills = what the drawer should hold.
    paid_out = sum(op.amount_fen for op in Operation.select().where(Operation.type == "withdrawal"))
    bills = sum(op.amount_fen for op in Operation.select().where(Operation.type == "bill_payment"))
    assert expected == 1_200_000 - paid_out + bills
    assert bills == 8_640 + 12_000 + 4_550

    # The busy-hours chart: 6 visits from 07:00, 11 (seven withdrawals, a transfer, three bills) from 11:00.
    page = client.get("/chart").get_data(as_text=True)
    assert "今天各时段客流 · 17" in page and "最忙：11:00 到 12:00。" in page
