"""First boot, the shop's people: after enrollment the set-up screen adds the supervisor, then the agent (the
bank's name for them offered), each refusal in both languages with nothing written, never once a supervisor
exists; `station agent add|list`; and the whole way from the bank's station row to the agent logged in."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from click.testing import CliRunner
from sync_support import server_db
from ui_helpers import (
    SETUP_AGENT,
    SETUP_SUPERVISOR,
    add_shop_people,
    csrf_token_of,
    post_person,
)
from ui_helpers import error_of as escaped_error_of
from werkzeug.test import Client

from station import agents, cli, errors
from station.app import create_app
from station.context import Station
from station.db import Agent, JournalEntry
from station.journal import journal_head
from station.protocol.enrollment_qr import make_payload
from station.protocol.pins import check_pin, weak_pin
from station.protocol.tokens import unverified_payload
from station.provision import init_station
from station.setup_ui import FirstBoot, SetupDispatcher
from station.sync import enroll_station
from sync_server.admin import add_station

CONFIG = {"SECRET_KEY": "test", "TESTING": True, "WTF_CSRF_ENABLED": False}


def error_of(html):
    message = escaped_error_of(html)
    return message if message is None else unescape(message)


def dispatcher_for(fb, **config):
    """What `station serve` runs for ``fb``: the set-up screens, then the station's own (same settings)."""
    settings = {**CONFIG, **config}
    return SetupDispatcher(fb, lambda st: create_app({"STATION": st, **settings}), **settings)


@pytest.fixture
def shop(tmp_path, clock):
    """A station with nobody to log in yet, whose bank named its agent: (station, browser on `station serve`)."""
    st = init_station(tmp_path / "device", "ST-0009", clock=clock, name="Shop 9", agent="刘秀英")
    browser = Client(dispatcher_for(FirstBoot(st.data_dir, clock=clock, station=st)))
    yield st, browser
    st.close()


def page(browser, path="/setup/people"):
    return browser.get(path).get_data(as_text=True)


def english(browser):
    browser.post("/setup/lang", data={"lang": "en", "next": "/setup/people"})


def field_value(html, field_id):
    tag = re.search(rf'<input[^>]*id="{field_id}"[^>]*>', html).group(0)
    value = re.search(r'value="([^"]*)"', tag)
    return unescape(value.group(1)) if value else ""


def people_written(st):
    """What the people step may have written: the agents and the journal's head."""
    with st.bound():
        return [(a.agent_id, a.name, a.role) for a in agents.list_agents(st)], journal_head(st)[0]


def agent_added_entries(st):
    with st.bound():
        rows = JournalEntry.select().where(JournalEntry.type == "agent_added").order_by(JournalEntry.seq)
        return [(unverified_payload(row.token), row.token) for row in rows]


# -- the step ---------------------------------------------------------------------------------------------------
def test_every_screen_waits_for_the_shops_people(shop):
    st, browser = shop
    assert browser.get("/").headers["Location"] == "/setup"
    assert browser.get("/login").headers["Location"] == "/setup"
    assert browser.post("/op/withdrawal/start").headers["Location"] == "/setup"
    # /health is the station's own: the station runs (and syncs) while its people are added.
    assert browser.get("/health").json["station"] == "ST-0009"
    html = page(browser, "/setup")
    assert 'id="enrolled"' in html and "ST-0009" in html and "Shop 9" in html
    assert 'href="/setup/people" id="continue"' in html and "下一步：添加店里的人员" in html
    assert "Bank server" not in html and "银行服务器" not in html  # a station set up without a bank


