"""The touchscreen in a real browser: Debian's Chromium at 800x480, driven by Playwright, app under waitress."""

from __future__ import annotations

import pytest
from ui_browser_support import check_screen, new_page, serving
from ui_helpers import AGENT_PIN, CUSTOMER_PIN, card_customer

from station.app import create_app
from station.db import Operation


@pytest.fixture
def live(station, open_drawer, browser):
    app = create_app({"STATION": station, "SECRET_KEY": "browser-test"})
    with serving(app) as base:
        page = new_page(browser)
        yield base, page
        page.close()


def tap_digits(page, digits):
    for digit in digits:
        page.click(f'.keypad [data-key="{digit}"]')


def log_in(page, base, agent_id="A01", pin=AGENT_PIN, lang="zh"):
    """Log the agent in from the login screen; ``lang="en"`` then switches the UI to English."""
    page.goto(base + "/login")
    check_screen(page)
    page.click(f"#agent-{agent_id}")
    page.wait_for_selector("#pin")
    check_screen(page)
    tap_digits(page, pin)
    page.click("#login")
    page.wait_for_url(base + "/home")
    if lang == "en":
        page.click("text=English")


def test_withdraw_500_receipt_print_and_log_out(live, printed, tmp_path):
    base, page = live
    customer = card_customer()
    log_in(page, base)
    check_screen(page)
    page.screenshot(path=tmp_path / "home.png")
    assert page.inner_text("#drawer") == "钱箱 ¥30,000.00"
    page.click("#tile-withdrawal")
    tap_digits(page, customer.card_number)
    page.click("#next")
    page.click("#quick-500")
    assert page.inner_text("#amount-capitals") == "伍佰元整"
    check_screen(page)
    page.click("#confirm")
    tap_digits(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.wait_for_selector("#receipt")
    assert "¥500.00" in page.inner_text("#receipt-amount")
    assert page.locator("#qr svg").bounding_box()["width"] >= 200
    check_screen(page)
    page.screenshot(path=tmp_path / "receipt.png")
    page.click("#print")
    page.wait_for_selector(".flash")
    seq = Operation.get(Operation.type == "withdrawal").seq
    assert [(job_seq, duplicate) for job_seq, duplicate, _ in printed] == [(seq, False)]
    page.click("#print")
    page.wait_for_selector(".flash")
    assert [(job_seq, duplicate) for job_seq, duplicate, _ in printed] == [(seq, False), (seq, True)]
    assert "伍佰元整".encode("gb18030") in printed[0][2]
    assert page.inner_text("#drawer") == "钱箱 ¥29,500.00"
    page.click("#logout")
    page.wait_for_url(base + "/login")
    assert (tmp_path / "home.png").stat().st_size > 0 and (tmp_path / "receipt.png").stat().st_size > 0


def test_transfer_through_the_fraud_warning(live):
    base, page = live
    customer = card_customer(1)
    log_in(page, base)
    page.click("#tile-transfer")
    tap_digits(page, customer.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/payee")
    check_screen(page)
    tap_digits(page, "6222000000009999")
    page.fill("#payee_name", "张三")
    page.click("#next")
    tap_digits(page, "300")
    page.click("#next")
    page.wait_for_selector("#fraud-warning")
    check_screen(page)
    assert "安全账户" in page.inner_text("#fraud-warning")
    page.click("#confirm-warning")
    page.wait_for_url(base + "/op/transfer/confirm")
    check_screen(page)
    page.click("#confirm")
    tap_digits(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.wait_for_selector("#receipt")
    assert "等待银行" in page.inner_text("#status")
    assert Operation.get(Operation.type == "transfer").details["payee_name"] == "张三"
    # The customer changes her mind before the bank has executed it.
    page.click("#cancel-transfer")
    page.wait_for_url("**/cancel")
    check_screen(page)
    tap_digits(page, CUSTOMER_PIN)
    page.click("#cancel-ok")
    page.wait_for_selector("#receipt")
    assert Operation.get(Operation.type == "transfer").status == "cancelled"


SCREENS = [
    "/home", "/receipts/", "/day/close", "/voice/", "/chart", "/sync",
]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_screen_fits_and_has_big_targets(live, lang):
    base, page = live
    log_in(page, base, lang=lang)
    for path in SCREENS:
        page.goto(base + path)
        check_screen(page)
    flows = {
        "balance_enquiry": ["customer", "pin"],
        "deposit": ["customer", "amount", "confirm", "pin"],
        "withdrawal": ["customer", "amount", "confirm", "pin"],
    }
    customer = card_customer()
    for kind, steps in flows.items():
        page.goto(base + "/home")
        page.click(f"#tile-{kind}")
        for step in steps:
            page.wait_for_url(f"{base}/op/{kind}/{step}")
            check_screen(page)
            if step == "customer":
                tap_digits(page, customer.card_number)
                page.click("#next")
            elif step == "amount":
                tap_digits(page, "100")
                page.click("#next")
            elif step == "confirm":
                page.click("#confirm")
            else:
                tap_digits(page, CUSTOMER_PIN)
                page.click("#pin-ok")
        page.wait_for_selector("#receipt")
        check_screen(page)
    # A receipt's reversal screen, and bill payment's biller and reference screens.
    page.click("#reverse")
    page.wait_for_url("**/reverse")
    check_screen(page)
    page.goto(base + "/home")
    page.click("#tile-bill_payment")
    page.wait_for_url(base + "/op/bill_payment/biller")
    check_screen(page)
    page.click("#biller-MOBILE-CMCC")
    page.wait_for_url(base + "/op/bill_payment/reference")
    check_screen(page)
    tap_digits(page, "13912345678")
    page.click("#next")
    page.wait_for_url(base + "/op/bill_payment/amount")
    check_screen(page)


def test_customer_voice_by_taps_only(live):
    base, page = live
    log_in(page, base)
    page.click("#tile-voice")
    page.click("text=表扬")
    page.click("#phrase-1")
    page.click("#phrase-3")
    assert page.input_value("#text") == "服务热情，有耐心。 希望多备些零钱。"
    check_screen(page)
    page.click("#save-voice")
    page.wait_for_selector("#receipt")
    assert "服务热情，有耐心。" in page.inner_text("#receipt")


def test_double_tap_on_the_pin_ok_records_once(live):
    base, page = live
    log_in(page, base)
    page.click("#tile-withdrawal")
    tap_digits(page, card_customer().card_number)
    page.click("#next")
    page.click("#quick-100")
    page.click("#confirm")
    tap_digits(page, CUSTOMER_PIN)
    page.dblclick("#pin-ok")
    page.wait_for_selector("#receipt")
    assert Operation.select().where(Operation.type == "withdrawal").count() == 1
    assert page.inner_text("#drawer") == "钱箱 ¥29,900.00"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_refused_pin_still_fits_and_cancels(live, lang):
    base, page = live
    log_in(page, base, lang=lang)
    page.click("#tile-withdrawal")
    tap_digits(page, card_customer().card_number)
    page.click("#next")
    page.click("#quick-100")
    page.click("#confirm")
    tap_digits(page, "000000")
    page.click("#pin-ok")
    page.wait_for_selector("#error")
    check_screen(page)
    page.click("#cancel-op")
    page.wait_for_url(base + "/home")
    assert Operation.select().count() == 0


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_day_close_preview_fits(live, lang):
    base, page = live
    log_in(page, base, lang=lang)
    page.goto(base + "/day/close")
    # 30,000 yuan less 10: the three amounts in full, as on the story's day.
    page.click("#n10000")
    tap_digits(page, "299")
    page.click("#n1000")
    tap_digits(page, "9")
    page.click("#check-count")
    page.wait_for_selector("#variance")
    assert page.inner_text("#variance") == ("短款 ¥10.00" if lang == "zh" else "Short ¥10.00")
    check_screen(page)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_refused_supervisor_pin_still_fits(live, lang):
    base, page = live
    log_in(page, base, lang=lang)
    page.click("#tile-withdrawal")
    tap_digits(page, card_customer().card_number)
    page.click("#next")
    page.click("#quick-100")
    page.click("#confirm")
    tap_digits(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.click("#reverse")
    page.wait_for_url("**/reverse")
    tap_digits(page, "0000")
    page.click("#reverse-ok")
    page.wait_for_selector("#error")
    check_screen(page)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_deposit_below_the_minimum_is_refused_before_the_pin_and_fits(live, lang):
    """The bank pays no commission on crumbs and the station refuses them at the amount step, in the person's
    language, on one screen."""
    base, page = live
    log_in(page, base, lang=lang)
    page.click("#tile-deposit")
    tap_digits(page, card_customer().card_number)
    page.click("#next")
    tap_digits(page, "5")
    page.click("#next")
    page.wait_for_selector("#error")
    assert ("10.00" in page.inner_text("#error")) and page.url == base + "/op/deposit/amount"
    check_screen(page)
    assert Operation.select().count() == 0
