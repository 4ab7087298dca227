"""The pinyin keyboard in Chromium at 800x480 with no physical keyboard: every character is tapped on the screen.

A new payee's name 王秀英 is tapped out in pinyin and a transfer to her completes; a customer's words
发养老金那天请早点开门 are tapped out and journaled as typed. The payee and voice screens fit with the keyboard up, in
Chinese and English, after an error too. One station, one served app and one browser for the module.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import FakeClock
from ui_browser_support import check_screen, new_page, serving, tap_keys
from ui_helpers import AGENT_PIN, CUSTOMER_PIN, card_customer, customer_with_payee

from station import agents, business_day, ime
from station.app import create_app
from station.db import JournalEntry, Operation
from station.demo import DEMO_AGENTS, load_demo_customers
from station.protocol.tokens import unverified_payload
from station.provision import init_station

NEW_PAYEE = "6222000000007777"


@pytest.fixture(scope="module")
def live(tmp_path_factory, browser):
    """(base url, page): a station with its day open, served, and a page logged in as the first demo agent."""
    clock = FakeClock(datetime(2026, 11, 2, 23, 40, tzinfo=UTC))
    st = init_station(tmp_path_factory.mktemp("ime") / "ST-0001", "ST-0001", clock=clock)
    load_demo_customers(st, count=20)
    app = create_app({"STATION": st, "SECRET_KEY": "browser-test"})
    # Built before the first keystroke, as `station serve` does at start (here before serving, not beside it).
    ime.candidate_index()
    with st.bound(), serving(app) as base:
        agent_id, _, _, pin = DEMO_AGENTS[0]
        business_day.open_day(st, agents.login_agent(st, agent_id, pin), {"10000": 300})
        page = new_page(browser)
        page.goto(base + "/login")
        page.click("#agent-A01")
        tap_keys(page, AGENT_PIN)
        page.click("#login")
        page.wait_for_url(base + "/home")
        yield base, page
        page.close()
    st.close()


def tap_pinyin(page, letters, choice):
    """Tap ``letters`` on the keyboard, then ``choice`` in the candidate bar (paging on until it shows)."""
    for letter in letters:
        page.click(f"#ime-key-{letter}" if letter != "'" else "#ime-sep")
    composing = page.eval_on_selector("#imepad", "pad => pad.dataset.active")
    typed = page.input_value(f"#{composing}")
    for _ in range(20):
        page.wait_for_selector(f'#ime-bar[data-py="{letters}"]', state="attached")
        chosen = page.locator(f'#ime-cands [data-text="{choice}"]')
        if chosen.count():
            chosen.click()
            break
        page.click("#ime-next")
    else:
        pytest.fail(f"{choice} not offered for {letters}")
    assert page.input_value(f"#{composing}") == typed + choice


def set_language(page, lang):
    button = page.locator("header button[name=lang]")
    if (lang == "en") == (button.get_attribute("value") == "en"):
        button.click()
        page.wait_for_load_state("load")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_new_payee_named_by_taps_and_the_transfer_to_her(live, lang):
    base, page = live
    set_language(page, lang)
    page.goto(base + "/home")
    page.click("#tile-transfer")
    # In English a customer with payees already: the screen lists them above the fields, and still fits.
    customer = card_customer(2) if lang == "zh" else customer_with_payee()[0]
    tap_keys(page, customer.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/payee")
    assert page.is_visible("#payee-1") == (lang == "en")
    assert page.is_visible(".keypad") and not page.is_visible("#imepad")
    check_screen(page)
    tap_keys(page, NEW_PAYEE)
    # Next with no name: refused, and the name is the field waiting, with the keyboard up.
    page.click("#next")
    page.wait_for_selector("#error")
    assert page.input_value("#payee_account") == NEW_PAYEE
    assert page.is_visible("#imepad") and not page.is_visible(".keypad")
    check_screen(page)
    # The account field brings the number pad back, the name field the keyboard.
    page.click("#payee_account")
    assert page.is_visible(".keypad") and not page.is_visible("#imepad")
    page.click("#payee_name")
    assert page.is_visible("#imepad")
    # 王 is the first surname offered for wang; 秀英 a whole given name for xiuying.
    for letter in "wang":
        page.click(f"#ime-key-{letter}")
    page.wait_for_selector('#ime-bar[data-py="wang"]', state="attached")
    assert page.inner_text("#ime-cands .ime-cand >> nth=0") == "王"
    check_screen(page)
    page.click("#ime-cands .ime-cand >> nth=0")
    tap_pinyin(page, "xiuying", "秀英")
    assert page.input_value("#payee_name") == "王秀英"
    assert page.input_value("#payee_account") == NEW_PAYEE
    check_screen(page)
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/amount")
    tap_keys(page, "200")
    page.click("#next")
    # A first-time payee: the fraud warning, read with the customer.
    page.wait_for_url(base + "/op/transfer/warning")
    page.click("#confirm-warning")
    page.wait_for_url(base + "/op/transfer/confirm")
    page.click("#confirm")
    tap_keys(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.wait_for_selector("#receipt")
    transfer = Operation.select().where(Operation.type == "transfer").order_by(Operation.seq.desc()).first()
    assert (transfer.details["payee_account"], transfer.details["payee_name"]) == (NEW_PAYEE, "王秀英")
    assert "王秀英" in page.inner_text("#receipt")


def test_picking_a_character_keeps_the_rest_of_the_pinyin(live):
    base, page = live
    set_language(page, "zh")
    page.goto(base + "/voice/")
    page.click("#text")
    for letter in "xiuying":
        page.click(f"#ime-key-{letter}")
    page.wait_for_selector('#ime-bar[data-py="xiuying"]', state="attached")
    assert page.inner_text("#ime-comp") == "xiu'ying"
    page.click('#ime-cands [data-text="秀"]')
    page.wait_for_selector('#ime-bar[data-py="ying"]', state="attached")
    assert page.input_value("#text") == "秀"
    # Delete takes back pinyin letters first, then the text's characters.
    page.click("#ime-clear")
    assert page.input_value("#text") == ""


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_customers_words_by_taps_are_journaled_as_typed(live, lang):
    base, page = live
    set_language(page, lang)
    page.goto(base + "/voice/")
    assert page.is_visible("#phrases") and not page.is_visible("#imepad")
    check_screen(page)
    # Save with nothing chosen: refused; the screen still fits.
    page.click("#save-voice")
    page.wait_for_selector("#error")
    check_screen(page)
    page.click("#voice-form label.choice >> nth=2")
    page.click("#text")
    assert page.is_visible("#imepad") and not page.is_visible("#phrases")
    for letters, word in [("fa", "发"), ("yanglaojin", "养老金"), ("natian", "那天"), ("qing", "请"),
                          ("zaodian", "早点"), ("kaimen", "开门")]:
        tap_pinyin(page, letters, word)
        if word == "养老金":
            check_screen(page)
    page.click("#ime-punct-4")
    text = "发养老金那天请早点开门！"
    assert page.input_value("#text") == text
    # Plain figures and letters where the words need them; the phrases come back by their key.
    page.click("#ime-mode")
    page.click("#ime-key-a")
    page.click("#ime-mode")
    page.click("#ime-key-0")
    check_screen(page)
    page.click("#ime-back")
    page.click("#ime-back")
    assert page.input_value("#text") == text
    page.click("#ime-panel")
    assert page.is_visible("#phrases") and not page.is_visible("#imepad")
    page.click("#save-voice")
    page.wait_for_selector("#receipt")
    entry = JournalEntry.select().order_by(JournalEntry.seq.desc()).first()
    assert entry.type == "feedback"
    assert unverified_payload(entry.token)["text"] == text


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_12315_complaint_by_taps(live, lang):
    """From the home screen: the category, the business and what happened tapped out in pinyin, the phone on the
    number pad; Save without the consent tick is refused (the phone shows masked from then on), with it the receipt
    shows the complaint number and the phone masked, and no QR code."""
    base, page = live
    set_language(page, lang)
    page.goto(base + "/home")
    page.click("#open-complaint")
    page.wait_for_selector("#complaint-form")
    assert page.is_visible("#about-12315") and not page.is_visible("#imepad")
    check_screen(page)
    page.click("#category-quality")
    page.click("#business")
    tap_pinyin(page, "chaoshi", "超市")
    page.click("#details")
    tap_pinyin(page, "guoqi", "过期")
    tap_pinyin(page, "niunai", "牛奶")
    check_screen(page)
    page.click("#next")
    page.wait_for_selector("#phone")
    check_screen(page)
    tap_keys(page, "13812345678")
    assert page.input_value("#phone") == "13812345678"
    page.click("#save-complaint")
    page.wait_for_selector("#error")
    # The refusal is answered 400, which Chromium logs as a failed load: expected here.
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"]
    page.console_errors.clear()
    assert page.inner_text("#phone-masked") == "138****5678" and not page.is_visible("#phone")
    assert "13812345678" not in page.inner_text("body")
    check_screen(page)
    page.click("#consent-label")
    page.click("#save-complaint")
    page.wait_for_selector("#receipt")
    check_screen(page)
    entry = JournalEntry.select().order_by(JournalEntry.seq.desc()).first()
    payload = unverified_payload(entry.token)
    assert (entry.type, payload["business"], payload["details"], payload["category"], payload["phone"]) == (
        "complaint_12315", "超市", "过期牛奶", "quality", "13812345678")
    assert page.inner_text("#complaint-no") == payload["complaint_no"]
    assert page.inner_text("#complaint-phone") == "138****5678" and "13812345678" not in page.inner_text("body")
    assert page.locator("#qr").count() == 0 and page.is_visible("#qr-none")