def test_the_supervisor_then_the_agent_then_the_login_screen(shop):
    st, browser = shop
    html = page(browser)
    assert 'id="people-supervisor"' in html and "店主/主管" in html
    assert field_value(html, "agent_id") == "S01" and field_value(html, "name") == ""
    assert re.findall(r'data-key="([^"]+)"', html) == [*"123456789", "clear", "0", "back"]
    answer = post_person(browser, "supervisor", "S01", "周主管", "2580")
    assert answer.headers["Location"] == "/setup/people"
    html = page(browser)
    assert 'id="people-agent"' in html and "已添加主管 周主管（S01）" in html
    # The agent's name is the one the bank sent with the enrollment answer.
    assert field_value(html, "agent_id") == "A01" and field_value(html, "name") == "刘秀英"
    answer = post_person(browser, "agent", "A01", "刘秀英", "3691")
    assert answer.headers["Location"] == "/"
    assert browser.get("/").headers["Location"] == "/login"
    login = page(browser, "/login")
    assert "已添加代办员 刘秀英（A01），店里的人员已设置好" in login
    assert 'id="agent-S01"' in login and 'id="agent-A01"' in login
    assert browser.post("/login", data={"agent_id": "A01", "pin": "3691"}).headers["Location"] == "/home"
    home = page(browser, "/home")
    assert 'id="tile-withdrawal"' in home and 'id="logout"' in home
    with st.bound():
        assert [(a.agent_id, a.name, a.role, a.locked) for a in agents.list_agents(st)] == [
            ("S01", "周主管", "supervisor", False), ("A01", "刘秀英", "agent", False)]
        assert check_pin("2580", Agent.get_by_id("S01").pin_verifier)
    # Journaled, one entry each: the ID and the role, never the PIN.
    entries = agent_added_entries(st)
    assert [payload["agent"] for payload, _ in entries] == ["S01", "A01"]
    assert [payload["role"] for payload, _ in entries] == ["supervisor", "agent"]
    assert all(set(payload) <= {"v", "station", "seq", "type", "ts", "prev", "agent", "role"} for payload, _ in entries)
    for _, token in entries:
        assert "2580" not in json.dumps(unverified_payload(token)) and "3691" not in token
    # Done: the set-up no longer adds anyone.
    assert browser.get("/setup/people").headers["Location"] == "/"


def test_typed_ids_and_names_are_kept_plainly(shop):
    st, browser = shop
    post_person(browser, "supervisor", " ｓ０７ ", "  周\u3000主管 ", "2580")
    with st.bound():
        assert [(a.agent_id, a.name) for a in agents.list_agents(st)] == [("S07", "周 主管")]


REFUSALS = [
    # (case, form fields, zh, en)
    ("id-empty", {"agent_id": ""}, "编号为 1 到 16 个字母", "An ID is 1 to 16 letters A-Z"),
    ("id-space", {"agent_id": "S 01"}, "编号为 1 到 16 个字母", "An ID is 1 to 16 letters A-Z"),
    ("id-chinese", {"agent_id": "主管"}, "编号为 1 到 16 个字母", "An ID is 1 to 16 letters A-Z"),
    ("id-long", {"agent_id": "S" * 17}, "编号为 1 到 16 个字母", "An ID is 1 to 16 letters A-Z"),
    ("id-dash-first", {"agent_id": "-S01"}, "编号为 1 到 16 个字母", "An ID is 1 to 16 letters A-Z"),
    ("name-empty", {"name": "   "}, "请输入姓名：1 到 40 个字", "Type the person's name: 1 to 40 characters"),
    ("name-long", {"name": "周" * 41}, "请输入姓名：1 到 40 个字", "Type the person's name: 1 to 40 characters"),
    ("name-control", {"name": "周\x07主管"}, "不能有控制字符", "no control characters"),
    ("name-newline", {"name": "周\n主管"}, "不能有控制字符", "no control characters"),
    ("name-bidi", {"name": "周\u202e主管"}, "不能有控制字符", "no control characters"),
    ("pin-short", {"pin": "258"}, "密码为 4 到 6 位数字", "A PIN is 4 to 6 digits."),
    ("pin-long", {"pin": "2580147"}, "密码为 4 到 6 位数字", "A PIN is 4 to 6 digits."),
    ("pin-empty", {"pin": ""}, "密码为 4 到 6 位数字", "A PIN is 4 to 6 digits."),
    ("pin-letters", {"pin": "25a0"}, "密码为 4 到 6 位数字", "A PIN is 4 to 6 digits."),
    ("pin-repeated", {"pin": "1111"}, "太容易被猜到", "too easy to guess"),
    ("pin-up", {"pin": "1234"}, "太容易被猜到", "too easy to guess"),
    ("pin-down", {"pin": "654321"}, "太容易被猜到", "too easy to guess"),
    ("pin-wrapping", {"pin": "7890"}, "太容易被猜到", "too easy to guess"),
    ("pins-differ", {"pin_again": "2581"}, "两次输入的密码不一样", "The two PINs are not the same"),
    ("pin-again-empty", {"pin_again": ""}, "两次输入的密码不一样", "The two PINs are not the same"),
]


