"""The touchscreen's customer operations through the Flask test client, in Chinese (default) and English."""

from __future__ import annotations

import pytest
from ui_helpers import (
    CUSTOMER_PIN,
    ID_NUMBER,
    card_customer,
    customer_with_payee,
    english,
    error_of,
    identify,
    login,
    passbook_only_customer,
    start,
    txn_of,
    withdraw,
)

from station import business_day, receipts
from station.db import BlockedPayee, Customer, JournalEntry, Operation
from station.protocol.money import format_yuan
from station.protocol.tokens import unverified_payload


@pytest.fixture
def agent_client(ui_client, open_drawer):
    login(ui_client)
    return ui_client


def test_withdraw_500_from_card_to_receipt(agent_client, station):
    customer = card_customer()
    start(agent_client, "withdrawal")
    page = agent_client.get("/op/withdrawal/customer").get_data(as_text=True)
    assert "卡号" in page and "data-key=\"7\"" in page
    assert identify(agent_client, "withdrawal", customer).location == "/op/withdrawal/amount"
    page = agent_client.get("/op/withdrawal/amount").get_data(as_text=True)
    for quick in ("100", "200", "500", "1000"):
        assert f'id="quick-{quick}"' in page
    assert agent_client.post("/op/withdrawal/amount", data={"amount": "500"}).location == "/op/withdrawal/confirm"
    page = agent_client.get("/op/withdrawal/confirm").get_data(as_text=True)
    assert "¥500.00" in page and "伍佰元整" in page and 'id="fee">¥0.00' in page
    assert customer.name in page and customer.card_number not in page
    assert agent_client.post("/op/withdrawal/confirm").location == "/op/withdrawal/pin"
    page = agent_client.get("/op/withdrawal/pin").get_data(as_text=True)
    assert 'type="password"' in page
    response = agent_client.post("/op/withdrawal/pin", data={"pin": CUSTOMER_PIN, "txn": txn_of(page)})
    assert response.status_code == 302
    receipt = agent_client.get(response.location).get_data(as_text=True)
    assert "伍佰元整" in receipt and "已离线记录，等待银行处理" in receipt and "<svg" in receipt
    assert business_day.drawer_cash(station) == 3_000_000 - 50_000


