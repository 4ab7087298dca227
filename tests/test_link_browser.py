"""The measured link on the touchscreen: Chromium at 800x480, a real sync server behind the fault proxy.

With the bank down the bar says offline after one probe and "sync now" says why it failed; with the bank back a
probe makes it online; a slow bank makes it unstable. Every state fits the screen in Chinese and English.
"""

from __future__ import annotations

import pytest
from fault_proxy import FaultProxy
from sync_support import enrolled_station, open_counter, record_some
from ui_browser_support import check_screen, new_page, serving
from ui_helpers import AGENT_PIN

from station.app import create_app
from station.link import LINK_SETTINGS
from station.scheduler import ProbeJob, SyncJob
from station.sync import SyncError, pending_entries, probe, sync_once


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the bank's side of the probe runs on PostgreSQL too in test_link_probe.py."""
    return f"sqlite:///{tmp_path / 'sync-server.db'}"


@pytest.fixture
def live(server, tmp_path, clock, browser):
    """(base URL, page, station, proxy, probe job): the station's app served, its bank behind the fault proxy, and
    "sync now" running the real sync job (no scheduler in tests)."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        open_counter(st)
    job = SyncJob(st)

    def sync_now(wait=0):
        job.forced.set()
        job()
        return job.last_outcome

    with FaultProxy.to_url(server.url) as proxy:
        st.config["server"]["url"] = proxy.url
        app = create_app({"STATION": st, "SECRET_KEY": "browser-test"})
        app.extensions["sync_now"] = sync_now
        with serving(app) as base:
            page = new_page(browser)
            yield base, page, st, proxy, ProbeJob(st)
            page.close()
    st.close()


def log_in(page, base):
    page.goto(base + "/login")
    page.click("#agent-A01")
    page.wait_for_selector("#pin")
    for digit in AGENT_PIN:
        page.click(f'.keypad [data-key="{digit}"]')
    page.click("#login")
    page.wait_for_url(base + "/home")


def bar_fits(page):
    """Every item of the status bar is inside the screen (the bar clips what overflows, so no scrollbar says it)."""
    outside = page.evaluate(
        """() => Array.from(document.querySelectorAll('header.bar > *'))
             .filter(el => el.getBoundingClientRect().right > window.innerWidth)
             .map(el => el.id || el.textContent.trim().slice(0, 20))""")
    assert outside == [], outside


def test_the_bar_and_sync_now_tell_the_measured_link(live, clock):
    base, page, st, proxy, probe_job = live
    log_in(page, base)
    assert page.get_attribute("#link-state", "data-link") == "online"  # the enrollment's sync answered
    assert page.inner_text("#link-state") == "在线"

    # The bank goes down: the next probe (when nothing else went out for probe_seconds) says so.
    proxy.set_mode("down")
    clock.advance(seconds=LINK_SETTINGS["probe_seconds"][0])
    probe_job()
    page.goto(base + "/home")
    assert page.get_attribute("#link-state", "data-link") == "offline" and page.inner_text("#link-state") == "离线"
    check_screen(page)
    bar_fits(page)

    # "Sync now" says why it failed, in words; the bar shows the failed sync; nothing says online.
    page.goto(base + "/sync")
    page.click("#sync-now")
    page.wait_for_selector("#error")
    assert page.inner_text("#error") == "同步失败：连不上银行服务器。记录都保存在本机，网络恢复后会自动上传。"
    assert page.inner_text("#last-sync").startswith("同步失败")
    assert "连不上银行服务器" in page.inner_text("#sync-link")
    assert "连不上银行服务器" in page.inner_text("#sync-failure")
    assert "在线" not in page.inner_text("body")
    check_screen(page)
    bar_fits(page)
    page.click("text=English")  # from a form's answer, the language button leads home
    page.wait_for_selector('html[lang="en"]')
    page.goto(base + "/sync")
    page.click("#sync-now")
    page.wait_for_selector("#error")
    assert page.inner_text("#error") == ("Sync failed: cannot connect to the bank's server. Records stay on this "
                                         "device and go to the bank when the link is back.")
    assert page.inner_text("#link-state") == "Offline" and page.inner_text("#last-sync").startswith("Sync failed")
    check_screen(page)
    bar_fits(page)
    page.goto(base + "/home")
    check_screen(page)
    bar_fits(page)

    # The bank is back: one probe, and the bar is online again; the last sync's failure still shows until a sync.
    proxy.set_mode("pass")
    probe(st)
    page.goto(base + "/sync")
    assert page.inner_text("#link-state") == "Online" and page.inner_text("#last-sync").startswith("Sync failed")
    check_screen(page)
    bar_fits(page)
    page.click("#sync-now")
    page.wait_for_selector(".flash")
    assert page.inner_text(".flash").startswith("Synced with the bank at")
    assert page.inner_text("#last-sync").startswith("Synced") and page.inner_text("#waiting") == "Waiting 0"
    check_screen(page)
    page.click("text=中文")
    page.wait_for_selector('html[lang="zh-CN"]')
    assert page.inner_text("#link-state") == "在线" and page.inner_text("#last-sync").startswith("同步于")
    check_screen(page)

    # A slow bank: unstable, in amber, with the reason on the sync screen.
    st.config["link"] = {"slow_ms": 600}
    proxy.set_mode("slow", delay_ms=800)
    probe(st)
    page.goto(base + "/sync")
    assert page.get_attribute("#link-state", "data-link") == "degraded" and page.inner_text("#link-state") == "不稳定"
    assert "银行答复很慢" in page.inner_text("#sync-link")
    check_screen(page)
    bar_fits(page)
    colours = page.evaluate("""() => getComputedStyle(document.querySelector('#link-state')).backgroundColor""")
    page.click("text=English")
    page.wait_for_selector('html[lang="en"]')
    assert page.inner_text("#link-state") == "Unstable" and "the bank answers slowly" in page.inner_text("#sync-link")
    check_screen(page)
    bar_fits(page)
    proxy.set_mode("pass")
    probe(st)
    page.goto(base + "/sync")
    assert page.get_attribute("#link-state", "data-link") == "online"
    assert colours != page.evaluate("""() => getComputedStyle(document.querySelector('#link-state')).backgroundColor""")


def test_entries_waiting_show_the_age_of_the_oldest(live, clock):
    base, page, st, proxy, _ = live
    proxy.set_mode("down")
    record_some(st, 2)
    clock.advance(hours=2, minutes=5)
    log_in(page, base)
    waiting = pending_entries(st)  # the day's opening and the agents, then the two deposits
    assert waiting > 2
    page.goto(base + "/sync")
    assert page.inner_text("#waiting") == f"待传 {waiting} · 2小时"
    assert page.inner_text("#sync-waiting") == f"{waiting} (最早一条已等2小时)"
    check_screen(page)
    bar_fits(page)
    page.click("text=English")
    page.wait_for_selector('html[lang="en"]')
    assert page.inner_text("#waiting") == f"Waiting {waiting} · 2 hr"
    assert page.inner_text("#sync-waiting") == f"{waiting} (oldest waiting 2 hr)"
    check_screen(page)
    bar_fits(page)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_fullest_bar_fits(live, clock, lang):
    """Offline, the last sync failed, a dozen entries waiting for most of a day, and the offline-limit warning."""
    base, page, st, proxy, _ = live
    proxy.set_mode("down")
    record_some(st, 10)
    clock.advance(hours=23, minutes=50)
    st.set_setting("last_sync_at", "2026-11-01T00:00:00.000Z")  # 70 hours before: close to the 72-hour limit
    with pytest.raises(SyncError):
        sync_once(st, attempts=1)
    log_in(page, base)
    if lang == "en":
        page.click("text=English")
        page.wait_for_selector('html[lang="en"]')
    for path in ("/home", "/sync"):
        page.goto(base + path)
        assert page.get_attribute("#link-state", "data-link") == "offline"
        assert page.is_visible("#offline-warning") and page.is_visible("#last-sync.failed")
        assert "·" in page.inner_text("#waiting")
        check_screen(page)
        bar_fits(page)
    # And the answer to "sync now" above all that.
    page.click("#sync-now")
    page.wait_for_selector("#error")
    assert page.is_visible("#sync-failure") and page.is_visible("#offline-warning")
    check_screen(page)
    bar_fits(page)