@pytest.mark.parametrize(("case", "fields", "zh", "en"), REFUSALS, ids=[case for case, *_ in REFUSALS])
@pytest.mark.parametrize("role", ["supervisor", "agent"])
def test_every_refusal_in_both_languages_writes_nothing(case, fields, zh, en, role, shop):
    st, browser = shop
    if role == "agent":
        post_person(browser, "supervisor", **SETUP_SUPERVISOR)
    before = people_written(st)
    form = {**(SETUP_SUPERVISOR if role == "supervisor" else SETUP_AGENT), "pin_again": None, **fields}
    if form["pin_again"] is None:
        form["pin_again"] = form["pin"]
    for lang, message in (("zh", zh), ("en", en)):
        if lang == "en":
            english(browser)
        answer = post_person(browser, role, **form)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 200 and message in error_of(html), (lang, error_of(html))
        assert f'id="people-{role}"' in html
        # What was typed stays for the retry; a PIN never comes back.
        assert field_value(html, "agent_id") == form["agent_id"]
        assert field_value(html, "name") == form["name"].replace("\r\n", "\n")
        assert field_value(html, "pin") == "" and field_value(html, "pin_again") == ""
        assert people_written(st) == before
    # The same step then succeeds.
    good = SETUP_SUPERVISOR if role == "supervisor" else SETUP_AGENT
    post_person(browser, role, **good)
    assert good["agent_id"] in [agent_id for agent_id, _, _ in people_written(st)[0]]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_id_taken_already_is_refused(lang, shop):
    st, browser = shop
    post_person(browser, "supervisor", **SETUP_SUPERVISOR)
    if lang == "en":
        english(browser)
    before = people_written(st)
    html = post_person(browser, "agent", "s01", "刘秀英", "3691").get_data(as_text=True)
    expected = "编号 S01 已被使用，请换一个。" if lang == "zh" else "The ID S01 is taken already: choose another."
    assert error_of(html) == expected
    assert people_written(st) == before and 'id="people-agent"' in html


def test_a_second_tap_of_a_step_already_done_writes_nothing(shop):
    st, browser = shop
    post_person(browser, "supervisor", **SETUP_SUPERVISOR)
    before = people_written(st)
    # The supervisor's form again (a double tap, a page left open): the step due now is shown instead.
    again = browser.post("/setup/people", data={"role": "supervisor", "agent_id": "S02", "name": "二号",
                                                "pin": "2580", "pin_again": "2580"})
    assert again.headers["Location"] == "/setup/people" and people_written(st) == before


# -- never once a supervisor exists ------------------------------------------------------------------------------
def test_before_enrollment_there_is_no_one_to_add(tmp_path, clock):
    fb = FirstBoot(tmp_path / "new-device", clock=clock)
    browser = Client(dispatcher_for(fb))
    assert browser.get("/setup/people").headers["Location"] == "/"
    answer = browser.post("/setup/people", data={"role": "supervisor", **SETUP_SUPERVISOR,
                                                 "pin_again": SETUP_SUPERVISOR["pin"]})
    assert answer.headers["Location"] == "/" and not (tmp_path / "new-device" / "station.db").exists()
    assert 'id="not-enrolled"' in page(browser, "/setup")


def test_another_browser_cannot_add_the_agent_after_the_supervisor(shop):
    st, browser = shop
    post_person(browser, "supervisor", **SETUP_SUPERVISOR)
    before = people_written(st)
    stranger = Client(browser.application)
    assert stranger.get("/setup/people").headers["Location"] == "/"
    answer = stranger.post("/setup/people", data={"role": "agent", "agent_id": "A09", "name": "X",
                                                  "pin": "2580", "pin_again": "2580"})
    assert answer.headers["Location"] == "/" and people_written(st) == before
    # The rest of the station is the login screen's now, with the supervisor on it.
    assert stranger.get("/").headers["Location"] == "/login"
    assert 'id="agent-S01"' in page(stranger, "/login")
    assert "添加店里的人员" not in page(stranger, "/setup")


def test_the_agent_step_ends_with_the_idle_time(shop, clock):
    st, browser = shop
    post_person(browser, "supervisor", **SETUP_SUPERVISOR)
    clock.advance(seconds=st.policy["agent_idle_seconds"] - 1)
    assert 'id="people-agent"' in page(browser)
    clock.advance(seconds=1)
    before = people_written(st)
    assert browser.get("/setup/people").headers["Location"] == "/"
    assert post_person(browser, "agent", **SETUP_AGENT).headers["Location"] == "/"
    assert people_written(st) == before


