"""The shop's people in a real browser (Debian's Chromium at 800x480): the PINs tapped on the pad, every state of
the step (each kind of refusal, the note after the supervisor, the login screen after) fitting the screen in
both languages, then the agent logging in with the PIN just chosen."""

from __future__ import annotations

import pytest
from ui_browser_support import check_screen, new_page, serving, tap_pin

from station import agents
from station.app import create_app
from station.provision import init_station
from station.setup_ui import FirstBoot, SetupDispatcher

SECRET = "browser-test"


@pytest.fixture
def shop(tmp_path, clock, browser):
    """A station with nobody to log in yet (the bank named its agent 刘秀英), served as `station serve` does;
    yields (station, base URL, page)."""
    st = init_station(tmp_path / "device", "ST-0009", clock=clock, name="Liujia village shop", agent="刘秀英")
    dispatcher = SetupDispatcher(FirstBoot(st.data_dir, clock=clock, station=st),
                                 lambda station: create_app({"STATION": station, "SECRET_KEY": SECRET}),
                                 SECRET_KEY=SECRET)
    with serving(dispatcher) as base:
        page = new_page(browser)
        yield st, base, page
        page.close()
    st.close()


def fill_and_save(page, agent_id, name, pin, pin_again=None):
    page.fill("#agent_id", agent_id)
    page.fill("#name", name)  # a USB keyboard types into the name field
    tap_pin(page, "pin", pin)
    tap_pin(page, "pin_again", pin if pin_again is None else pin_again)
    page.click("#save")


def refused(page, expected):
    page.wait_for_selector("#error")
    check_screen(page)
    assert expected in page.inner_text("#error")
    # Nothing typed as a PIN comes back from the server.
    assert page.input_value("#pin") == "" and page.input_value("#pin_again") == ""


MESSAGES = {
    "zh": {"id": "编号为 1 到 16 个字母", "differ": "两次输入的密码不一样", "weak": "太容易被猜到",
           "short": "密码为 4 到 6 位数字", "taken": "编号 S01 已被使用", "name": "请输入姓名",
           "added": "已添加主管 周主管（S01）", "done": "店里的人员已设置好", "login": "谁上班"},
    "en": {"id": "An ID is 1 to 16 letters A-Z", "differ": "The two PINs are not the same",
           "weak": "too easy to guess", "short": "A PIN is 4 to 6 digits.", "taken": "The ID S01 is taken already",
           "name": "Type the person's name", "added": "Supervisor 周主管 (S01) added", "done": "the shop's people are "
           "set up", "login": "Who is working"},
}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_pins_are_tapped_on_the_pad_and_every_state_fits(lang, shop):
    st, base, page = shop
    said = MESSAGES[lang]
    page.goto(base + "/")
    page.wait_for_url(base + "/setup")
    if lang == "en":
        page.click("text=English")
        page.wait_for_selector("html[lang=en]")
    check_screen(page)
    page.click("#continue")
    page.wait_for_selector("#people-supervisor")
    check_screen(page)
    assert page.input_value("#agent_id") == "S01" and page.input_value("#name") == ""
    # The pad types into the field tapped last; Delete and Clear work on it alone.
    tap_pin(page, "pin", "25809")
    page.click('.keypad [data-key="back"]')
    tap_pin(page, "pin_again", "77")
    page.click('.keypad [data-key="clear"]')
    assert page.input_value("#pin") == "2580" and page.input_value("#pin_again") == ""
    assert page.evaluate("document.querySelector('#pin_again').classList.contains('active')")
    # Each kind of refusal, in a state that must still fit.
    page.fill("#name", "周主管")
    tap_pin(page, "pin_again", "2581")
    page.click("#save")
    refused(page, said["differ"])
    assert page.input_value("#name") == "周主管"
    fill_and_save(page, "主管", "周主管", "2580")
    refused(page, said["id"])
    fill_and_save(page, "S01", "   ", "2580")
    refused(page, said["name"])
    fill_and_save(page, "S01", "周主管", "1111")
    refused(page, said["weak"])
    fill_and_save(page, "S01", "周主管", "258")
    refused(page, said["short"])
    assert agents.list_agents(st) == []
    fill_and_save(page, "S01", "周主管", "2580")
    page.wait_for_selector("#people-agent")
    assert said["added"] in page.inner_text(".flash")
    check_screen(page)
    assert page.input_value("#agent_id") == "A01" and page.input_value("#name") == "刘秀英"
    fill_and_save(page, "S01", "刘秀英", "3691")
    refused(page, said["taken"])
    fill_and_save(page, "A01", "刘秀英", "3691")
    page.wait_for_url(base + "/login")
    check_screen(page)
    assert said["done"] in page.inner_text(".flash") and said["login"] in page.inner_text("main")
    # The agent logs in with the PIN they chose.
    page.click("#agent-A01")
    tap_pin(page, "pin", "3691")
    page.click("#login")
    page.wait_for_url(base + "/home")
    check_screen(page)
    assert [(a.agent_id, a.name, a.role) for a in agents.list_agents(st)] == [
        ("S01", "周主管", "supervisor"), ("A01", "刘秀英", "agent")]
