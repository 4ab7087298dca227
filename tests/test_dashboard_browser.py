"""The branch dashboard in Chromium at a phone's size (390x844): a manager logs in, reads the overview, the station
page, the wall chart (峰值图) and a county's page, with no horizontal scrolling, no request anywhere but the bank's
server, and no Content-Security-Policy violation; the heatmap's numbers are the synced journal's."""

from __future__ import annotations

import re

import pytest
from sync_support import serve_in_thread, server_db, stop_server
from test_dashboard import (  # noqa: F401 (a fixture)
    PASSWORD,
    dashboard_app,
    manager,
    pension_morning,
    two_station_county,
)
from ui_browser_support import browser  # noqa: F401 (a fixture)

from sync_server.admin import add_station
from sync_server.db import Station as ServerStation

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def dashboard(server, manager, tmp_path):  # noqa: F811
    """The morning synced, the dashboard served on loopback: its base URL."""
    pension_morning(server, tmp_path)
    url, running, thread = serve_in_thread(dashboard_app(server), threads=2)
    yield url
    stop_server(running, thread)
    server_db()


def overflow(page) -> int:
    """How far the page is wider than the viewport (0: no horizontal scrolling), once its document has loaded (after a
    form's submit the address changes before the new document exists: CI once measured that moment)."""
    page.wait_for_load_state("load")
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


def test_a_manager_reads_the_dashboard_on_a_phone(browser, dashboard):  # noqa: F811
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(15_000)
    problems = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    elsewhere = []
    page.on("request", lambda request: request.url.startswith(dashboard) or elsewhere.append(request.url))

    page.goto(f"{dashboard}/dashboard/stations/ST-0001")
    assert "/dashboard/login" in page.url
    page.fill("#name", "wang")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "用户名或密码错误。 Wrong name or password."
    page.fill("#name", "wang")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    assert page.url.endswith("/dashboard/stations/ST-0001")
    assert overflow(page) <= 0

    page.goto(f"{dashboard}/dashboard/")
    assert page.locator("h2", has_text="来凤县").is_visible()
    assert overflow(page) <= 0
    chart = page.locator("section", has_text="来凤县").locator("svg[role=img]")
    assert chart.bounding_box()["width"] <= PHONE["width"]
    titles = chart.locator("g > title").all_text_contents()
    assert "11/3 周二 08时: 3" in titles and "11/3 周二 10时: 2" in titles
    row = page.locator("#station-ST-0001")
    assert row.locator("[data-figure=stopped]").inner_text() == "1"
    assert "payee_blocked: 1" in row.locator("[data-figure=refusals]").inner_text()

    page.click("#station-ST-0001 a")
    page.click("text=打印峰值图")
    assert re.search(r"/peak-chart\?weeks=4$", page.url)
    assert page.locator("h1").inner_text().endswith("客流峰值图")
    assert overflow(page) <= 0
    wall = page.locator("svg[role=img]")
    assert "周二 08时: 0.8" in wall.locator("g > title").all_text_contents()
    # Big type: the weekday labels are drawn at 26 units in a chart scaled to the phone's width.
    assert wall.bounding_box()["width"] <= PHONE["width"]

    page.click("text=退出 Log out")
    page.goto(f"{dashboard}/dashboard/")
    assert "/dashboard/login" in page.url
    # The one error: the wrong password's answer (401) itself.
    assert problems == ["Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"]
    assert elsewhere == []
    page.close()


@pytest.fixture
def county_dashboard(server, manager, tmp_path):  # noqa: F811
    """来凤县's two stations' mornings synced (ST-0002 silent since Sunday), the dashboard served: its base URL."""
    two_station_county(server, tmp_path)
    server_db()
    from sync_server.db import Station

    Station.update(last_sync_at="2026-11-01T00:00:00.000Z").where(Station.station_id == "ST-0002").execute()
    url, running, thread = serve_in_thread(dashboard_app(server), threads=2)
    yield url
    stop_server(running, thread)
    server_db()


def test_a_manager_reads_a_countys_page_on_a_phone(browser, county_dashboard):  # noqa: F811
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(15_000)
    problems = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    elsewhere = []
    page.on("request", lambda request: request.url.startswith(county_dashboard) or elsewhere.append(request.url))

    page.goto(f"{county_dashboard}/dashboard/")
    page.fill("#name", "wang")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.click("text=全县数字 County figures: 来凤县")
    assert page.url.endswith("/dashboard/counties/%E6%9D%A5%E5%87%A4%E5%8E%BF")
    assert page.locator("h1").inner_text() == "来凤县"
    assert overflow(page) <= 0
    chart = page.locator("svg[role=img]")
    assert chart.bounding_box()["width"] <= PHONE["width"]
    titles = chart.locator("g > title").all_text_contents()
    assert "11/3 周二 08时: 3" in titles and "11/3 周二 09时: 5" in titles
    figures = page.locator("#county-figures")
    assert figures.locator("[data-figure=stopped]").inner_text() == "2"
    assert figures.locator("[data-figure=refusals]").inner_text() == "payee_blocked: 2"
    assert figures.locator("[data-figure=silent]").inner_text().startswith("ST-0002")
    deposit = page.locator("#operations tr[data-type=deposit] td")
    assert deposit.all_inner_texts()[1:] == ["8", "0", "3:00", "5"]
    # Every table fits the phone: none wider than the page's own column.
    widths = page.evaluate("() => [...document.querySelectorAll('table')].map(t => t.scrollWidth - t.parentElement"
                           ".clientWidth)")
    assert max(widths) <= 0, widths

    page.click("#station-ST-0002 a")
    assert page.url.endswith("/dashboard/stations/ST-0002")
    page.click("text=来凤县")
    assert page.locator("h1").inner_text() == "来凤县" and overflow(page) <= 0
    assert problems == [] and elsewhere == []


def test_the_longest_names_the_bank_may_give_fit_a_phone(browser, dashboard):  # noqa: F811
    """A station id, name, county and village as long as ``sync-server station add`` lets them be, in wide letters
    without a space to break at, and markup in them shown as text: still no horizontal scrolling on a phone."""
    server_db()
    long_id = "W" * 40
    add_station(long_id, "W" * 60, village="<b>" + "W" * 57, county="W" * 60)
    ServerStation.update(name="<script>" + "Ｗ" * 52, county="M" * 60).where(
        ServerStation.station_id == "ST-0001").execute()
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(15_000)
    page.goto(f"{dashboard}/dashboard/login")
    page.fill("#name", "wang")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    for path in ("/dashboard/", f"/dashboard/stations/{long_id}", "/dashboard/stations/ST-0001",
                 f"/dashboard/stations/{long_id}/peak-chart?weeks=12", "/dashboard/stations/ST-0001/peak-chart?weeks=4",
                 "/dashboard/stations/ST-0001/peak-chart?weeks=abc", "/dashboard/stations/" + "X" * 300):
        page.goto(f"{dashboard}{path}")
        assert overflow(page) <= 0, path
    page.goto(f"{dashboard}/dashboard/stations/{long_id}")
    assert page.locator("h1").inner_text() == f"{long_id} {'W' * 60}"
    assert "<b>" in page.locator("main").inner_text()  # the village as typed, not bold
    page.close()
