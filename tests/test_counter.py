"""The right thing at the right moment: a locked or closed customer refused when identified, the PIN pad gone once
the customer is locked, a passbook shown as a passbook, a day close's variance in words and approved beyond the
tolerance, an operation left half done listed with Resume and Cancel, a reversal saying where the cash goes."""

from __future__ import annotations

import json
import re

import pytest
from ui_helpers import (
    CUSTOMER_PIN,
    ID_NUMBER,
    SUPERVISOR_PIN,
    card_customer,
    english,
    error_of,
    identify,
    identity_present,
    login,
    passbook_only_customer,
    start,
    txn_of,
)

from station import agents, business_day, errors, operations, receipts
from station.db import BusinessDay, Customer, JournalEntry, Operation
from station.protocol.tokens import unverified_payload

LOCKED_ZH = "密码错误次数太多，账户已锁定。请到银行网点解锁。"
LOCKED_EN = "This customer is locked after too many wrong PINs. Please visit the bank branch to unlock."
CLOSED_ZH = "该账户已销户，不能使用，请到银行网点办理。"
CLOSED_EN = "This account is closed and cannot be used. Please visit the bank branch."


def last_payload() -> dict:
    return unverified_payload(JournalEntry.select().order_by(JournalEntry.seq.desc()).first().token)


def entries() -> int:
    return JournalEntry.select().count()


def set_status(customer: Customer, status: str) -> None:
    Customer.update(status=status).where(Customer.id == customer.id).execute()


@pytest.fixture
def agent_client(ui_client, open_drawer):
    login(ui_client)
    return ui_client


# -- 1. refused at identification -------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "error"), [("locked", errors.CustomerLocked), ("closed", errors.CustomerNotActive)])
@pytest.mark.parametrize("kind", ["card", "passbook"])
def test_identify_refuses_a_locked_or_closed_customer(station, status, error, kind):
    customer = card_customer()
    set_status(customer, status)
    number = customer.card_number if kind == "card" else customer.passbook_number
    with pytest.raises(error):
        agents.identify_customer(station, number, kind)
    set_status(customer, "active")
    assert agents.identify_customer(station, number, kind).id == customer.id


def walk_to_customer_step(client, kind: str) -> str:
    """Start ``kind`` and walk to its customer step (a bill: biller, reference, amount, then paid from the
    account); returns the customer step's path."""
    start(client, kind)
    if kind == "bill_payment":
        client.post("/op/bill_payment/biller", data={"biller": "ELEC-SGCC"})
        client.post("/op/bill_payment/reference", data={"reference": "1234567890"})
        client.post("/op/bill_payment/amount", data={"amount": "88"})
        assert client.post("/op/bill_payment/confirm", data={"funding": "account"}).location.endswith("/customer")
    return f"/op/{kind}/customer"


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("kind", ["withdrawal", "deposit", "transfer", "balance_enquiry", "bill_payment"])
def test_every_flow_refuses_a_locked_customer_at_identification(agent_client, lang, kind):
    if lang == "en":
        english(agent_client)
    customer = card_customer(1)
    set_status(customer, "locked")
    path = walk_to_customer_step(agent_client, kind)
    response = identify(agent_client, kind, customer)
    assert response.status_code == 200, "stays on the customer step"
    assert error_of(response.get_data(as_text=True)) == (LOCKED_ZH if lang == "zh" else LOCKED_EN)
    # No step past the customer opens.
    assert agent_client.get(path.replace("/customer", "/pin")).location.endswith("/customer")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_closed_passbook_is_refused_at_identification(agent_client, lang):
    if lang == "en":
        english(agent_client)
    customer = passbook_only_customer()
    set_status(customer, "closed")
    start(agent_client, "deposit")
    page = identify(agent_client, "deposit", customer, "passbook").get_data(as_text=True)
    assert error_of(page) == (CLOSED_ZH if lang == "zh" else CLOSED_EN)


# -- 2. the PIN pad goes once the customer is locked ------------------------------------------------------------
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_third_wrong_pin_takes_the_pad_away_and_a_reload_too(agent_client, station, lang):
    if lang == "en":
        english(agent_client)
    customer = card_customer(2)
    start(agent_client, "balance_enquiry")
    identify(agent_client, "balance_enquiry", customer)
    txn = txn_of(agent_client.get("/op/balance_enquiry/pin").get_data(as_text=True))
    for _ in range(2):
        page = agent_client.post("/op/balance_enquiry/pin", data={"pin": "000000", "txn": txn}).get_data(as_text=True)
        assert 'id="pin-ok"' in page and 'class="keypad"' in page
    for page in (agent_client.post("/op/balance_enquiry/pin", data={"pin": "000000", "txn": txn}),
                 agent_client.get("/op/balance_enquiry/pin")):
        page = page.get_data(as_text=True)
        assert error_of(page) == (LOCKED_ZH if lang == "zh" else LOCKED_EN)
        assert 'id="pin-ok"' not in page and 'class="keypad"' not in page and 'id="pin"' not in page
        assert 'id="go-home"' in page and 'id="cancel-op"' in page
    assert Customer.get_by_id(customer.id).status == "locked"
    # Even the right PIN posted by hand records nothing.
    before = entries()
    agent_client.post("/op/balance_enquiry/pin", data={"pin": CUSTOMER_PIN, "txn": txn})
    assert entries() == before and Operation.select().count() == 0


