"""Receipts and bills in Chromium at 800x480, in Chinese and English: today's list (customers, the day's own
entries, a search on the pad, a fixed header over many rows), the receipts of a balance, a top-up and a reversal,
and the bill screens (icons, a refused reference that says what is expected, 元 on the quick amounts).

One station, one served app and one browser for the module: the day's operations are recorded once, up front.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ui_browser_support import check_screen, new_page, serving, tap_keys
from ui_helpers import AGENT_PIN, CUSTOMER_PIN

from station import agents, business_day, operations, receipts
from station.app import create_app
from station.db import Customer
from station.demo import DEMO_AGENTS, load_demo_customers
from station.feedback import record_feedback
from station.provision import init_station

LANGS = ("zh", "en")
#: Withdrawals of 100 yuan, one per customer, so the list is longer than the screen.
CROWD = 24


def words(lang: str, zh: str, en: str) -> str:
    return zh if lang == "zh" else en


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A station whose morning already happened: ``(station, receipts by name, the crowd of customers)``."""
    moment = datetime(2026, 11, 2, 23, 40, tzinfo=UTC)  # 07:40 in Beijing
    st = init_station(tmp_path_factory.mktemp("receipts") / "ST-0001", "ST-0001", clock=lambda: moment)
    load_demo_customers(st, count=CROWD * 2)
    with st.bound():
        agent = agents.login_agent(st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        supervisor = agents.login_agent(st, DEMO_AGENTS[1][0], DEMO_AGENTS[1][3])
        business_day.open_day(st, agent, {"10000": 300})
        people = list(Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id))
        done = {}
        for index, customer in enumerate(people[:CROWD]):
            auth = agents.authenticate_customer(st, agent, customer, CUSTOMER_PIN)
            done[f"crowd-{index}"] = operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())
        done["reversal"] = operations.reverse(st, supervisor, done["crowd-0"].txn, receipts.new_txn_id(),
                                              "Wrong amount")
        done["top_up"] = operations.pay_bill(st, agent, None, "MOBILE-CMCC", "13812345678", "50",
                                             receipts.new_txn_id())
        done["electricity"] = operations.pay_bill(st, agent, None, "ELEC-SGCC", "1234567890", "88.50",
                                                  receipts.new_txn_id())
        auth = agents.authenticate_customer(st, agent, people[CROWD], CUSTOMER_PIN)
        done["balance"] = operations.balance_enquiry(st, agent, auth, receipts.new_txn_id()).receipt
        done["voice"] = record_feedback(st, agent, "praise", "服务很好")
    yield st, done, people[:CROWD]
    st.close()


@pytest.fixture(scope="module")
def base(day):
    """The station's app under waitress, for the module."""
    with serving(create_app({"STATION": day[0], "SECRET_KEY": "receipts-browser"})) as url:
        yield url


@pytest.fixture(params=LANGS)
def page(request, base, browser):
    """A fresh page with agent A01 logged in, in the test's language (``page.lang``)."""
    page = new_page(browser)
    page.goto(base + "/login")
    page.click("#agent-A01")
    tap_keys(page, AGENT_PIN)
    page.click("#login")
    page.wait_for_url(base + "/home")
    if request.param == "en":
        page.click("text=English")
        page.wait_for_selector("text=中文")
    page.lang = request.param
    page.base = base
    yield page
    page.close()


def search(page, typed: str) -> None:
    page.goto(page.base + "/receipts/")
    tap_keys(page, typed, ".searchpad")
    page.click("#search")
    page.wait_for_selector("#receipts")
    check_screen(page)


def listed_seqs(page) -> list[int]:
    return [int(row_id.removeprefix("row-"))
            for row_id in page.eval_on_selector_all("#receipts tbody tr[id]", "rows => rows.map(r => r.id)")]


def test_todays_list_scrolls_under_its_header_with_customers_and_the_day_s_own_entries(page, day):
    _, done, crowd = day
    lang = page.lang
    page.goto(page.base + "/receipts/")
    check_screen(page)
    seqs = listed_seqs(page)
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == CROWD + 6  # + day open, reversal, 2 bills, ...
    assert page.inner_text("#receipts thead").split("\t")[3].strip() == words(lang, "客户", "Customer")
    first = done["crowd-1"]
    assert page.inner_text(f"#row-{first.seq} .customer") == f"{crowd[1].name}\n{first.account_masked}"
    assert words(lang, "开门营业", "Day opened") in page.inner_text(f"#row-{seqs[-1]}")
    assert words(lang, "客户之声", "Customer voice") in page.inner_text(f"#row-{done['voice'].seq}")
    # Many rows scroll inside the table's box, under a header that stays put; the page itself does not scroll.
    box = page.locator("#receipts-scroll")
    assert box.evaluate("el => el.scrollHeight > el.clientHeight + 200")
    box.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    header, top = page.locator("#receipts thead th").first.bounding_box(), box.bounding_box()
    assert abs(header["y"] - top["y"]) < 1
    assert page.locator(f"#open-{seqs[-1]}").bounding_box()["y"] + 48 <= 480
    check_screen(page)


