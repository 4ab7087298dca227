"""First boot in a real browser (Debian's Chromium at 800x480): a scanner typing the enrollment QR into the focused
field against a sync server on loopback, a code tapped on the pad, every set-up state fitting the screen in both
languages, and a revoked station's screen."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from sync_support import enrolled_station, record_some, server_db
from ui_browser_support import check_screen, new_page, serving, tap_pin
from ui_helpers import AGENT_PIN

from station import setup_ui
from station.app import create_app
from station.protocol.enrollment_qr import make_payload, normalise_code
from station.setup_ui import FirstBoot, SetupDispatcher
from station.sync import SyncRefused, sync_once
from sync_server.admin import add_station, revoke_station

SECRET = "browser-test"


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the screens are the same whatever the bank's database; enrollment and revocation at the bank
    run on PostgreSQL too in test_setup_ui.py and test_bank_lifecycle.py."""
    return f"sqlite:///{tmp_path / 'sync-server.db'}"


@pytest.fixture
def new_device(tmp_path, clock, browser):
    """``start(**first_boot_options)`` serves a new device's screens; returns (first_boot, base URL, page)."""
    with ExitStack() as stack:
        made = []

        def start(**options):
            fb = FirstBoot(tmp_path / "device", clock=clock, **options)
            dispatcher = SetupDispatcher(fb, lambda st: create_app({"STATION": st, "SECRET_KEY": SECRET}),
                                         SECRET_KEY=SECRET)
            base = stack.enter_context(serving(dispatcher))
            page = new_page(browser)
            stack.callback(page.close)
            made.append(fb)
            return fb, base, page

        yield start
        for fb in made:
            if fb.worker is not None:
                fb.worker.join(timeout=30)
            if fb.station is not None:
                fb.station.close()


def new_code(station_id="ST-0009"):
    server_db()
    return add_station(station_id, "Shop 9")


def type_agent_pin(page):
    for digit in AGENT_PIN:
        page.click(f'.keypad [data-key="{digit}"]')
    page.click("#login")


def choose(page, lang):
    if lang == "en":
        page.click("text=English")
        page.wait_for_selector("html[lang=en]")


def test_a_scanner_types_the_qr_then_the_station_takes_over(new_device, server):
    server_db()
    code = add_station("ST-0009", "Shop 9", agent="刘秀英")
    fb, base, page = new_device()
    page.goto(base + "/")
    page.wait_for_url(base + "/setup")
    check_screen(page)
    assert page.evaluate("document.activeElement.id") == "scan"
    # A tap elsewhere first: the scanner's keystrokes still land in the field.
    page.click("#not-enrolled")
    page.keyboard.type(make_payload(server.url, "ST-0009", code))
    page.keyboard.press("Enter")
    page.wait_for_selector("#enrolled", timeout=20_000)
    assert page.inner_text("#enrolled-station").startswith("ST-0009")
    assert page.inner_text("#enrolled-kid") == fb.station.signer.kid
    assert normalise_code(code) not in normalise_code(page.content())
    check_screen(page)
    # Nobody could log in yet: the shop's supervisor, then its agent (the name the bank gave), PINs on the pad.
    page.click("#continue")
    page.wait_for_url(base + "/setup/people")
    page.fill("#name", "周主管")
    tap_pin(page, "pin", "2580")
    tap_pin(page, "pin_again", "2580")
    page.click("#save")
    page.wait_for_selector("#people-agent")
    assert page.input_value("#name") == "刘秀英"
    tap_pin(page, "pin", "3691")
    tap_pin(page, "pin_again", "3691")
    page.click("#save")
    page.wait_for_url(base + "/login")
    check_screen(page)
    assert "谁上班" in page.inner_text("main")
    page.click("#agent-A01")
    tap_pin(page, "pin", "3691")
    page.click("#login")
    page.wait_for_url(base + "/home")