# -- 3. a passbook shown as a passbook ---------------------------------------------------------------------------
def test_card_and_passbook_masks_differ(station):
    card = card_customer()
    passbook = passbook_only_customer()
    assert receipts.customer_number(card) == ("card", f"{card.card_number[:4]} **** {card.card_number[-4:]}")
    assert receipts.customer_number(passbook) == ("passbook", "****" + passbook.passbook_number[-4:])
    assert receipts.customer_masked(passbook) == "****" + passbook.passbook_number[-4:]
    assert receipts.customer_number(None) is None


@pytest.mark.parametrize(("lang", "card_word", "passbook_word"), [("zh", "卡", "存折"), ("en", "Card", "Passbook")])
def test_the_screens_and_the_receipt_show_the_passbook_as_a_passbook(agent_client, lang, card_word, passbook_word):
    if lang == "en":
        english(agent_client)
    passbook = passbook_only_customer()
    start(agent_client, "deposit")
    identify(agent_client, "deposit", passbook, "passbook")
    page = agent_client.get("/op/deposit/amount").get_data(as_text=True)
    masked = "****" + passbook.passbook_number[-4:]
    assert f'data-kind="passbook">{passbook_word}</span> <span class="id-number">{masked}</span>' in page
    assert passbook.passbook_number[:4] + " ****" not in page
    agent_client.post("/op/deposit/amount", data={"amount": "200"})
    agent_client.post("/op/deposit/confirm")
    page = agent_client.get("/op/deposit/pin").get_data(as_text=True)
    response = agent_client.post("/op/deposit/pin", data={"pin": CUSTOMER_PIN, "txn": txn_of(page)})
    receipt_page = agent_client.get(response.location).get_data(as_text=True)
    assert masked in receipt_page, "the receipt shows the same mask"
    card = card_customer()
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", card)
    page = agent_client.get("/op/withdrawal/amount").get_data(as_text=True)
    assert f'data-kind="card">{card_word}</span> <span class="id-number">{card.card_number[:4]} **** ' in page


# -- 4. day close: the variance in words, approved beyond the tolerance -----------------------------------------
def test_a_variance_within_the_tolerance_closes_without_approval(open_drawer, agent):
    closed = business_day.close_day(open_drawer, agent, {"10000": 299, "5000": 1, "2000": 2, "500": 1})
    assert closed.variance_fen == -5_00
    assert "reason" not in last_payload() and "supervisor" not in last_payload()


@pytest.mark.parametrize("counts", [{"10000": 299, "5000": 1}, {"10000": 301}], ids=["short", "over"])
def test_a_variance_beyond_the_tolerance_needs_a_reason_and_a_supervisor(open_drawer, agent, supervisor, counts):
    st = open_drawer
    before = entries()
    with pytest.raises(errors.VarianceReasonRequired, match="50.00|100.00"):
        business_day.close_day(st, agent, counts)
    with pytest.raises(errors.VarianceApprovalRequired):
        business_day.close_day(st, agent, counts, reason="Miscount")
    with pytest.raises(errors.SupervisorRequired):
        business_day.close_day(st, agent, counts, reason="Miscount", supervisor=agent)
    with pytest.raises(errors.InvalidVarianceReason):
        business_day.close_day(st, agent, counts, reason="Miscount\x00", supervisor=supervisor)
    with pytest.raises(errors.InvalidVarianceReason):
        business_day.close_day(st, agent, counts, reason="x" * 201, supervisor=supervisor)
    assert entries() == before and business_day.current_day(st) is not None
    closed = business_day.close_day(st, agent, counts, reason="  Miscount:   a 50 note  ", supervisor=supervisor)
    # The receipt handed back says what the entry says (as the receipts screen reads it), reason and approver too.
    assert (closed.receipt.details["reason"], closed.receipt.details["supervisor"]) == ("Miscount: a 50 note", "S01")
    body = last_payload()
    assert (body["type"], body["reason"], body["supervisor"], body["agent"]) == (
        "day_close", "Miscount: a 50 note", "S01", "A01")
    assert not any("pin" in key for key in body)
    assert business_day.current_day(st) is None


