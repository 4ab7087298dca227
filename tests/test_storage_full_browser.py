"""Storage full in a real browser (Debian's Chromium at 800x480): the disk fills up while the agent keys in a deposit;
the PIN screen says so and nothing is recorded; the home screen shows the state in Chinese and English, receipts
still open; once space is back the tiles return, without a restart."""

from __future__ import annotations

import pytest
from storage_support import deposit_until_full, lift_database_limit, limit_database
from ui_browser_support import check_screen, log_in, new_page, serving, tap_keys
from ui_helpers import CUSTOMER_PIN, card_customer

from station import agents
from station.app import create_app
from station.db import JournalEntry, Operation


@pytest.fixture
def live(station, open_drawer, browser):
    """The app served by waitress; ``full[0]`` set: each request's database connection can grow no more (the page
    limit is per connection, and the server's threads have their own)."""
    app = create_app({"STATION": station, "SECRET_KEY": "browser-test"})
    full = [False]

    @app.before_request
    def disk_as_the_test_says():
        (limit_database if full[0] else lift_database_limit)(station)

    with serving(app) as base:
        page = new_page(browser)
        yield base, page, full
        page.close()


@pytest.mark.parametrize(("lang", "refusal", "notice"), [
    ("zh", "存储空间已满，未记录任何内容。请联系技术员。",
     "存储空间已满，暂停办理新业务。收据和同步仍可使用。请联系技术员。"),
    ("en", "Storage is full: nothing was recorded. Call the technician.",
     "Storage is full: no new operations. Receipts and sync still work. Call the technician."),
])
def test_the_disk_fills_up_during_a_deposit(live, station, agent, lang, refusal, notice):
    base, page, full = live
    log_in(page, base, lang=lang)
    page.click("#tile-deposit")
    tap_keys(page, card_customer().card_number)
    page.click("#next")
    tap_keys(page, "200")
    page.click("#next")
    page.click("#confirm")
    tap_keys(page, CUSTOMER_PIN)
    # Meanwhile the disk fills up (other writes of the station: here deposits in the test's thread).
    limit_database(station)
    auth = agents.authenticate_customer(station, agent, card_customer(1), CUSTOMER_PIN)
    recorded = deposit_until_full(station, agent, auth)
    entries = JournalEntry.select().count()
    full[0] = True
    page.click("#pin-ok")
    page.wait_for_selector("#error")
    assert refusal in page.inner_text("#error")
    check_screen(page, "PIN screen, storage full")
    assert Operation.select().count() == len(recorded) and JournalEntry.select().count() == entries

    page.goto(base + "/home")
    assert page.inner_text("#storage-full") == notice
    assert page.locator("#tile-deposit").count() == 0
    check_screen(page, "home, storage full")
    page.click("#tile-receipts")
    page.wait_for_selector("#receipts")
    check_screen(page, "receipts, storage full")

    full[0] = False
    lift_database_limit(station)
    page.goto(base + "/home")
    assert page.locator("#storage-full").count() == 0
    check_screen(page, "home, space back")
    page.click("#tile-deposit")
    page.wait_for_url(base + "/op/deposit/customer")
