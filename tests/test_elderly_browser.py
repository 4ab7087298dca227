"""Elderly customers in Chromium at 800x480: every screen in large print (zh and en, after an error too), the
confirm screen's amount read aloud, and the ID card step of a large withdrawal with a wrong then a right number.

One station, one served app and one browser for the module; each test takes its own customers (daily limits)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from conftest import FakeClock
from ui_browser_support import check_screen, log_in, new_page, serving, tap_keys
from ui_helpers import CUSTOMER_PIN, ID_NUMBER, card_customer, customer_with_payee

from station import agents, business_day
from station.app import create_app
from station.db import JournalEntry, Operation
from station.demo import DEMO_AGENTS, load_demo_customers
from station.protocol.tokens import unverified_payload
from station.provision import init_station


@pytest.fixture(scope="module")
def live(tmp_path_factory, browser):
    """(app, base url): a station with its day open, served for the whole module."""
    clock = FakeClock(datetime(2026, 11, 2, 23, 40, tzinfo=UTC))
    st = init_station(tmp_path_factory.mktemp("elderly") / "ST-0001", "ST-0001", clock=clock)
    load_demo_customers(st, count=20)
    agent_id, _, _, pin = DEMO_AGENTS[0]
    business_day.open_day(st, agents.login_agent(st, agent_id, pin), {"10000": 300})
    app = create_app({"STATION": st, "SECRET_KEY": "browser-test"})
    with st.bound(), serving(app) as base:
        yield app, base
    st.close()


@pytest.fixture
def page(live, browser):
    page = new_page(browser)
    yield page
    page.close()


def key_in(page, field, text):
    """Put ``text`` in the pad's field at once (the walk checks screens, not tapping: the ID test taps).

    A locator waits for the field: after a tap that navigates, the new address can be committed while its document
    is still being parsed (CI showed it on a loaded machine)."""
    page.locator(f"#{field}").evaluate("(el, text) => { el.value = text; }", text)


def large_print_on(page, base):
    """Large print on, from the home screen (where its button is), then back to the screen the agent was on."""
    here = page.url
    page.goto(base + "/home")
    fits(page, large=False)
    page.click("#large-print")
    page.wait_for_selector("body.large #large-print[aria-pressed=true]")
    fits(page)
    page.goto(here)


def fits(page, *, large=True):
    """The screen fits 800x480 with big targets (``check_screen``), in large print when ``large``."""
    # A click that navigates may return while the next document has no body yet (a loaded machine showed it).
    page.wait_for_load_state("domcontentloaded")
    assert page.evaluate("document.body.classList.contains('large')") is large, page.url
    check_screen(page)


def walk_flow(page, base, kind, customer, amount):
    """From the home tile to the receipt, checking every screen, and the customer and amount screens after an
    error too."""
    page.goto(base + "/home")
    page.click(f"#tile-{kind}")
    page.wait_for_url(f"{base}/op/{kind}/customer")
    fits(page)
    tap_keys(page, "12345")
    page.click("#next")
    page.wait_for_selector("#error")
    fits(page)
    key_in(page, "number", customer.card_number)
    page.click("#next")
    if kind == "balance_enquiry":
        page.wait_for_url(f"{base}/op/{kind}/pin")
    else:
        page.wait_for_url(f"{base}/op/{kind}/amount")
        fits(page)
        tap_keys(page, "5")  # below the minimum of both
        page.click("#next")
        page.wait_for_selector("#error")
        fits(page)
        page.goto(f"{base}/op/{kind}/amount")
        tap_keys(page, amount)
        page.click("#next")
        page.wait_for_url(re.compile(rf"{re.escape(base)}/op/{kind}/(identity|confirm)$"))
        if page.url.endswith("/identity"):
            fits(page)
            key_in(page, "id_number", ID_NUMBER)
            page.click("#next")
        page.wait_for_url(f"{base}/op/{kind}/confirm")
        fits(page)
        page.click("#confirm")
        page.wait_for_url(f"{base}/op/{kind}/pin")
    fits(page)
    tap_keys(page, "000000")
    page.click("#pin-ok")
    page.wait_for_selector("#error")
    fits(page)
    page.click("#pin")
    tap_keys(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.wait_for_selector("#receipt")
    fits(page)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_large_print_on_every_screen_fits(live, page, lang):
    _, base = live
    log_in(page, base, lang)
    fits(page, large=False)
    large_print_on(page, base)
    fits(page)
    for path in ("/home", "/receipts/", "/day/close", "/voice/", "/chart", "/sync"):
        page.goto(base + path)
        fits(page)
    offset = 0 if lang == "zh" else 4
    walk_flow(page, base, "withdrawal", card_customer(offset), "1000")
    page.click("#reverse")
    page.wait_for_url("**/reverse")
    fits(page)
    walk_flow(page, base, "deposit", card_customer(offset + 1), "100")
    walk_flow(page, base, "balance_enquiry", card_customer(offset + 2), "")
    # A transfer to a known payee, and a bill: the screens of their own steps.
    customer, payee = customer_with_payee()
    page.goto(base + "/home")
    page.click("#tile-transfer")
    page.wait_for_url(base + "/op/transfer/customer")
    key_in(page, "number", customer.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/payee")
    fits(page)
    page.goto(base + "/home")
    page.click("#tile-bill_payment")
    page.wait_for_url(base + "/op/bill_payment/biller")
    fits(page)
    page.click("#biller-MOBILE-CMCC")
    page.wait_for_url(base + "/op/bill_payment/reference")
    fits(page)
    key_in(page, "reference", "13912345678")
    page.click("#next")
    page.wait_for_url(base + "/op/bill_payment/amount")
    fits(page)
    page.locator(".quick .choice").first.click()
    page.wait_for_url(base + "/op/bill_payment/confirm")
    fits(page)
    # Large print lasts the session and ends with it: the next session starts in the standard layout.
    page.click("#logout")
    page.wait_for_url(base + "/login")
    log_in(page, base, lang)
    fits(page, large=False)


def test_the_amount_is_read_aloud_on_the_confirm_screen(live, page):
    _, base = live
    log_in(page, base, "zh")
    page.click("#tile-withdrawal")
    tap_keys(page, card_customer(8).card_number)
    page.click("#next")
    page.click("#quick-500")
    page.wait_for_url(base + "/op/withdrawal/confirm")
    fits(page, large=False)
    assert page.inner_text("#speak").endswith("朗读")
    duration = page.evaluate("""() => new Promise((done, fail) => {
        const audio = document.getElementById('amount-audio');
        if (audio.readyState >= 1) { done(audio.duration); return; }
        audio.addEventListener('loadedmetadata', () => done(audio.duration));
        audio.addEventListener('error', () => fail(new Error('audio failed to load')));
    })""")
    assert 1 < duration < 20  # "取款，伍佰元整" spoken slowly: a few seconds, a finite, true length
    page.click("#speak")
    page.wait_for_function("!document.getElementById('amount-audio').paused || "
                           "document.getElementById('amount-audio').ended")
    large_print_on(page, base)
    fits(page)
    assert page.inner_text("#amount-capitals") == "伍佰元整"  # the capitals stay as they are


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_id_card_step_with_a_wrong_then_a_right_number(live, page, lang):
    app, base = live
    log_in(page, base, lang)
    customer = card_customer(9 if lang == "zh" else 10)
    page.click("#tile-withdrawal")
    tap_keys(page, customer.card_number)
    page.click("#next")
    tap_keys(page, "800")
    page.click("#next")
    page.wait_for_url(base + "/op/withdrawal/identity")
    fits(page, large=False)
    tap_keys(page, "11010519491231002")
    page.click("#key-x")
    page.click('.keypad [data-key="back"]')
    tap_keys(page, "1")  # the check character mistyped
    page.click("#next")
    page.wait_for_selector("#error")
    expected = {"zh": "这个身份证号码对不上，请对照证件逐位核对。",
                "en": "This ID card number does not add up: check each digit against the card."}[lang]
    assert page.inner_text("#error") == expected
    fits(page, large=False)
    large_print_on(page, base)
    page.wait_for_url(base + "/op/withdrawal/identity")
    fits(page)
    tap_keys(page, "110105194913210020")  # a check character right, a birth month 13
    page.click("#next")
    page.wait_for_selector("#error")
    assert page.inner_text("#error").startswith({"zh": "这个身份证号码里的出生日期", "en": "The birth date"}[lang])
    assert page.input_value("#id_number") == "110105194913210020"  # kept on the screen to correct, only there
    fits(page)
    page.click('.keypad [data-key="clear"]')
    tap_keys(page, "11010519491231002")
    page.click("#key-x")
    assert page.input_value("#id_number") == ID_NUMBER
    page.click("#next")
    page.wait_for_url(base + "/op/withdrawal/confirm")
    assert page.inner_text("#id-card").startswith("****002X")
    fits(page)
    # The session cookie holds the hash and the last 4 characters, never the number.
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "session")
    held = app.session_interface.get_signing_serializer(app).loads(cookie)
    assert held["op"]["id_last4"] == "002X" and ID_NUMBER not in json.dumps(held)
    page.click("#confirm")
    page.wait_for_url(base + "/op/withdrawal/pin")
    tap_keys(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.wait_for_selector("#receipt")
    fits(page)
    operation = Operation.select().where(Operation.customer == customer.id).get()
    payload = unverified_payload(JournalEntry.get_by_id(operation.seq).token)
    assert payload["amount"] == 80_000 and payload["id_last4"] == "002X" and len(payload["id_hash"]) == 64
    assert ID_NUMBER not in json.dumps(payload)


def test_a_proxy_withdrawal_asks_for_the_id_card_whatever_the_amount(live, page):
    _, base = live
    log_in(page, base, "en")
    page.click("#tile-withdrawal")
    tap_keys(page, card_customer(11).card_number)
    page.click("#next")
    page.click("#proxy")
    page.wait_for_selector("#proxy[aria-pressed=true]")
    fits(page, large=False)
    large_print_on(page, base)
    fits(page)
    page.click("#quick-100")
    page.wait_for_url(base + "/op/withdrawal/identity")
    assert "proxy" in page.inner_text("#id-why")
    fits(page)
