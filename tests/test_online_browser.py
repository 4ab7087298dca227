"""Online operations on the touchscreen: Chromium at 800x480, the station app under waitress, enrolled with the real
sync server on loopback. With the bank up a 20,000-yuan transfer beyond the offline allowance is authorized before
the PIN, recorded, pushed and confirmed by the bank on its receipt; one beyond the balance is refused on the confirm
screen before any PIN; the bank's live balance shows online and the "as of" balance offline. Every screen fits.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import FakeClock
from sync_support import enrolled_station, open_counter
from ui_browser_support import check_screen, log_in, new_page, serving, tap_keys
from ui_helpers import CUSTOMER_PIN

from station.app import create_app
from station.db import Customer, Operation
from station.demo import DEMO_AGENTS
from station.link import note_failure

NEW_PAYEE = "6222000000009999"


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the screens are the same whatever the bank's database; the bank's side of every online
    operation runs on PostgreSQL too in test_online_e2e.py and test_authorizations.py."""
    return f"sqlite:///{tmp_path / 'sync-server.db'}"


@pytest.fixture
def live(server, tmp_path, browser):
    """(station, base url, page): an enrolled station, its day open, the app served, a page at 800x480."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    open_counter(st)
    app = create_app({"STATION": st, "SECRET_KEY": "browser-test"})
    with st.bound(), serving(app) as base:
        page = new_page(browser)
        yield st, base, page
        page.close()
    st.close()


def card_customer(rich: bool) -> Customer:
    """A card customer with more than 21,000 yuan at the bank (``rich``) or less than 10,000."""
    query = Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id)
    return next(c for c in query if (c.balance_fen > 2_100_000 if rich else c.balance_fen < 1_000_000))


def transfer_to_confirm(page, base, who: Customer, yuan: str):
    page.click("#tile-transfer")
    tap_keys(page, who.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/payee")
    tap_keys(page, NEW_PAYEE)
    page.fill("#payee_name", "张三")
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/amount")
    check_screen(page)
    tap_keys(page, yuan)
    page.click("#next")
    page.click("#confirm-warning")
    if int(yuan) * 100 >= 1_000_000:  # from fraud_supervisor_fen the supervisor's PIN, on the warning screen
        page.wait_for_selector("#approve-warning")
        check_screen(page)
        tap_keys(page, DEMO_AGENTS[1][3])
        page.click("#approve-warning")
    page.wait_for_url(base + "/op/transfer/confirm")
    check_screen(page)
    page.click("#confirm")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_20000_yuan_transfer_is_authorized_pushed_and_confirmed(live, lang):
    st, base, page = live
    log_in(page, base, lang)
    rich = card_customer(rich=True)
    transfer_to_confirm(page, base, rich, "20000")
    page.wait_for_url(base + "/op/transfer/pin")
    mode = page.inner_text("#bank-mode")
    assert ("银行已授权" if lang == "zh" else "authorized") in mode
    check_screen(page)
    tap_keys(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.wait_for_selector("#receipt")
    check_screen(page)
    assert ("银行已确认" if lang == "zh" else "Settled by the bank") in page.inner_text("#status")
    assert ("前可以撤销" if lang == "zh" else "Can be cancelled until") in page.inner_text("#cancel-until")
    sent = Operation.get(Operation.type == "transfer")
    assert (sent.amount_fen, sent.status) == (2_000_000, "settled") and sent.auth_id


def test_the_amount_screen_shows_the_banks_limits_then_the_offline_allowance(live):
    st, base, page = live
    log_in(page, base, "zh")
    rich = card_customer(rich=True)
    page.click("#tile-withdrawal")
    tap_keys(page, rich.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/withdrawal/amount")
    assert page.inner_text("#limits") == "银行限额：单笔最多 1,000.00 元，今天还可用 1,000.00 元"
    check_screen(page)
    page.click("#cancel-op")
    note_failure(st, "probe", "refused")
    page.click("#tile-withdrawal")
    tap_keys(page, rich.card_number)
    page.click("#next")
    assert page.inner_text("#limits").startswith("离线办理：还剩 ")
    check_screen(page)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_transfer_beyond_the_balance_is_refused_before_the_pin(live, lang):
    st, base, page = live
    log_in(page, base, lang)
    transfer_to_confirm(page, base, card_customer(rich=False), "15000")
    page.wait_for_selector("#error")
    assert page.url == base + "/op/transfer/confirm"
    assert ("余额不足" if lang == "zh" else "not enough money") in page.inner_text("#error")
    check_screen(page)
    assert Operation.select().count() == 0


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_live_balance_online_and_the_as_of_balance_offline(live, lang):
    st, base, page = live
    log_in(page, base, lang)
    rich = card_customer(rich=True)
    for link_up in (True, False):
        if not link_up:
            note_failure(st, "probe", "refused")
        page.goto(base + "/home")
        page.click("#tile-balance_enquiry")
        tap_keys(page, rich.card_number)
        page.click("#next")
        page.wait_for_url(base + "/op/balance_enquiry/pin")
        check_screen(page)
        expected_mode = {(True, "zh"): "银行已授权", (False, "zh"): "离线办理",
                         (True, "en"): "authorized", (False, "en"): "Offline"}[link_up, lang]
        assert expected_mode in page.inner_text("#bank-mode")
        tap_keys(page, CUSTOMER_PIN)
        page.click("#pin-ok")
        page.wait_for_selector("#receipt")
        check_screen(page)
        shown = page.inner_text("#balance-as-of")
        if link_up:
            assert ("银行实时余额，截至 " if lang == "zh" else "Live from the bank, as of ") in shown
        else:
            assert shown.startswith("截至 " if lang == "zh" else "As of ")
        assert page.inner_text("#balance") == f"¥{rich.balance_fen // 100:,}.00"


@pytest.mark.parametrize(("lang", "mode"), [("zh", "slow"), ("en", "reset")])
def test_no_answer_in_time_says_so_before_the_pin_and_the_offline_rules_apply(live, lang, mode):
    """The bank does not answer within ``auth_timeout_seconds`` (a slow link) or the connection drops (reset): the
    PIN screen says the offline rules apply before the customer types a PIN, and the withdrawal is recorded under
    the offline allowance, waiting for the bank."""
    from fault_proxy import FaultProxy

    st, base, page = live
    log_in(page, base, lang)
    who = card_customer(rich=True)
    with FaultProxy.to_url(st.config["server"]["url"]) as proxy:
        st.config["server"] = {**st.config["server"], "url": proxy.url}
        st.config["link"] = {"auth_timeout_seconds": 0.5}
        proxy.set_mode(mode, delay_ms=2_000) if mode == "slow" else proxy.set_mode(mode)
        page.click("#tile-withdrawal")
        tap_keys(page, who.card_number)
        page.click("#next")
        page.wait_for_url(base + "/op/withdrawal/amount")
        tap_keys(page, "200")
        page.click("#next")
        page.wait_for_url(base + "/op/withdrawal/confirm")
        page.click("#confirm")
        page.wait_for_url(base + "/op/withdrawal/pin")
        notice = page.inner_text("#bank-mode")
        assert ("银行暂时联系不上" if lang == "zh" else "cannot be reached") in notice
        check_screen(page)
        tap_keys(page, CUSTOMER_PIN)
        page.click("#pin-ok")
        page.wait_for_selector("#receipt")
        check_screen(page)
        op = Operation.get(Operation.type == "withdrawal")
        assert (op.amount_fen, op.auth_id, op.status) == (20_000, None, "recorded")
        assert ("等待银行处理" if lang == "zh" else "waiting for the bank") in page.inner_text("#status")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_amount_screen_fits_with_the_limits_and_a_refusal(live, lang):
    """The fullest amount screen: the bank's limits line and a refusal (over the per-transaction limit) at once,
    in both languages; nothing is asked of the bank for an amount the station's own rules refuse."""
    st, base, page = live
    log_in(page, base, lang)
    rich = card_customer(rich=True)
    page.click("#tile-withdrawal")
    tap_keys(page, rich.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/withdrawal/amount")
    tap_keys(page, "5000")
    page.click("#next")
    page.wait_for_selector("#error")
    assert page.url == base + "/op/withdrawal/amount"
    assert page.is_visible("#limits")
    check_screen(page)
    with st.bound():
        from station.db import BankAuthorization

        assert BankAuthorization.select().count() == 0