def test_the_tolerance_comes_from_the_policy(open_drawer, agent):
    open_drawer.set_setting("policy", {"day_close_tolerance_fen": 0})
    assert business_day.close_preview(open_drawer, {"10000": 300, "10": 1}).needs_approval
    with pytest.raises(errors.VarianceReasonRequired):
        business_day.close_day(open_drawer, agent, {"10000": 300, "10": 1})
    assert not business_day.close_preview(open_drawer, {"10000": 300}).needs_approval


SHORT = {"n10000": "299", "n5000": "1"}  # 50 yuan short


@pytest.mark.parametrize(("lang", "short", "over"), [("zh", "短款 ¥50.00", "长款 ¥100.00"),
                                                     ("en", "Short ¥50.00", "Over ¥100.00")])
def test_the_preview_says_short_or_over(agent_client, lang, short, over):
    if lang == "en":
        english(agent_client)
    for counts, words in ((SHORT, short), ({"n10000": "301"}, over)):
        page = agent_client.post("/day/close", data={**counts, "confirm": "0"}).get_data(as_text=True)
        assert re.search(rf'id="variance"[^>]*>{re.escape(words)}<', page)
        assert "¥-" not in page


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_close_beyond_the_tolerance_asks_reason_and_supervisor_and_keeps_the_counts(agent_client, station, lang):
    if lang == "en":
        english(agent_client)
    page = agent_client.post("/day/close", data={**SHORT, "confirm": "0"}).get_data(as_text=True)
    assert 'id="variance-reasons"' in page and 'id="variance-supervisors"' in page and 'name="pin"' in page
    expected = {"expected": shown_expected(page)}
    before = entries()
    refusals = [
        ({}, "钱箱差 50.00 元，超过 10.00 元：请选择或输入原因。" if lang == "zh"
         else "The drawer is 50.00 yuan out, more than 10.00 yuan: choose or type the reason."),
        ({"reason": "Miscount"}, "钱箱差 50.00 元，超过 10.00 元：须由主管输入密码确认日终。" if lang == "zh"
         else "The drawer is 50.00 yuan out, more than 10.00 yuan: a supervisor must approve the close with their "
              "PIN."),
        ({"reason": "Miscount", "supervisor_id": "S01", "pin": "9999"},
         "密码错误。再错 4 次，须等待后才能再试。" if lang == "zh"
         else "Wrong PIN. Tries left before a wait: 4."),  # the last supervisor is never locked, only made to wait
    ]
    for fields, message in refusals:
        page = agent_client.post("/day/close", data={**SHORT, "confirm": "1", **expected, **fields}
                                 ).get_data(as_text=True)
        assert error_of(page) == message
        # The same screen, the counts kept in the form, the reason still chosen.
        assert 'name="n10000" value="299"' in page and 'name="n5000" value="1"' in page
        assert 'id="variance-reasons"' in page
        if "reason" in fields:
            assert 'value="Miscount" checked' in page
    assert business_day.current_day(station) is not None
    assert [e.type for e in JournalEntry.select().where(JournalEntry.seq > before)] == ["agent_pin_failed"]
    response = agent_client.post("/day/close", data={**SHORT, "confirm": "1", "reason": "Miscount",
                                                     "reason_text": "一张50元", "supervisor_id": "S01",
                                                     "pin": SUPERVISOR_PIN, **expected})
    assert response.status_code == 302
    body = last_payload()
    assert (body["type"], body["reason"], body["supervisor"], body["variance"]) == (
        "day_close", "Miscount: 一张50元", "S01", -5_000)
    assert SUPERVISOR_PIN not in json.dumps(body)
    assert BusinessDay.select().where(BusinessDay.closed_at.is_null()).count() == 0


def shown_expected(page: str) -> str:
    """The expected cash (fen) the approval screen was showing, as its form sends it back."""
    return re.search(r'name="expected" value="(-?\d+)"', page).group(1)


def test_the_supervisor_approves_only_the_figures_shown(agent_client, station):
    """An operation recorded after the approval screen showed (a second tab) changes what the drawer should
    hold: the close is refused before the PIN is checked, and the screen shows the new figures to approve."""
    page = agent_client.post("/day/close", data={**SHORT, "confirm": "0"}).get_data(as_text=True)
    seen = shown_expected(page)
    approve = {**SHORT, "confirm": "1", "reason": "Miscount", "supervisor_id": "S01", "pin": SUPERVISOR_PIN}
    agent = agents.login_agent(station, "A01", "1357")
    operations.deposit_cash(station, agent, agents.authenticate_customer(station, agent, card_customer(),
                                                                         CUSTOMER_PIN), "500", receipts.new_txn_id())
    before = entries()
    page = agent_client.post("/day/close", data={**approve, "expected": seen}).get_data(as_text=True)
    assert error_of(page) == "应有金额已变动：请核对后重新输入主管密码。"
    assert entries() == before and business_day.current_day(station) is not None  # no PIN try, no close
    assert re.search(r'id="variance"[^>]*>短款 ¥550.00<', page) and shown_expected(page) != seen
    assert agent_client.post("/day/close", data={**approve, "expected": shown_expected(page)}).status_code == 302
    assert last_payload()["variance"] == -55_000