def test_a_station_with_a_supervisor_already_is_never_set_up_again(shop):
    st, browser = shop
    agents.add_agent(st, "S05", "老板", "supervisor", "2580")
    before = people_written(st)
    for role in ("supervisor", "agent"):
        assert browser.get("/setup/people").headers["Location"] == "/"
        answer = browser.post("/setup/people", data={"role": role, "agent_id": "X1", "name": "X",
                                                     "pin": "2580", "pin_again": "2580"})
        assert answer.headers["Location"] == "/"
    assert people_written(st) == before
    assert browser.get("/").headers["Location"] == "/login"


def test_the_library_refuses_a_second_set_up_supervisor_in_its_own_transaction(shop):
    st, _ = shop
    agents.add_agent(st, "S01", "周主管", "supervisor", "2580", set_up=True)
    before = people_written(st)
    with pytest.raises(errors.PeopleAlreadySetUp):
        agents.add_agent(st, "S02", "二号", "supervisor", "2580", set_up=True)
    agents.add_agent(st, "A01", "刘秀英", "agent", "3691", set_up=True)
    with pytest.raises(errors.PeopleAlreadySetUp):
        agents.add_agent(st, "A02", "二号", "agent", "3691", set_up=True)
    assert people_written(st)[0] == before[0] + [("A01", "刘秀英", "agent")]


def test_csrf_guards_the_step(shop, clock):
    st, _ = shop
    browser = Client(dispatcher_for(FirstBoot(st.data_dir, clock=clock, station=st), WTF_CSRF_ENABLED=True))
    before = people_written(st)
    refused = browser.post("/setup/people", data={"role": "supervisor", **SETUP_SUPERVISOR,
                                                  "pin_again": SETUP_SUPERVISOR["pin"]})
    assert refused.status_code == 400
    assert error_of(refused.get_data(as_text=True)) == "页面打开太久或来源不对，请返回再试一次。"
    assert people_written(st) == before
    assert csrf_token_of(page(browser))
    add_shop_people(browser)
    assert len(people_written(st)[0]) == 2


def test_the_enrolled_screen_of_a_station_with_its_people_leads_to_the_login(shop):
    st, browser = shop
    add_shop_people(browser)
    html = page(browser, "/setup")
    assert 'href="/" id="continue"' in html and "/setup/people" not in html


# -- the library and its rules -------------------------------------------------------------------------------
@pytest.mark.parametrize(("pin", "weak"), [
    ("1111", True), ("000000", True), ("1234", True), ("4321", True), ("123456", True), ("987654", True),
    ("7890", True), ("9012", True), ("1098", True), ("1357", False), ("2468", False), ("2580", False),
    ("1122", False), ("1212", False), ("12345", True), ("12346", False),
])
def test_weak_pins(pin, weak):
    assert weak_pin(pin) is weak


def test_the_suggested_ids_skip_those_taken(shop):
    st, _ = shop
    assert agents.suggested_agent_id(st, "supervisor") == "S01"
    agents.add_agent(st, "S01", "周主管", "supervisor", "2580")
    agents.add_agent(st, "A01", "刘秀英", "agent", "3691")
    agents.add_agent(st, "A02", "王芳", "agent", "3692")
    assert agents.suggested_agent_id(st, "supervisor") == "S02"
    assert agents.suggested_agent_id(st, "agent") == "A03"


# -- `station serve` of a station enrolled from a shell ------------------------------------------------------
def test_serve_of_a_station_enrolled_from_a_shell_adds_its_people_first(server, tmp_path, monkeypatch):
    server_db()
    code = add_station("ST-0009", "Shop 9", village="刘家村", agent="刘秀英")
    device = tmp_path / "device"
    result = CliRunner().invoke(cli.cli, ["enroll", "--data-dir", str(device), "--server", server.url,
                                          "--code", code])
    assert result.exit_code == 0, result.output
    assert json.loads((device / "config.json").read_text(encoding="utf-8"))["agent"] == "刘秀英"
    served = {}

    def capture(app, host, port):
        browser = Client(app)
        served["first"] = browser.get("/").headers.get("Location")
        served["prefilled"] = field_value(post_and_page(browser), "name")
        served["login"] = browser.get("/").headers.get("Location")
        served["sync"] = app.station_app.extensions.get("sync_now") is not None

    def post_and_page(browser):
        post_person(browser, "supervisor", **SETUP_SUPERVISOR)
        html = page(browser)
        post_person(browser, "agent", **SETUP_AGENT)
        return html

    monkeypatch.setattr(cli, "serve_app", capture)
    result = CliRunner().invoke(cli.cli, ["serve", "--data-dir", str(device)])
    assert result.exit_code == 0, result.output
    assert "no supervisor yet" in result.output and "in the background" in result.output
    assert served == {"first": "/setup", "prefilled": "刘秀英", "login": "/login", "sync": True}