def test_double_tap_on_pin_records_once(agent_client, station):
    customer = card_customer()
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", customer)
    agent_client.post("/op/withdrawal/amount", data={"amount": "200"})
    agent_client.post("/op/withdrawal/confirm")
    txn = txn_of(agent_client.get("/op/withdrawal/pin").get_data(as_text=True))
    cookie = agent_client.get_cookie("session").value
    first = agent_client.post("/op/withdrawal/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    second = agent_client.post("/op/withdrawal/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    # The same form sent with the cookie from before the first answer (two taps in flight at once).
    agent_client.set_cookie("session", cookie)
    third = agent_client.post("/op/withdrawal/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    assert first.location == second.location == third.location
    assert Operation.select().where(Operation.type == "withdrawal").count() == 1
    assert business_day.drawer_cash(station) == 3_000_000 - 20_000


def test_passbook_customer_deposits(agent_client, station):
    customer = passbook_only_customer()
    start(agent_client, "deposit")
    assert identify(agent_client, "deposit", customer, "passbook").location == "/op/deposit/amount"
    agent_client.post("/op/deposit/amount", data={"amount": "12.50"})
    assert "壹拾贰元伍角" in agent_client.get("/op/deposit/confirm").get_data(as_text=True)
    agent_client.post("/op/deposit/confirm")
    txn = txn_of(agent_client.get("/op/deposit/pin").get_data(as_text=True))
    response = agent_client.post("/op/deposit/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    assert "存款" in agent_client.get(response.location).get_data(as_text=True)
    assert business_day.drawer_cash(station) == 3_000_000 + 1_250


@pytest.mark.parametrize(
    ("id_kind", "number", "zh", "en"),
    [
        ("card", "1234", "卡号不对，请核对卡上的数字。",
         "That card number is not valid. Check the digits on the card."),
        ("card", "6217000000000000", "卡号不对，请核对卡上的数字。",
         "That card number is not valid. Check the digits on the card."),
        ("passbook", "12", "存折号不对，存折号是 8 到 15 位数字。",
         "That passbook number is not valid. It has 8 to 15 digits."),
        ("passbook", "99999999", "本站查不到这个号码的客户，请客户到银行网点办理。",
         "No customer with that number is known at this station. The customer can visit the branch."),
    ],
)
def test_identify_refusals_in_both_languages_keep_the_typed_number(agent_client, id_kind, number, zh, en):
    start(agent_client, "withdrawal")
    page = agent_client.post("/op/withdrawal/customer", data={"id_kind": id_kind, "number": number})
    assert page.status_code == 200
    assert error_of(page.get_data(as_text=True)) == zh
    assert f'value="{number}"' in page.get_data(as_text=True)
    english(agent_client)
    page = agent_client.post("/op/withdrawal/customer", data={"id_kind": id_kind, "number": number})
    assert error_of(page.get_data(as_text=True)) == en


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "请输入金额。"),
        ("abc", "请用数字输入金额，例如 100 或 12.50。"),
        ("-5", "金额不能是负数。"),
        ("0", "金额必须大于零。"),
        ("1.234", "金额最多两位小数（到分）。"),
        ("1200", "单笔最多 1,000.00 元。"),
        ("15", "取款最少 10.00 元，金额须是 10.00 元的整数倍。"),
    ],
)
def test_amount_refusals_before_the_pin(agent_client, amount, message):
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", card_customer())
    page = agent_client.post("/op/withdrawal/amount", data={"amount": amount}).get_data(as_text=True)
    assert error_of(page) == message
    assert f'value="{amount}"' in page


def test_limit_refusals_at_the_pin_keep_a_way_to_change_the_amount(agent_client):
    customer = card_customer()
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", customer)
    agent_client.post("/op/withdrawal/amount", data={"amount": "600"})
    agent_client.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER})
    agent_client.post("/op/withdrawal/confirm")
    txn = txn_of(agent_client.get("/op/withdrawal/pin").get_data(as_text=True))
    # Between the amount step and the PIN, a withdrawal on another screen used most of the customer's day.
    other = agent_client.application.test_client()
    login(other)
    withdraw(other, customer, "500")
    page = agent_client.post("/op/withdrawal/pin", data={"pin": CUSTOMER_PIN, "txn": txn}).get_data(as_text=True)
    assert error_of(page) == "超过每日限额：每天最多 1,000.00 元，今天还可以办 500.00 元。"
    assert 'id="change-amount"' in page
    assert Operation.select().count() == 1


def test_daily_limit_then_the_rest(agent_client):
    customer = card_customer()
    withdraw(agent_client, customer, "600")
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", customer)
    page = agent_client.post("/op/withdrawal/amount", data={"amount": "600"}).get_data(as_text=True)
    assert error_of(page) == "超过每日限额：每天最多 1,000.00 元，今天还可以办 400.00 元。"
    assert withdraw(agent_client, customer, "400").status_code == 302


def test_wrong_pins_lock_the_customer(agent_client):
    customer = card_customer()
    page = withdraw(agent_client, customer, pin="000000")
    assert error_of(page.get_data(as_text=True)) == "密码错误，还可以再试 2 次。"
    page = agent_client.post("/op/withdrawal/pin", data={"pin": "000001", "txn": receipts.new_txn_id()})
    assert error_of(page.get_data(as_text=True)) == "密码错误，还可以再试 1 次。"
    page = agent_client.post("/op/withdrawal/pin", data={"pin": "000002", "txn": receipts.new_txn_id()})
    assert error_of(page.get_data(as_text=True)) == "密码错误次数太多，账户已锁定。请到银行网点解锁。"
    assert Customer.get_by_id(customer.id).status == "locked"
    assert Operation.select().count() == 0
    assert JournalEntry.select().where(JournalEntry.type == "customer_pin_failed").count() == 3


