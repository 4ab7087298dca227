"""Unlocking in a real browser (Debian's Chromium at 800x480), by taps as at the counter: ten wrong PINs tapped (five
on the agent, five on the supervisor) do not stop the station; the supervisor, after the wait the screen shows,
unlocks the agent with their own PIN; the bank's one-time code typed on the pad unlocks too."""

from __future__ import annotations

import pytest
from test_agent_unlock import BootClock, bank_code, server_key  # noqa: F401 (server_key: a fixture)
from ui_browser_support import check_screen, new_page, serving, tap_keys
from ui_helpers import AGENT_PIN, SUPERVISOR_PIN

from station.app import create_app
from station.db import Agent


@pytest.fixture
def counter(station, browser):
    station.boot_clock = BootClock()
    app = create_app({"STATION": station, "SECRET_KEY": "unlock-browser"})
    with serving(app) as base:
        page = new_page(browser)
        yield station, base, page
        page.close()


def tap_login(page, base, agent_id, pin):
    page.goto(f"{base}/login")
    page.click(f"#agent-{agent_id}")
    tap_keys(page, pin)
    page.click("#login")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_ten_wrong_taps_do_not_stop_the_station(counter, lang):
    st, base, page = counter
    if lang == "en":
        page.goto(f"{base}/login")
        page.click("text=English")
    for agent_id in ("A01", "S01"):
        for _ in range(5):
            tap_login(page, base, agent_id, "0000")
            page.wait_for_selector("#error")
    # The agent is locked; the last supervisor waits a minute (the screen says until when), never locked.
    assert Agent.get_by_id("A01").locked and not Agent.get_by_id("S01").locked
    assert "07:41" in page.inner_text("#error")  # on the station's clock, in its time zone
    assert page.locator("#pin").count() == 0 and page.locator("#unlock-code").is_visible()
    check_screen(page, "the supervisor waits")
    st.boot_clock.advance(60)
    page.goto(f"{base}/login?agent_id=A01")
    page.click("#unlock-supervisor")
    tap_keys(page, SUPERVISOR_PIN)
    page.click("#unlock")
    page.wait_for_selector(".flash")
    assert ("已解锁" if lang == "zh" else "is unlocked") in page.inner_text(".flash")
    check_screen(page, "unlocked, the agent's PIN pad")
    tap_keys(page, AGENT_PIN)
    page.click("#login")
    page.wait_for_url(f"{base}/home")


def test_the_bank_code_typed_on_the_pad_unlocks(counter, server_key):  # noqa: F811
    st, base, page = counter
    Agent.update(failed_pins=5, locked=True).where(Agent.agent_id == "A01").execute()
    page.goto(f"{base}/login?agent_id=A01")
    page.click("#unlock-code")
    assert "ST-0001" in page.inner_text("#tell-the-bank")
    tap_keys(page, "12345678")
    page.click("#unlock")
    page.wait_for_selector("#error")
    assert page.input_value("#code") == ""  # a refused code is not shown again
    check_screen(page, "a wrong code")
    tap_keys(page, bank_code(st, server_key, "A01", 1))
    page.click("#unlock")
    page.wait_for_selector(".flash")
    tap_keys(page, AGENT_PIN)
    page.click("#login")
    page.wait_for_url(f"{base}/home")