def test_serve_of_a_station_with_a_supervisor_is_the_station_app(station, monkeypatch):
    served = {}
    monkeypatch.setattr(cli, "serve_app", lambda app, host, port: served.update(app=app))
    result = CliRunner().invoke(cli.cli, ["serve", "--data-dir", str(station.data_dir)])
    assert result.exit_code == 0, result.output
    assert not isinstance(served["app"], SetupDispatcher) and "no supervisor" not in result.output


# -- from the bank's station row to the agent at the counter ---------------------------------------------------
def test_the_bank_names_the_agent_the_screen_offers_it_and_the_agent_logs_in(server, tmp_path, clock):
    server_db()
    code = add_station("ST-0009", "Liujia village shop", village="刘家村", agent="刘秀英")
    fb = FirstBoot(tmp_path / "device", clock=clock)
    browser = Client(dispatcher_for(fb))
    browser.post("/setup/enroll", data={"scan": make_payload(server.url, "ST-0009", code)})
    fb.worker.join(timeout=30)
    st = fb.station
    try:
        assert st is not None and (st.config["agent"], st.config["village"]) == ("刘秀英", "刘家村")
        assert browser.get("/").headers["Location"] == "/setup"
        html = page(browser, "/setup")
        assert 'id="enrolled"' in html and 'href="/setup/people"' in html
        assert post_person(browser, "supervisor", "S01", "周主管", "2580").headers["Location"] == "/setup/people"
        html = page(browser)
        assert field_value(html, "name") == "刘秀英" and field_value(html, "agent_id") == "A01"
        assert post_person(browser, "agent", "A01", field_value(html, "name"), "3691").headers["Location"] == "/"
        # The normal UI takes over: the agent taps their name and logs in.
        login = page(browser, "/login")
        assert "刘秀英" in login and "周主管" in login
        assert browser.post("/login", data={"agent_id": "A01", "pin": "3691"}).headers["Location"] == "/home"
        home = page(browser, "/home")
        assert 'id="tile-withdrawal"' in home and 'id="logout"' in home
    finally:
        if st is not None:
            st.close()


def test_the_enrollment_answer_names_the_agent_and_village_only_when_the_bank_knows(server, tmp_path, clock):
    server_db()
    known = enroll_station(tmp_path / "a", server.url, add_station("ST-0011", "A", village="刘家村", agent="刘秀英"),
                           clock=clock)
    unknown = enroll_station(tmp_path / "b", server.url, add_station("ST-0012", "B"), clock=clock)
    try:
        assert (known.config["agent"], known.config["village"]) == ("刘秀英", "刘家村")
        assert "agent" not in unknown.config and "village" not in unknown.config
    finally:
        known.close()
        unknown.close()


@pytest.mark.parametrize(("answer", "kept"), [
    ({"agent": "刘秀英", "village": "刘家村"}, {"agent": "刘秀英", "village": "刘家村"}),
    ({"agent": " 刘  秀英 "}, {"agent": "刘 秀英"}),
    ({"agent": "刘" * 41, "village": "村" * 60}, {"village": "村" * 60}),
    ({"agent": "刘\n秀英", "village": 7}, {}),
    ({"agent": None, "village": ""}, {}),
    ({}, {}),
])
def test_what_the_station_keeps_of_the_banks_shop_details(answer, kept):
    from station.sync import _shop_details

    assert _shop_details(answer) == kept


# -- `station agent add|list` ----------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path, clock):
    st = init_station(tmp_path / "st", "ST-0042", clock=clock)
    st.close()
    return tmp_path / "st"


def run(*args, input=None):
    return CliRunner().invoke(cli.cli, ["agent", *args], input=input)


def added(folder):
    return json.loads(run("list", "--data-dir", str(folder), "--json").output)


def test_agent_add_asks_the_pin_twice_hidden(folder):
    result = run("add", "--data-dir", str(folder), "--id", "s01", "--name", "周主管", "--role", "supervisor",
                 input="2580\n2580\n")
    assert result.exit_code == 0, result.output
    assert "PIN (4 to 6 digits): \nPIN again: \n" in result.output and "2580" not in result.output
    assert "Added supervisor S01 (周主管) to station ST-0042." in result.output
    assert added(folder) == [{"id": "S01", "name": "周主管", "role": "supervisor", "locked": False}]