def test_steps_cannot_be_skipped_and_need_an_operation(agent_client):
    assert agent_client.get("/op/withdrawal/pin").status_code == 409
    start(agent_client, "withdrawal")
    assert agent_client.get("/op/withdrawal/pin").location == "/op/withdrawal/customer"
    assert agent_client.get("/op/withdrawal/payee").status_code == 404
    assert agent_client.get("/op/nothing/customer").status_code == 404
    agent_client.post("/op/cancel")
    assert agent_client.get("/op/withdrawal/customer").status_code == 409


def test_changing_the_amount_issues_a_new_transaction(agent_client):
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", card_customer())
    agent_client.post("/op/withdrawal/amount", data={"amount": "100"})
    first = txn_of(agent_client.get("/op/withdrawal/confirm").get_data(as_text=True))
    agent_client.post("/op/withdrawal/amount", data={"amount": "200"})
    second = txn_of(agent_client.get("/op/withdrawal/confirm").get_data(as_text=True))
    assert first != second


def new_payee_transfer(client, customer, account="6222000000009999", name="张三", amount="8000"):
    start(client, "transfer")
    identify(client, "transfer", customer)
    client.post("/op/transfer/payee", data={"payee_account": account, "payee_name": name})
    return client.post("/op/transfer/amount", data={"amount": amount})


def test_fraud_warning_and_deciding_not_to_send(agent_client):
    customer = card_customer(1)
    assert new_payee_transfer(agent_client, customer).location == "/op/transfer/warning"
    page = agent_client.get("/op/transfer/warning").get_data(as_text=True)
    assert "安全账户" in page and "要给 张三 转 ¥8,000.00。" in page
    response = agent_client.post("/op/transfer/warning", data={"decision": "stop"})
    assert response.location == "/home"
    assert "做得对，钱没有转出。" in agent_client.get("/home").get_data(as_text=True)
    assert Operation.select().count() == 0
    # The attempt is journaled for the bank (no PIN was typed: none is in it).
    stopped = [unverified_payload(entry.token)
               for entry in JournalEntry.select().where(JournalEntry.type == "transfer_stopped")]
    assert [(p["amount"], p["payee_name"], p["new_payee"], p["account"]) for p in stopped] == [
        (800_000, "张三", True, customer.account_id)]


def test_a_transfer_over_the_allowance_is_refused_at_the_confirmation_before_the_pin(agent_client):
    customer = card_customer(1)
    new_payee_transfer(agent_client, customer, amount="8000")
    agent_client.post("/op/transfer/warning", data={"decision": "send"})
    response = agent_client.post("/op/transfer/confirm")
    assert response.status_code == 200 and response.location is None
    assert error_of(response.get_data(as_text=True)).startswith("超过")
    assert "捌仟元整" in response.get_data(as_text=True)  # the typed amount is still on the screen
    assert agent_client.get("/op/transfer/pin").location == "/op/transfer/confirm"  # no PIN before it passes
    assert Operation.select().count() == 0


def test_transfer_through_the_warning_then_cancelled(agent_client):
    customer = card_customer(1)
    new_payee_transfer(agent_client, customer, amount="300")
    assert agent_client.post("/op/transfer/warning", data={"decision": "send"}).location == "/op/transfer/confirm"
    page = agent_client.get("/op/transfer/confirm").get_data(as_text=True)
    assert "叁佰元整" in page and 'id="fee">¥2.00' in page
    agent_client.post("/op/transfer/confirm")
    txn = txn_of(agent_client.get("/op/transfer/pin").get_data(as_text=True))
    receipt_url = agent_client.post("/op/transfer/pin", data={"pin": CUSTOMER_PIN, "txn": txn}).location
    page = agent_client.get(receipt_url).get_data(as_text=True)
    assert "银行执行前可以撤销" in page and 'id="cancel-transfer"' in page
    seq = int(receipt_url.rsplit("/", 1)[1])
    page = agent_client.post(f"/receipts/{seq}/cancel", data={"pin": "999999", "txn": receipts.new_txn_id()})
    assert error_of(page.get_data(as_text=True)) == "密码错误，还可以再试 2 次。"
    response = agent_client.post(f"/receipts/{seq}/cancel", data={"pin": CUSTOMER_PIN, "txn": receipts.new_txn_id()})
    assert "转账已撤销" in agent_client.get(response.location).get_data(as_text=True)
    assert Operation.get(Operation.seq == seq).status == "cancelled"
    assert "已撤销" in agent_client.get("/receipts/").get_data(as_text=True)