def test_the_search_finds_by_card_tail_or_amount_and_says_when_nothing_is_found(page, day):
    _, done, crowd = day
    search(page, crowd[3].card_number[-4:])
    assert listed_seqs(page) == [done["crowd-3"].seq]
    assert page.input_value("#q") == crowd[3].card_number[-4:]
    search(page, "88.5")
    assert listed_seqs(page) == [done["electricity"].seq]
    search(page, "4.25")
    assert listed_seqs(page) == []
    assert page.inner_text("#no-rows") == words(page.lang, "没有找到。", "Nothing found.")
    page.click("#show-all")
    page.wait_for_selector(f"#row-{done['voice'].seq}")


def test_the_receipts_of_a_balance_a_top_up_a_bill_and_a_reversal_say_what_they_are(page, day):
    _, done, _ = day
    lang = page.lang

    def open_receipt(name):
        page.goto(f"{page.base}/receipts/{done[name].seq}")
        check_screen(page)

    open_receipt("balance")
    assert page.inner_text("h1") == words(lang, "余额", "Balance")
    assert page.inner_text("#balance-as-of").startswith(words(lang, "截至 07:40", "As of 07:40"))
    open_receipt("top_up")
    assert words(lang, "中国移动充值", "China Mobile top-up") in page.inner_text("#biller-name")
    assert (page.inner_text("#reference-label"), page.inner_text("#reference")) == (
        words(lang, "手机号", "Phone number"), "13812345678")
    open_receipt("electricity")
    assert words(lang, "国网电费", "State Grid electricity") in page.inner_text("#biller-name")
    assert page.inner_text("#reference-label") == words(lang, "户号", "Account number")
    open_receipt("reversal")
    assert page.inner_text("#original-seq") == words(lang, f"流水号 {done['crowd-0'].seq} · 取款",
                                                     f"No. {done['crowd-0'].seq} · Cash withdrawal")
    assert page.inner_text("#reversal-reason") == words(lang, "金额错了", "Wrong amount")
    assert page.inner_text("#cash-back") == "¥100.00"


def test_bills_show_distinct_icons_say_what_a_reference_must_be_and_amounts_in_yuan(page, day):
    _, _, crowd = day
    lang = page.lang
    page.click("#tile-bill_payment")
    page.wait_for_selector(".billers")
    check_screen(page)
    icons = page.eval_on_selector_all(".billers .badge svg path", "paths => paths.map(p => p.getAttribute('d'))")
    kinds = page.eval_on_selector_all(".billers .badge svg", "svgs => svgs.map(s => s.dataset.kind)")
    assert len(set(zip(kinds, icons, strict=True))) == len(set(kinds)) == len(set(icons)) == 4
    page.click("#biller-GAS-COUNTY")
    tap_keys(page, "12345")
    page.click("#next")
    assert page.inner_text("#error") == words(lang, "户号是 10-12 位数字。", "The account number is 10-12 digits.")
    check_screen(page)
    page.click("#cancel-op")

    page.click("#tile-bill_payment")
    page.click("#biller-MOBILE-CMCC")
    assert page.inner_text("p.label") == words(lang, "手机号", "Phone number")
    tap_keys(page, "1381234")
    page.click("#next")
    assert page.inner_text("#error") == words(lang, "手机号是 11 位数字，以 1 开头。",
                                               "A phone number is 11 digits, starting with 1.")
    check_screen(page)
    tap_keys(page, "5678")
    page.click("#next")
    assert page.inner_text("#quick-50") == words(lang, "50元", "¥50")
    check_screen(page)
    page.click("#quick-50")
    assert page.inner_text("#confirm-reference") == "13812345678"
    assert words(lang, "手机号", "Phone number") in page.inner_text("#summary")
    check_screen(page)
    page.click("#cancel-op")

    page.click("#tile-withdrawal")
    tap_keys(page, crowd[5].card_number)
    page.click("#next")
    assert [page.inner_text(f"#quick-{q}") for q in ("100", "1000")] == (
        ["100元", "1000元"] if lang == "zh" else ["¥100", "¥1000"])
    check_screen(page)
    page.click("#cancel-op")