def test_count_again_from_the_approval_goes_back_to_the_boxes(agent_client):
    page = agent_client.post("/day/close", data={**SHORT, "edit": "1"}).get_data(as_text=True)
    assert 'id="n10000" name="n10000" value="299"' in page and 'id="variance-reasons"' not in page


# -- 5. an operation left half done: listed, resumed, cancelled -------------------------------------------------
@pytest.mark.parametrize(("lang", "words"), [("zh", ("没办完：", "取款")), ("en", ("Not finished:", "Withdraw cash"))])
def test_home_lists_the_half_done_operation_with_resume_and_cancel(agent_client, lang, words):
    if lang == "en":
        english(agent_client)
    customer = card_customer()
    start(agent_client, "withdrawal")
    identify(agent_client, "withdrawal", customer)
    agent_client.post("/op/withdrawal/amount", data={"amount": "1000"})
    agent_client.post("/op/withdrawal/identity", data={"id_number": ID_NUMBER})  # above id_check_fen
    page = agent_client.get("/home").get_data(as_text=True)
    assert 'id="pending-op"' in page and all(word in page for word in words)
    assert customer.name in page and 'id="pending-amount">¥1,000.00<' in page
    assert re.search(r'id="resume-op"', page) and 'href="/op/withdrawal/confirm"' in page
    assert 'id="cancel-pending"' in page
    assert agent_client.post("/op/cancel").location == "/home"
    assert 'id="pending-op"' not in agent_client.get("/home").get_data(as_text=True)


def test_an_operation_just_started_is_listed_without_customer_or_amount(agent_client):
    start(agent_client, "deposit")
    page = agent_client.get("/home").get_data(as_text=True)
    assert 'id="pending-kind">存款' in page and 'id="pending-customer"' not in page
    assert 'id="pending-amount"' not in page and 'href="/op/deposit/customer"' in page


def test_day_close_lists_the_half_done_operation_and_its_cancel_comes_back(agent_client, station):
    start(agent_client, "transfer")
    identify(agent_client, "transfer", card_customer())
    page = agent_client.get("/day/close").get_data(as_text=True)
    assert 'id="pending-op"' in page and 'name="back" value="day"' in page
    page = agent_client.post("/day/close", data={"n10000": "300", "confirm": "1"}).get_data(as_text=True)
    assert error_of(page) == "还有一笔业务没办完，请办完或取消后再日终。" and 'id="resume-op"' in page
    assert agent_client.post("/op/cancel", data={"back": "day"}).location == "/day/close"
    assert 'id="pending-op"' not in agent_client.get("/day/close").get_data(as_text=True)
    assert agent_client.post("/day/close", data={"n10000": "300", "confirm": "1"}).status_code == 302
    assert business_day.current_day(station) is None


# -- 6. a reversal says where the cash goes ----------------------------------------------------------------------
@pytest.mark.parametrize(("lang", "take", "give"), [
    ("zh", "收回现金 ¥1,000.00：先向客户收回，再请主管确认。", "退还现金 ¥300.00：主管确认后退给客户。"),
    ("en", "Take back ¥1,000.00 cash from the customer first.",
     "Give back ¥300.00 cash once the supervisor confirms.")])
def test_the_reversal_screen_says_to_take_back_or_give_back_the_cash(agent_client, open_drawer, agent, lang, take,
                                                                    give):
    if lang == "en":
        english(agent_client)
    customer = card_customer()
    auth = agents.authenticate_customer(open_drawer, agent, customer, CUSTOMER_PIN)
    paid = operations.withdraw_cash(open_drawer, agent, auth, "1000", receipts.new_txn_id(),
                                   identity=identity_present(open_drawer))
    taken = operations.deposit_cash(open_drawer, agent, auth, "300", receipts.new_txn_id())
    balance = operations.balance_enquiry(open_drawer, agent, auth, receipts.new_txn_id()).receipt
    for seq, words in ((paid.seq, take), (taken.seq, give)):
        page = agent_client.get(f"/receipts/{seq}/reverse").get_data(as_text=True)
        assert re.search(r'id="cash-back">([^<]*)<', page).group(1) == words
    assert 'id="cash-back"' not in agent_client.get(f"/receipts/{balance.seq}/reverse").get_data(as_text=True)