def test_known_payee_small_amount_skips_the_warning(agent_client):
    customer, payee = customer_with_payee()
    start(agent_client, "transfer")
    identify(agent_client, "transfer", customer)
    page = agent_client.get("/op/transfer/payee").get_data(as_text=True)
    assert payee.name in page
    agent_client.post("/op/transfer/payee", data={"payee_account": payee.account, "payee_name": payee.name})
    agent_client.post("/op/transfer/amount", data={"amount": "500"})
    assert agent_client.get("/op/transfer/warning").location == "/op/transfer/confirm"


def test_transfer_without_the_warning_confirmed_is_refused_by_the_core(agent_client):
    customer = card_customer(1)
    new_payee_transfer(agent_client, customer, amount="300")
    with agent_client.session_transaction() as sess:
        sess["op"] = {**sess["op"], "warning_done": True, "confirmed": True, "txn": receipts.new_txn_id()}
    page = agent_client.post("/op/transfer/pin", data={"pin": CUSTOMER_PIN, "txn": receipts.new_txn_id()})
    # Nothing recorded; the PIN screen sends the agent back to the warning (not a refusal it repeats).
    assert page.status_code == 302 and page.location.endswith("/op/transfer/warning")
    assert Operation.select().count() == 0
    assert 'id="fraud-warning"' in agent_client.get("/op/transfer/warning").get_data(as_text=True)


@pytest.mark.parametrize(
    ("account", "name", "message"),
    [
        ("123", "张三", "收款账号不对：账号是 10 到 19 位数字。"),
        ("6222000000009999", "", "请输入收款人户名（最多 30 个字）。"),
        ("6222000000008888", "骗子", "银行已禁止向这个账户转账，请不要给这个账户转钱！"),
        ("own", "自己", "不能转给客户自己的账户。"),
    ],
)
def test_payee_refusals(agent_client, account, name, message):
    BlockedPayee.create(account="6222000000008888", reason="reported fraud")
    customer = card_customer(1)
    if account == "own":
        account = customer.card_number
    start(agent_client, "transfer")
    identify(agent_client, "transfer", customer)
    page = agent_client.post("/op/transfer/payee", data={"payee_account": account, "payee_name": name})
    assert error_of(page.get_data(as_text=True)) == message


def test_electricity_bill_in_cash(agent_client, station):
    start(agent_client, "bill_payment")
    page = agent_client.get("/op/bill_payment/biller").get_data(as_text=True)
    assert "国网电费" in page and 'class="badge electricity"' in page
    agent_client.post("/op/bill_payment/biller", data={"biller": "ELEC-SGCC"})
    page = agent_client.post("/op/bill_payment/reference", data={"reference": "123"}).get_data(as_text=True)
    assert error_of(page) == "户号是 10 位数字。"
    agent_client.post("/op/bill_payment/reference", data={"reference": "3300112233"})
    agent_client.post("/op/bill_payment/amount", data={"amount": "86.40"})
    page = agent_client.get("/op/bill_payment/confirm").get_data(as_text=True)
    assert "捌拾陆元肆角" in page
    response = agent_client.post("/op/bill_payment/confirm", data={"funding": "cash", "txn": txn_of(page)})
    assert "3300112233" in agent_client.get(response.location).get_data(as_text=True)
    assert business_day.drawer_cash(station) == 3_000_000 + 8_640