def test_a_code_tapped_on_the_pad(new_device, server):
    code = normalise_code(new_code())
    fb, base, page = new_device(server_url=server.url)
    page.goto(base + "/setup")
    page.click("#code-key-A")
    page.click("#code-key-clear")
    for key in code + "Z":
        page.click(f"#code-key-{key}")
    page.click("#code-key-back")
    assert page.input_value("#scan") == code
    assert page.evaluate("document.activeElement.id") == "scan"
    page.click("#enroll")
    page.wait_for_selector("#enrolled", timeout=20_000)
    assert fb.station.station_id == "ST-0009"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_set_up_state_fits(lang, new_device, server, slow_bank, clock, monkeypatch):
    fb, base, page = new_device()
    page.goto(base + "/setup")
    choose(page, lang)
    check_screen(page)
    # A refusal from the bank (an unknown code), then one before asking it (a QR of a newer release).
    page.fill("#scan", make_payload(server.url, "ST-0009", "K7QX-M2PD-9HWT"))
    page.press("#scan", "Enter")
    page.wait_for_selector("#error", timeout=20_000)
    check_screen(page)
    page.fill("#scan", make_payload(server.url, "ST-0009", "K7QX-M2PD-9HWT").replace("v=1", "v=2"))
    page.press("#scan", "Enter")
    page.wait_for_selector("#error")
    check_screen(page)
    assert page.evaluate("document.activeElement.id") == "scan"
    # Enrolling: the bank takes its time (the waiting screens reload themselves, not while the test measures).
    monkeypatch.setitem(setup_ui.POLL_SECONDS, "enrolling", 600)
    url, release = slow_bank
    page.fill("#scan", make_payload(url, "ST-0009", "K7QX-M2PD-9HWT"))
    page.press("#scan", "Enter")
    page.wait_for_selector("#enrolling")
    check_screen(page)
    release.set()
    fb.worker.join(timeout=30)
    monkeypatch.setitem(setup_ui.POLL_SECONDS, "enrolling", 1)
    # Revoked.
    code = new_code()
    revoke_station("ST-0009")
    page.goto(base + "/setup")
    page.fill("#scan", make_payload(server.url, "ST-0009", code))
    page.press("#scan", "Enter")
    page.wait_for_selector("#revoked", timeout=20_000)
    check_screen(page)
    page.click("#try-again")
    page.wait_for_selector("#scan")
    # Clock not set.
    monkeypatch.setitem(setup_ui.POLL_SECONDS, "clock_not_set", 600)
    real_time = clock.now
    clock.now = datetime(1970, 1, 1, tzinfo=UTC)
    page.goto(base + "/setup")
    page.wait_for_selector("#clock-not-set")
    check_screen(page)
    clock.now = real_time
    # Enrolled, with a warning that the QR named another station.
    code = new_code("ST-0010")
    page.goto(base + "/setup")
    page.fill("#scan", make_payload(server.url, "ST-0011", code))
    page.press("#scan", "Enter")
    page.wait_for_selector("#station-mismatch", timeout=20_000)
    check_screen(page)


def test_without_a_configured_server_the_second_field_fits(new_device):
    _, base, page = new_device()
    page.goto(base + "/setup")
    assert page.is_visible("#server")
    check_screen(page)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_revoked_station_shows_it_and_still_reprints(lang, server, tmp_path, clock, browser):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, count=2)
    server_db()
    revoke_station("ST-0001")
    with pytest.raises(SyncRefused):
        sync_once(st)
    with serving(create_app({"STATION": st, "SECRET_KEY": SECRET})) as base:
        page = new_page(browser)
        page.goto(base + "/")
        page.wait_for_url(base + "/revoked")
        choose(page, lang)
        check_screen(page)
        text = page.inner_text("#revoked")
        assert ("本服务点已被银行停用" if lang == "zh" else "This station has been revoked by the bank") in text
        page.click("#revoked-login")
        page.click("#agent-A01")
        type_agent_pin(page)
        page.wait_for_url(base + "/revoked")
        check_screen(page)
        page.click("#revoked-receipts")
        page.wait_for_url(base + "/receipts/")
        check_screen(page)
        page.goto(base + "/op/deposit/customer")
        page.wait_for_url(base + "/revoked")
        page.close()
    st.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_home_with_the_clock_not_set_fits(lang, station, clock, browser):
    clock.now = datetime(1970, 1, 1, tzinfo=UTC)
    with serving(create_app({"STATION": station, "SECRET_KEY": SECRET})) as base:
        page = new_page(browser)
        page.goto(base + "/login?agent_id=A01")
        type_agent_pin(page)
        page.wait_for_url(base + "/home")
        choose(page, lang)
        page.wait_for_selector("#clock-not-set")
        check_screen(page)
        assert page.is_disabled("#tile-withdrawal")
        page.close()
