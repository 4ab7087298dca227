"""The counter in Chromium at 800x480, in Chinese and in English: a locked customer refused at identification, the
PIN pad gone after the last wrong PIN (and after a reload), a passbook shown as a passbook, an operation left half
done listed with Resume and Cancel (home and day close), the reversal saying where the cash goes, and the day close
with its variance in words, a reason and a supervisor's PIN. Every screen and every refusal fits.

One station, one served app and one browser for the module; each test has its own page (its own cookies) and its own
customers, and the day close, which ends the day, reopens it when an earlier test closed it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from conftest import FakeClock
from ui_browser_support import check_screen, log_in, new_page, serving, tap_keys
from ui_helpers import CUSTOMER_PIN, SUPERVISOR_PIN, identity_present

from station import agents, business_day, operations, receipts
from station.app import create_app
from station.db import Customer
from station.demo import DEMO_AGENTS, load_demo_customers
from station.provision import init_station

LANGS = ["zh", "en"]


@pytest.fixture(scope="module")
def counter(tmp_path_factory, browser):
    """(station, base url): demo customers, the day open with 30,000 yuan, the app served."""
    clock = FakeClock(datetime(2026, 11, 3, 1, 0, tzinfo=UTC))  # 09:00 in Beijing
    st = init_station(tmp_path_factory.mktemp("counter") / "ST-0001", "ST-0001", clock=clock)
    load_demo_customers(st, count=20)
    app = create_app({"STATION": st, "SECRET_KEY": "counter-browser-test"})
    with st.bound():
        business_day.open_day(st, session(st, 0), {"10000": 300})
        with serving(app) as base:
            yield st, base
    st.close()


@pytest.fixture
def page(counter, browser):
    page = new_page(browser)
    yield page
    page.close()


def session(st, index: int) -> agents.AgentSession:
    agent_id, _, _, pin = DEMO_AGENTS[index]
    return agents.login_agent(st, agent_id, pin)


def cards(index: int) -> Customer:
    return list(Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id))[index]


def words(lang: str, zh: str, en: str) -> str:
    return zh if lang == "zh" else en


@pytest.mark.parametrize("lang", LANGS)
def test_a_locked_customer_is_refused_at_identification(counter, page, lang):
    st, base = counter
    customer = cards(2 + LANGS.index(lang))
    Customer.update(status="locked").where(Customer.id == customer.id).execute()
    log_in(page, base, lang)
    page.click("#tile-withdrawal")
    tap_keys(page, customer.card_number)
    page.click("#next")
    assert page.inner_text("#error") == words(
        lang, "密码错误次数太多，账户已锁定。请到银行网点解锁。",
        "This customer is locked after too many wrong PINs. Please visit the bank branch to unlock.")
    assert page.url.endswith("/op/withdrawal/customer")
    check_screen(page)


@pytest.mark.parametrize("lang", LANGS)
def test_the_third_wrong_pin_takes_the_pad_away_even_after_a_reload(counter, page, lang):
    st, base = counter
    customer = cards(4 + LANGS.index(lang))
    log_in(page, base, lang)
    page.click("#tile-balance_enquiry")
    tap_keys(page, customer.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/balance_enquiry/pin")
    for try_number in range(3):
        tap_keys(page, "000000")
        page.click("#pin-ok")
        page.wait_for_selector("#error")
        check_screen(page)
        if try_number < 2:
            assert page.locator("#pin-ok").count() == 1
    locked = words(lang, "密码错误次数太多，账户已锁定。请到银行网点解锁。",
                   "This customer is locked after too many wrong PINs. Please visit the bank branch to unlock.")
    for _ in range(2):
        assert page.inner_text("#error") == locked
        assert page.locator("#pin-ok").count() == 0 and page.locator(".keypad").count() == 0
        assert page.locator("#go-home").is_visible() and page.locator("#cancel-op").is_visible()
        check_screen(page)
        page.reload()
    page.click("#go-home")
    page.wait_for_url(base + "/home")
    assert Customer.get_by_id(customer.id).status == "locked"


@pytest.mark.parametrize("lang", LANGS)
def test_a_passbook_customer_is_shown_with_a_passbook_mask(counter, page, lang):
    st, base = counter
    passbook = Customer.select().where(Customer.card_number.is_null()).order_by(Customer.id).first()
    log_in(page, base, lang)
    page.click("#tile-deposit")
    page.click("#kind-passbook")
    page.wait_for_url("**/op/deposit/customer?id_kind=passbook")
    tap_keys(page, passbook.passbook_number)
    page.click("#next")
    page.wait_for_url(base + "/op/deposit/amount")
    masked = "****" + passbook.passbook_number[-4:]
    assert page.inner_text("#who .id-kind") == words(lang, "存折", "Passbook")
    assert page.inner_text("#who .id-number") == masked
    check_screen(page)
    tap_keys(page, "200")
    page.click("#next")
    page.wait_for_url(base + "/op/deposit/confirm")
    assert f"{words(lang, '存折', 'Passbook')} {masked}" in page.inner_text("#summary")
    check_screen(page)
    page.click("#cancel-op")


@pytest.mark.parametrize("lang", LANGS)
def test_a_half_done_withdrawal_is_listed_with_resume_and_cancel(counter, page, lang):
    st, base = counter
    customer = cards(6)
    log_in(page, base, lang)
    page.click("#tile-withdrawal")
    tap_keys(page, customer.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/withdrawal/amount")
    tap_keys(page, "500")
    page.click("#next")
    page.wait_for_url(base + "/op/withdrawal/confirm")
    page.click("header a.btn")  # 首页 / Home, in the middle of the withdrawal
    page.wait_for_url(base + "/home")
    listed = page.inner_text("#pending-op")
    assert words(lang, "还有一笔业务没办完：", "Not finished:") in listed
    assert words(lang, "取款", "Withdraw cash") in listed and customer.name in listed and "¥500.00" in listed
    check_screen(page)
    page.click("#resume-op")
    page.wait_for_url(base + "/op/withdrawal/confirm")
    page.goto(base + "/day/close")
    assert customer.name in page.inner_text("#pending-op")
    check_screen(page)
    page.click("#check-count")  # refused: the half-done withdrawal is listed beside the refusal
    assert page.inner_text("#error") == words(lang, "还有一笔业务没办完，请办完或取消后再日终。",
                                              "An operation is half done. Finish it or cancel it before closing the "
                                              "day.")
    check_screen(page)
    page.click("#cancel-pending")
    page.wait_for_url(base + "/day/close")
    assert page.locator("#pending-op").count() == 0
    page.goto(base + "/home")
    assert page.locator("#pending-op").count() == 0
    check_screen(page)


@pytest.mark.parametrize("lang", LANGS)
def test_the_reversal_says_to_take_back_the_cash(counter, page, lang):
    st, base = counter
    agent = session(st, 0)
    auth = agents.authenticate_customer(st, agent, cards(7 + LANGS.index(lang)), CUSTOMER_PIN)
    paid = operations.withdraw_cash(st, agent, auth, "1000", receipts.new_txn_id(), identity=identity_present(st))
    taken = operations.deposit_cash(st, agent, auth, "300", receipts.new_txn_id())
    log_in(page, base, lang)
    page.goto(f"{base}/receipts/{paid.seq}/reverse")
    assert page.inner_text("#cash-back") == words(
        lang, "收回现金 ¥1,000.00：先向客户收回，再请主管确认。",
        "Take back ¥1,000.00 cash from the customer first.")
    check_screen(page)
    tap_keys(page, "9999")
    page.click("#reverse-ok")
    page.wait_for_selector("#error")
    assert page.locator("#cash-back").is_visible()
    check_screen(page)
    page.goto(f"{base}/receipts/{taken.seq}/reverse")
    assert page.inner_text("#cash-back") == words(
        lang, "退还现金 ¥300.00：主管确认后退给客户。",
        "Give back ¥300.00 cash once the supervisor confirms.")
    check_screen(page)


@pytest.mark.parametrize("lang", LANGS)
def test_the_day_close_says_short_and_asks_reason_and_supervisor(counter, page, lang):
    st, base = counter
    if business_day.current_day(st) is None:
        business_day.open_day(st, session(st, 0), {"10000": 300})
    expected = business_day.drawer_cash(st)
    log_in(page, base, lang)
    page.goto(base + "/day/close")
    hundreds, rest = divmod(expected - 5_000, 10_000)  # 50 yuan short
    page.click("#n10000")
    tap_keys(page, str(hundreds))
    page.click("#n100")
    tap_keys(page, str(rest // 100))
    page.click("#check-count")
    page.wait_for_selector("#variance")
    assert page.inner_text("#variance") == words(lang, "短款 ¥50.00", "Short ¥50.00")
    assert page.locator("#variance-reasons").is_visible()
    check_screen(page)
    page.click("#close-day")  # no reason yet
    assert page.inner_text("#error") == words(
        lang, "钱箱差 50.00 元，超过 10.00 元：请选择或输入原因。",
        "The drawer is 50.00 yuan out, more than 10.00 yuan: choose or type the reason.")
    check_screen(page)
    page.click("#variance-reasons label >> nth=2")  # 清点差错 / Miscount
    page.fill("#reason-text", words(lang, "少点一张五十", "one 50 note missed"))
    tap_keys(page, "9999")
    page.click("#close-day")
    page.wait_for_selector("#error")
    # (The reversal tests above typed wrong supervisor PINs too: the tries left are fewer than 4.)
    assert re.fullmatch(words(lang, r"密码错误。再错 \d 次，须等待后才能再试。",
                              r"Wrong PIN\. Tries left before a wait: \d\."), page.inner_text("#error"))
    # The same screen: counts, reason and words kept.
    assert page.input_value("input[name=n10000]") == str(hundreds)
    assert page.is_checked("#variance-reasons input >> nth=2")
    assert page.input_value("#reason-text") == words(lang, "少点一张五十", "one 50 note missed")
    check_screen(page)
    tap_keys(page, SUPERVISOR_PIN)
    # Close the day is the form's first submit (Enter in the words closes, never recounts), shown after Count again.
    assert page.locator("#count-form button[type=submit], #count-form button:not([type])").first.get_attribute(
        "id") == "close-day"
    assert page.locator("#close-day").bounding_box()["x"] > page.locator("#recount").bounding_box()["x"]
    page.click("#close-day")
    page.wait_for_url(f"{base}/receipts/**")
    assert business_day.current_day(st) is None