def test_bill_amount_rule_refused_on_the_confirm_screen(agent_client):
    start(agent_client, "bill_payment")
    agent_client.post("/op/bill_payment/biller", data={"biller": "WATER-COUNTY"})
    agent_client.post("/op/bill_payment/reference", data={"reference": "12345678"})
    agent_client.post("/op/bill_payment/amount", data={"amount": "5000"})
    page = agent_client.get("/op/bill_payment/confirm").get_data(as_text=True)
    page = agent_client.post("/op/bill_payment/confirm",
                             data={"funding": "cash", "txn": txn_of(page)}).get_data(as_text=True)
    assert error_of(page) == "这项缴费金额须在 1.00 元到 2,000.00 元之间。"


def test_mobile_top_up_denominations_and_carrier(agent_client):
    start(agent_client, "bill_payment")
    agent_client.post("/op/bill_payment/biller", data={"biller": "MOBILE-CMCC"})
    page = agent_client.post("/op/bill_payment/reference", data={"reference": "13012345678"}).get_data(as_text=True)
    assert error_of(page) == "这个手机号不属于所选的运营商。"
    agent_client.post("/op/bill_payment/reference", data={"reference": "13912345678"})
    page = agent_client.get("/op/bill_payment/amount").get_data(as_text=True)
    assert 'id="quick-50"' in page and 'id="amount"' not in page
    agent_client.post("/op/bill_payment/amount", data={"amount": "50"})
    page = agent_client.get("/op/bill_payment/confirm").get_data(as_text=True)
    response = agent_client.post("/op/bill_payment/confirm", data={"funding": "cash", "txn": txn_of(page)})
    assert response.status_code == 302


def test_bill_paid_from_the_account_needs_the_customer_and_pin(agent_client):
    start(agent_client, "bill_payment")
    agent_client.post("/op/bill_payment/biller", data={"biller": "GAS-COUNTY"})
    agent_client.post("/op/bill_payment/reference", data={"reference": "1234567890"})
    agent_client.post("/op/bill_payment/amount", data={"amount": "120"})
    page = agent_client.get("/op/bill_payment/confirm").get_data(as_text=True)
    response = agent_client.post("/op/bill_payment/confirm", data={"funding": "account", "txn": txn_of(page)})
    assert response.location == "/op/bill_payment/customer"
    identify(agent_client, "bill_payment", card_customer())
    txn = txn_of(agent_client.get("/op/bill_payment/pin").get_data(as_text=True))
    response = agent_client.post("/op/bill_payment/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    op = Operation.get(Operation.seq == int(response.location.rsplit("/", 1)[1]))
    assert op.debit_fen == 12_000 and op.cash_fen == 0


def test_balance_enquiry(agent_client):
    customer = card_customer()
    start(agent_client, "balance_enquiry")
    identify(agent_client, "balance_enquiry", customer)
    txn = txn_of(agent_client.get("/op/balance_enquiry/pin").get_data(as_text=True))
    response = agent_client.post("/op/balance_enquiry/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    page = agent_client.get(response.location).get_data(as_text=True)
    assert f"¥{format_yuan(customer.balance_fen)}" in page and "本站离线可用" in page


def test_operations_are_refused_before_the_day_is_open(ui_client, station):
    login(ui_client)
    page = ui_client.get("/home").get_data(as_text=True)
    assert "今天还没开门营业，请先清点备用金。" in page and 'id="tile-withdrawal" disabled' in page
    # Even past the disabled tile, the core refuses (on the amount screen, before any PIN; nothing recorded).
    page = withdraw(ui_client, card_customer(), "100").get_data(as_text=True)
    assert error_of(page) == "请先开门营业（清点备用金），再为客户办理业务。"


def test_english_withdrawal_confirm(agent_client):
    english(agent_client)
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", card_customer())
    agent_client.post("/op/withdrawal/amount", data={"amount": "500"})
    page = agent_client.get("/op/withdrawal/confirm").get_data(as_text=True)
    assert "Please check with the customer" in page and "伍佰元整" in page and "In capitals" in page