def test_agent_add_asks_again_when_the_two_pins_differ(folder):
    result = run("add", "--data-dir", str(folder), "--id", "A01", "--name", "刘秀英", "--role", "agent",
                 input="2580\n2581\n3691\n3691\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    st = Station(folder)
    try:
        with st.bound():
            assert check_pin("3691", Agent.get_by_id("A01").pin_verifier)
    finally:
        st.close()


def test_agent_add_reads_the_pin_from_stdin_for_scripts(folder):
    result = run("add", "--data-dir", str(folder), "--id", "A02", "--name", "Wang Fang", "--role", "agent",
                 "--pin-stdin", input="3691\r\n")
    assert result.exit_code == 0, result.output
    assert "PIN" not in result.output
    assert added(folder) == [{"id": "A02", "name": "Wang Fang", "role": "agent", "locked": False}]


@pytest.mark.parametrize(("args", "pin", "code", "message"), [
    (["--id", "A 1"], "3691", 2, "Invalid value for --id: An ID is 1 to 16 letters A-Z"),
    (["--id", ""], "3691", 2, "Invalid value for --id"),
    (["--name", "刘\x07"], "3691", 2, "Invalid value for --name: Type the person's name: 1 to 40 characters"),
    (["--name", "刘" * 41], "3691", 2, "Invalid value for --name"),
    (["--role", "boss"], "3691", 2, "Invalid value for '--role'"),
    ([], "1234", 1, "Error: This PIN is too easy to guess"),
    ([], "12", 1, "Error: A PIN is 4 to 6 digits."),
    ([], "", 1, "Error: A PIN is 4 to 6 digits."),
    ([], "３６９１", 1, "Error: A PIN is 4 to 6 digits."),
])
def test_agent_add_refusals(folder, args, pin, code, message):
    base = {"--id": "A01", "--name": "刘秀英", "--role": "agent"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    options = [item for pair in base.items() for item in pair]
    result = run("add", "--data-dir", str(folder), *options, "--pin-stdin", input=pin + "\n")
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert added(folder) == []


def test_agent_add_refuses_a_taken_id_before_asking_the_pin(folder):
    run("add", "--data-dir", str(folder), "--id", "A01", "--name", "刘秀英", "--role", "agent", "--pin-stdin",
        input="3691\n")
    result = run("add", "--data-dir", str(folder), "--id", "a01", "--name", "王芳", "--role", "agent",
                 input="2580\n2580\n")
    assert result.exit_code == 1
    assert "Station ST-0042 has an agent A01 already: choose another ID." in result.output
    assert "PIN" not in result.output
    assert added(folder) == [{"id": "A01", "name": "刘秀英", "role": "agent", "locked": False}]


def test_agent_commands_on_a_folder_without_a_station(tmp_path):
    for args in (["add", "--id", "A01", "--name", "X", "--role", "agent", "--pin-stdin"], ["list"]):
        result = run(*args, "--data-dir", str(tmp_path / "none"), input="3691\n")
        assert result.exit_code == 1 and "No station in" in result.output, result.output


def test_agent_list(folder):
    assert "No agents yet" in run("list", "--data-dir", str(folder)).output
    run("add", "--data-dir", str(folder), "--id", "A01", "--name", "刘秀英", "--role", "agent", "--pin-stdin",
        input="3691\n")
    run("add", "--data-dir", str(folder), "--id", "S01", "--name", "周主管", "--role", "supervisor", "--pin-stdin",
        input="2580\n")
    lines = run("list", "--data-dir", str(folder)).output.splitlines()
    assert [line.split() for line in lines] == [["S01", "supervisor", "ok", "周主管"], ["A01", "agent", "ok", "刘秀英"]]


def test_an_agent_added_from_a_shell_ends_the_set_up_step(shop):
    st, browser = shop
    assert browser.get("/").headers["Location"] == "/setup"
    result = run("add", "--data-dir", str(st.data_dir), "--id", "S01", "--name", "周主管", "--role", "supervisor",
                 "--pin-stdin", input="2580\n")
    assert result.exit_code == 0, result.output
    assert browser.get("/").headers["Location"] == "/login"
    assert browser.get("/setup/people").headers["Location"] == "/"
    entries = agent_added_entries(st)
    assert [payload["agent"] for payload, _ in entries] == ["S01"]
