"""The branch dashboard (``/dashboard/``): login everywhere, CSRF, the one failure message, disabled users, the login
rate limit; and its numbers checked against what a real station journaled and synced, on SQLite and PostgreSQL.

The story: ST-0001 in 来凤县 on Tuesday 3 November 2026 (Beijing). The counter opens at 07:40; three deposits at
08:10, 08:12 and 08:15; a man stops at the fraud warning at 08:30; a transfer to a payee the bank blocked meanwhile
at 09:00 (rejected: payee_blocked); two deposits at 10:05 and 10:06; a customer's suggestion at 10:20. The dashboard
looks at noon. For the county's page ST-0002, in the same county, has its own morning (``second_station_morning``).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from conftest import FakeClock
from sync_support import enrolled_station, open_counter, server_db

from station import agents, feedback, operations, receipts
from station.db import Customer, JournalEntry
from station.demo import DEMO_CUSTOMER_PIN
from station.protocol.tokens import unverified_payload
from station.sync import sync_once
from sync_server import create_app
from sync_server.admin import add_station, block_payee
from sync_server.bank_users import add_user, disable_user
from sync_server.cli import cli
from sync_server.dashboard_data import VISIT_TYPES, BusyDay, busiest_days
from sync_server.db import BankUser, Entry, Posting
from sync_server.db import Station as ServerStation
from sync_server.voice import follow_up, voice_items

BEIJING = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 3, 12, 0, tzinfo=BEIJING)
PASSWORD = "correct horse battery"
ACCOUNT = "DM00010003"


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 11, 3, hour, minute, tzinfo=BEIJING).astimezone(UTC)


def dashboard_app(server, **config):
    """A second app on the bank's database and keys, for the test client: cookies over plain HTTP, noon."""
    return create_app({"DATABASE_URL": server.database_url, "SYNC_SERVER_KEYS_DIR": str(server.keys_dir),
                       "SYNC_SERVER_DASHBOARD_SECURE_COOKIE": "off", "DASHBOARD_NOW": NOON.astimezone(UTC),
                       "SYNC_SERVER_RATE_LIMIT_LOGIN": "off", **config})


def csrf_token(client) -> str:
    page = client.get("/dashboard/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def log_in(client, name="wang", password=PASSWORD):
    return client.post("/dashboard/login", data={"name": name, "password": password,
                                                 "csrf_token": csrf_token(client), "next": "/dashboard/"})


@pytest.fixture
def manager(server):
    server_db()
    add_user("wang", PASSWORD)
    return "wang"


# -- login everywhere ---------------------------------------------------------------------------------------------
def dashboard_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/dashboard")]


def test_every_dashboard_route_needs_a_login_get_and_post(server, manager):
    app = dashboard_app(server)
    client = app.test_client()
    rules = dashboard_rules(app)
    assert {rule.endpoint for rule in rules} >= {"dashboard.index", "dashboard.station_page", "dashboard.peak_chart",
                                                 "dashboard.peak_chart_file", "dashboard.logout",
                                                 "dashboard.county_page"}
    token = csrf_token(client)
    for rule in rules:
        path = rule.rule.replace("<station_id>", "ST-0001").replace("<path:county>", "-")
        if rule.endpoint in ("dashboard.login", "dashboard.login_submit"):
            continue
        got = client.get(path)
        if "GET" in rule.methods:
            if path.endswith(".svg"):
                assert got.status_code == 401, path
            else:
                assert got.status_code == 302 and "/dashboard/login?next=" in got.headers["Location"], path
        posted = client.post(path, data={"csrf_token": token})
        assert posted.status_code in (401, 405), path
        for response in (got, posted):
            body = response.get_data(as_text=True)
            assert "data-figure" not in body and "<svg" not in body and "Liujia" not in body, path
            assert response.status_code != 500


def test_a_form_without_its_csrf_token_is_refused(server, manager):
    client = dashboard_app(server).test_client()
    response = client.post("/dashboard/login", data={"name": "wang", "password": PASSWORD})
    assert response.status_code == 400
    assert "Form expired" in response.get_data(as_text=True)
    assert client.get("/dashboard/").status_code == 302


@pytest.mark.parametrize("name, password", [("wang", "wrong password!"), ("nobody", PASSWORD), ("", ""),
                                            ("x" * 500, "y" * 500)])
def test_a_wrong_name_or_password_gets_one_message(server, manager, name, password):
    client = dashboard_app(server).test_client()
    response = log_in(client, name, password)
    assert response.status_code == 401
    assert "Wrong name or password." in response.get_data(as_text=True)
    assert client.get("/dashboard/").status_code == 302


def test_login_cookie_flags_logout_and_a_disabled_user(server, manager):
    app = dashboard_app(server, SYNC_SERVER_DASHBOARD_SECURE_COOKIE="on")
    client = app.test_client()
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie and "Expires=" in cookie
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(minutes=30)

    client = dashboard_app(server).test_client()
    log_in(client)
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "ST-0001" in page.get_data(as_text=True)
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    # A copy of the cookie dies with its session: a logout ends it, and so does disabling the user.
    copy = dashboard_app(server).test_client()
    cookie = client.get_cookie("dashboard_session", path="/dashboard").value
    copy.set_cookie("dashboard_session", cookie, path="/dashboard")
    assert copy.get("/dashboard/").status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 302
    assert copy.get("/dashboard/").status_code == 302
    log_in(client)
    assert client.get("/dashboard/").status_code == 200
    server_db()
    disable_user("wang")
    assert client.get("/dashboard/").status_code == 302
    response = log_in(client)
    assert response.status_code == 401 and "Wrong name or password." in response.get_data(as_text=True)


def test_login_attempts_are_rate_limited(server, manager):
    client = dashboard_app(server, SYNC_SERVER_RATE_LIMIT_LOGIN="3 per minute").test_client()
    for _ in range(3):
        assert log_in(client, "wang", "wrong password!").status_code == 401
    response = log_in(client)
    assert response.status_code == 429
    assert "Too many attempts" in response.get_data(as_text=True) and int(response.headers["Retry-After"]) >= 1


def test_bad_query_and_unknown_station_are_pages_not_errors(server, manager):
    client = dashboard_app(server).test_client()
    log_in(client)
    for path, status in [("/dashboard/stations/ST-9999", 404), ("/dashboard/stations/ST-0001/peak-chart?weeks=0", 400),
                         ("/dashboard/stations/ST-0001/peak-chart?weeks=x", 400),
                         ("/dashboard/stations/ST-0001/peak-chart?weeks=99", 400), ("/dashboard/nothing", 404)]:
        response = client.get(path)
        assert response.status_code == status, path
        assert response.mimetype == "text/html", path


# -- the numbers against the journals -----------------------------------------------------------------------------
def pension_morning(server, tmp_path):
    """ST-0001's Tuesday morning (the module docstring), synced; returns the station."""
    clock = FakeClock(at(7, 30))
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    server_db()
    ServerStation.update(county="来凤县").where(ServerStation.station_id == "ST-0001").execute()
    with st.bound():
        clock.now = at(7, 40)
        agent, _ = open_counter(st)
        customer = Customer.get(Customer.account_id == ACCOUNT)
        for hour, minute in ((8, 10), (8, 12), (8, 15)):
            clock.now = at(hour, minute)
            auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
            operations.deposit_cash(st, agent, auth, 10_000, receipts.new_txn_id())
        clock.now = at(8, 30)
        operations.stop_transfer(st, agent, customer, "6222000000007777", "公安局安全账户", 800_000,
                                 receipts.new_txn_id())
        payee = customer.payees.get()
        clock.now = at(9, 0)
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        operations.transfer(st, agent, auth, payee.account, payee.name, 30_000, receipts.new_txn_id())
        for hour, minute in ((10, 5), (10, 6)):
            clock.now = at(hour, minute)
            auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
            operations.deposit_cash(st, agent, auth, 5_000, receipts.new_txn_id())
        clock.now = at(10, 20)
        feedback.record_feedback(st, agent, "suggestion", "中午也开门就好了")
        server_db()
        block_payee(payee.account, "reported fraud")
        clock.now = at(11, 0)
        sync_once(st)
    return st


def journal_visits(st) -> Counter:
    """Visits per Beijing hour, from the station's own journal."""
    with st.bound():
        payloads = [unverified_payload(entry.token) for entry in JournalEntry.select()]
    return Counter(datetime.fromisoformat(p["ts"]).astimezone(BEIJING).hour for p in payloads
                   if p["type"] in VISIT_TYPES)


def cells(html: str) -> dict[str, str]:
    """The heatmap's cells by their titles: {"11/3 周二 08时": "3"}."""
    return dict(re.findall(r"<title>([^<]+?): ([0-9.]+)</title>", unescape(html)))


def voice_figure(client) -> str:
    """The overview's open customer-voice count for ST-0001."""
    row = re.search(r'<tr id="station-ST-0001">(.*?)</tr>', client.get("/dashboard/").get_data(as_text=True), re.S)
    return dict(re.findall(r'data-figure="(\w+)">(.*?)</td>', row.group(1), re.S))["voice"]


def test_the_pages_numbers_are_the_journals(server, manager, tmp_path):
    st = pension_morning(server, tmp_path)
    client = dashboard_app(server).test_client()
    log_in(client)
    page = client.get("/dashboard/").get_data(as_text=True)
    assert "来凤县" in page

    visits = journal_visits(st)
    assert (visits[8], visits[9], visits[10]) == (3, 1, 2)
    heat = cells(page.split("<h2>来凤县</h2>")[1].split("</section>")[0])
    for hour in range(7, 20):
        assert heat[f"11/3 周二 {hour:02d}时"] == str(visits[hour])
    # The days before are there and empty.
    assert heat["10/28 周三 08时"] == "0"

    server_db()
    rejected = Counter(entry.reason for entry in Entry.select().where(
        (Entry.station_id == "ST-0001") & (Entry.outcome == "rejected")))
    assert rejected == {"payee_blocked": 1}
    row = re.search(r'<tr id="station-ST-0001">(.*?)</tr>', page, re.S).group(1)
    figure = dict(re.findall(r'data-figure="(\w+)">(.*?)</td>', row, re.S))
    assert figure["entries"] == str(Entry.select().where(Entry.station_id == "ST-0001").count())
    assert figure["visits"] == str(sum(visits.values())) == "6"
    assert " ".join(figure["refusals"].split()) == '<ul class="plain"> <li>payee_blocked: 1</li></ul>'
    assert (figure["stopped"], figure["voice"]) == ("1", "1")
    # Answered at the bank (sync-server voice resolve): no longer open; reopened: open again.
    server_db()
    (suggestion,) = [item["id"] for item in voice_items(station_id="ST-0001", kind="suggestion")]
    follow_up(suggestion, "resolve", note="午间开门已安排", by="Li Wei")
    assert voice_figure(client) == "0"
    follow_up(suggestion, "reopen", note="customer asked again", by="Li Wei")
    assert voice_figure(client) == "1"
    # Deposits' gaps from the entry before: 08:12 and 08:15 (2 and 3 minutes), 10:06 (1 minute); 08:10 and 10:05
    # follow a quiet counter (30 and 65 minutes: idle, not measured). The median is 2:00.
    assert "存款 Deposit: 2:00 <span class=\"note\">(n=3)</span>" in row
    assert "Behind" not in row and "Silent" not in row

    station = client.get("/dashboard/stations/ST-0001").get_data(as_text=True)
    assert cells(station)["11/3 周二 08时"] == "3"
    assert "payee_blocked: 1" in station
    # Operations by type against the ledger: a settled operation is one with postings, a refused one has none.
    operations = {kind: (int(settled), int(refused)) for kind, settled, refused in re.findall(
        r'<tr data-type="(\w+)"><td>[^<]*</td><td class="n">(\d+)</td><td class="n">(\d+)</td></tr>', station)}
    server_db()
    posted = Counter(entry_type for entry_type, in Entry.select(Entry.type).where(
        (Entry.station_id == "ST-0001") & Entry.seq.in_(Posting.select(Posting.seq).where(
            Posting.station_id == "ST-0001"))).tuples())
    assert operations == {"deposit": (posted["deposit"], 0), "transfer": (posted["transfer"], 1)} == {
        "deposit": (5, 0), "transfer": (0, 1)}


def test_the_wall_chart_averages_over_its_weeks(server, manager, tmp_path):
    pension_morning(server, tmp_path)
    client = dashboard_app(server).test_client()
    log_in(client)
    one = cells(client.get("/dashboard/stations/ST-0001/peak-chart?weeks=1").get_data(as_text=True))
    assert (one["周二 08时"], one["周二 10时"], one["周一 08时"]) == ("3", "2", "0")
    four = client.get("/dashboard/stations/ST-0001/peak-chart?weeks=4").get_data(as_text=True)
    assert "近4周" in four
    # Three visits at 8 in four weeks: 0.75 a week, shown to a tenth (rounded half up).
    assert (cells(four)["周二 08时"], cells(four)["周二 10时"], cells(four)["周二 09时"]) == ("0.8", "0.5", "0.3")
    svg = client.get("/dashboard/stations/ST-0001/peak-chart.svg?weeks=4")
    assert svg.mimetype == "image/svg+xml" and cells(svg.get_data(as_text=True))["周二 08时"] == "0.8"
    # The pension morning by its date, not diluted in its weekday's average: six visits, the busiest hour 08.
    busiest = re.findall(r'<tr data-day="([0-9-]+)"><td>([^<]+)</td>\s*<td class="n">(\d+)人</td><td>最忙 (\d+)时',
                         four)
    assert busiest == [("2026-11-03", "11月3日（周二）", "6", "08")]


def test_busiest_days_name_a_monthly_peak_by_its_date():
    """Pension day on the 10th of two months in a row: its weekday average is a quarter of it, its date says it."""
    per_hour = Counter({(date(2026, 11, 10), 9): 30, (date(2026, 11, 10), 8): 12, (date(2026, 11, 11), 9): 4,
                        (date(2026, 11, 12), 10): 4, (date(2026, 11, 12), 11): 4, (date(2026, 11, 13), 8): 0})
    assert busiest_days(per_hour) == [BusyDay(date(2026, 11, 10), 42, 9), BusyDay(date(2026, 11, 12), 8, 10),
                                      BusyDay(date(2026, 11, 11), 4, 9)]
    assert busiest_days(per_hour, count=1) == [BusyDay(date(2026, 11, 10), 42, 9)]
    assert busiest_days(Counter()) == []


def test_silent_and_behind_stations_are_flagged(server, manager, tmp_path):
    pension_morning(server, tmp_path)
    server_db()
    ServerStation.update(last_sync_at="2026-11-01T00:00:00.000Z").where(
        ServerStation.station_id == "ST-0001").execute()
    from sync_server.db import StationTail

    acked = ServerStation.get_by_id("ST-0001").acked_seq
    StationTail.update(seq=acked + 7).where(StationTail.station_id == "ST-0001").execute()
    client = dashboard_app(server).test_client()
    log_in(client)
    row = re.search(r'<tr id="station-ST-0001">(.*?)</tr>', client.get("/dashboard/").get_data(as_text=True),
                    re.S).group(1)
    assert "Silent &gt; 24 h" in row and "Behind by 7" in row
    assert "2026-11-01 08:00" in row  # the last sync in the stations' time zone


# -- the commands ---------------------------------------------------------------------------------------------------
def test_users_commands(server, tmp_path):
    runner = CliRunner()
    url = ["--database-url", server.database_url]
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    result = runner.invoke(cli, ["users", "add", "li", "--password-file", str(secret), *url])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["users", "add", "zhao", *url], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0 and "User zhao (manager) added." in result.output
    server_db()
    assert BankUser.get_by_id("zhao").password_hash.startswith("scrypt:")
    for args, message in [(["users", "add", "li", "--password-file", str(secret)], "There is already a user 'li'."),
                          (["users", "add", "has space", "--password-file", str(secret)], "without spaces"),
                          (["users", "disable", "nobody"], "There is no user 'nobody'.")]:
        result = runner.invoke(cli, [*args, *url])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    short = tmp_path / "short"
    short.write_text("short\n")
    result = runner.invoke(cli, ["users", "add", "qian", "--password-file", str(short), *url])
    assert result.exit_code == 1 and "10 to 128 printable characters" in result.output
    assert runner.invoke(cli, ["users", "disable", "li", *url]).exit_code == 0
    listing = runner.invoke(cli, ["users", "list", *url]).output.splitlines()
    assert [line.split("\t")[:3] for line in listing] == [["li", "manager", "disabled"], ["zhao", "manager", "enabled"]]
    assert PASSWORD not in runner.invoke(cli, ["users", "list", "--json", *url]).output


def test_users_enable_and_password(server, manager, tmp_path):
    runner = CliRunner()
    url = ["--database-url", server.database_url]
    new_password = "a new password, longer"
    secret = tmp_path / "new"
    secret.write_text(new_password + "\n")
    client = dashboard_app(server).test_client()
    log_in(client)
    copy = dashboard_app(server).test_client()
    copy.set_cookie("dashboard_session", client.get_cookie("dashboard_session", path="/dashboard").value,
                    path="/dashboard")
    assert copy.get("/dashboard/").status_code == 200

    # A new password ends the session: the old cookie, and its copy, open no page any more.
    result = runner.invoke(cli, ["users", "password", "wang", "--password-file", str(secret), *url])
    assert result.exit_code == 0 and result.output == "Password of wang set; their session has ended.\n"
    assert client.get("/dashboard/").status_code == 302 and copy.get("/dashboard/").status_code == 302
    assert log_in(client, "wang", PASSWORD).status_code == 401
    assert log_in(client, "wang", new_password).status_code == 302
    assert client.get("/dashboard/").status_code == 200
    # Asked twice, hidden, when no file gives it.
    result = runner.invoke(cli, ["users", "password", "wang", *url], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert client.get("/dashboard/").status_code == 302
    assert log_in(client, "wang", PASSWORD).status_code == 302

    # Disabled, then enabled: the session ended with the disable stays ended; the password is the one it had.
    assert runner.invoke(cli, ["users", "disable", "wang", *url]).exit_code == 0
    assert client.get("/dashboard/").status_code == 302
    assert log_in(client, "wang", PASSWORD).status_code == 401
    result = runner.invoke(cli, ["users", "enable", "wang", *url])
    assert result.exit_code == 0 and result.output == "User wang enabled.\n"
    assert client.get("/dashboard/").status_code == 302
    assert log_in(client, "wang", PASSWORD).status_code == 302
    assert runner.invoke(cli, ["users", "list", *url]).output.split("\t")[:3] == ["wang", "manager", "enabled"]

    short = tmp_path / "short"
    short.write_text("short\n")
    for args, message in [
            (["users", "enable", "nobody"], "Error: There is no user 'nobody'.\n"),
            (["users", "password", "nobody", "--password-file", str(secret)], "Error: There is no user 'nobody'.\n"),
            (["users", "password", "nobody"], "Error: There is no user 'nobody'.\n"),  # not asked in vain
            (["users", "password", "wang", "--password-file", str(short)],
             "Error: A password is 10 to 128 printable characters.\n")]:
        result = runner.invoke(cli, [*args, *url])
        assert (result.exit_code, result.output) == (1, message), args
    # The refused password changed nothing: the session goes on.
    assert client.get("/dashboard/").status_code == 200


def test_station_add_takes_a_county(server):
    runner = CliRunner()
    result = runner.invoke(cli, ["station", "add", "ST-0101", "--name", "Liujia shop", "--county", " 来凤县 ",
                                 "--database-url", server.database_url])
    assert result.exit_code == 0, result.output
    server_db()
    assert ServerStation.get_by_id("ST-0101").county == "来凤县"
    result = runner.invoke(cli, ["station", "add", "ST-0102", "--name", "x", "--county", "a\x07b",
                                 "--database-url", server.database_url])
    assert result.exit_code == 1 and "County holds a character that cannot be printed" in result.output


def test_a_session_ends_after_its_idle_minutes(server, manager, monkeypatch):
    import time

    client = dashboard_app(server, SYNC_SERVER_DASHBOARD_SESSION_MINUTES="5").test_client()
    log_in(client)
    assert client.get("/dashboard/").status_code == 200
    later = time.time() + 6 * 60
    monkeypatch.setattr(time, "time", lambda: later)
    assert client.get("/dashboard/").status_code == 302


def test_the_session_key_is_kept_in_the_keys_folder_unless_set(server, monkeypatch):
    first = dashboard_app(server).config["SECRET_KEY"]
    assert (server.keys_dir / "dashboard_session.key").stat().st_mode & 0o777 == 0o600
    assert dashboard_app(server).config["SECRET_KEY"] == first and len(first) == 64
    assert dashboard_app(server, SYNC_SERVER_SECRET_KEY="set by the bank").config["SECRET_KEY"] == "set by the bank"


@pytest.mark.parametrize("setting, value, message", [
    ("SYNC_SERVER_DASHBOARD_SESSION_MINUTES", "0", "SYNC_SERVER_DASHBOARD_SESSION_MINUTES must be a whole number"),
    ("SYNC_SERVER_DASHBOARD_SILENT_HOURS", "x", "SYNC_SERVER_DASHBOARD_SILENT_HOURS must be a whole number"),
    ("SYNC_SERVER_DASHBOARD_SECURE_COOKIE", "maybe", "SYNC_SERVER_DASHBOARD_SECURE_COOKIE is on or off"),
])
def test_a_bad_dashboard_setting_stops_serve_with_the_reason(server, monkeypatch, setting, value, message):
    monkeypatch.setenv("DATABASE_URL", server.database_url)
    monkeypatch.setenv(setting, value)
    result = CliRunner().invoke(cli, ["serve", "--dev"])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_catch_up_reads_each_entry_once(server, tmp_path):
    from sync_server.db import EntryTime, EntryTimeMark

    st = pension_morning(server, tmp_path)
    url = ["--database-url", server.database_url]
    with st.bound():
        count = JournalEntry.select().count()
    result = CliRunner().invoke(cli, ["dashboard", "catch-up", *url])
    assert result.exit_code == 0 and result.output == f"Read the times of {count} entries.\n"
    assert CliRunner().invoke(cli, ["dashboard", "catch-up", *url]).output == "Read the times of 0 entries.\n"
    server_db()
    assert EntryTime.select().where(EntryTime.station_id == "ST-0001").count() == count
    assert EntryTimeMark.get_by_id("ST-0001").through_seq == count


# -- the county page -------------------------------------------------------------------------------------------------
def second_station_morning(server, tmp_path):
    """ST-0002, also in 来凤县, the same Tuesday: the counter opens at 08:00; deposits at 09:00, 09:05 and 09:11; a
    woman stops at the fraud warning at 09:20; a transfer at 09:45 to a payee the bank blocks before the station
    syncs at 11:30 (rejected: payee_blocked). Recorded before ST-0001's morning, synced after it."""
    clock = FakeClock(at(7, 30))
    st = enrolled_station(server, tmp_path, "ST-0002", clock)
    server_db()
    ServerStation.update(county="来凤县").where(ServerStation.station_id == "ST-0002").execute()
    with st.bound():
        clock.now = at(8, 0)
        agent, _ = open_counter(st)
        customer = Customer.get(Customer.account_id == "DM00020003")
        for hour, minute in ((9, 0), (9, 5), (9, 11)):
            clock.now = at(hour, minute)
            auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
            operations.deposit_cash(st, agent, auth, 20_000, receipts.new_txn_id())
        clock.now = at(9, 20)
        operations.stop_transfer(st, agent, customer, "6222000000008888", "公检法专用账户", 500_000,
                                 receipts.new_txn_id())
        payee = customer.payees.get()
        clock.now = at(9, 45)
        auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
        operations.transfer(st, agent, auth, payee.account, payee.name, 10_000, receipts.new_txn_id())
    return st, clock, payee.account


def two_station_county(server, tmp_path):
    """来凤县: ST-0001's and ST-0002's mornings, synced; returns both stations."""
    second, clock, payee = second_station_morning(server, tmp_path)
    first = pension_morning(server, tmp_path)
    server_db()
    block_payee(payee, "reported fraud")
    with second.bound():
        clock.now = at(11, 30)
        sync_once(second)
    return first, second


def journal_gaps(st) -> dict[str, list[int]]:
    """Per customer operation type, the gaps in ms from the station's previous journal entry, up to ten minutes."""
    with st.bound():
        payloads = [unverified_payload(entry.token) for entry in JournalEntry.select().order_by(JournalEntry.seq)]
    gaps: dict[str, list[int]] = {}
    for before, entry in zip(payloads, payloads[1:], strict=False):
        gap = (datetime.fromisoformat(entry["ts"]) - datetime.fromisoformat(before["ts"])) // timedelta(milliseconds=1)
        if entry["type"] in VISIT_TYPES and 0 <= gap <= 10 * 60 * 1000:
            gaps.setdefault(entry["type"], []).append(gap)
    return gaps


def figures_of(html: str, table_id: str) -> dict[str, str]:
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    return {name: " ".join(value.split()) for name, value in re.findall(r'data-figure="(\w+)">(.*?)</td>', table, re.S)}


def test_the_county_page_is_its_stations_together(server, manager, tmp_path):
    first, second = two_station_county(server, tmp_path)
    server_db()
    from sync_server.db import StationTail

    ServerStation.update(last_sync_at="2026-11-01T00:00:00.000Z").where(
        ServerStation.station_id == "ST-0002").execute()
    StationTail.update(seq=ServerStation.get_by_id("ST-0001").acked_seq + 4).where(
        StationTail.station_id == "ST-0001").execute()
    client = dashboard_app(server).test_client()
    log_in(client)
    overview_page = client.get("/dashboard/").get_data(as_text=True)
    link = re.search(r'<a class="county-link" href="([^"]+)">全县数字 County figures: 来凤县</a>',
                     overview_page).group(1)
    assert link == "/dashboard/counties/%E6%9D%A5%E5%87%A4%E5%8E%BF"
    response = client.get(link)
    assert response.status_code == 200 and "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = response.get_data(as_text=True)
    assert '<h1 id="county">来凤县</h1>' in page

    # The heatmap: both journals' visits, hour by hour.
    visits = journal_visits(first) + journal_visits(second)
    assert (visits[8], visits[9], visits[10]) == (3, 1 + 4, 2)
    heat = cells(page)
    for hour in range(7, 20):
        assert heat[f"11/3 周二 {hour:02d}时"] == str(visits[hour]), hour

    # The county's figures against the bank's entries.
    server_db()
    county_entries = Entry.select().where(Entry.station_id.in_(["ST-0001", "ST-0002"]))
    rejected = Counter(entry.reason for entry in county_entries if entry.outcome == "rejected")
    assert rejected == {"payee_blocked": 2}
    figure = figures_of(page, "county-figures")
    assert figure["entries"] == str(county_entries.count())
    assert figure["visits"] == str(sum(visits.values())) == "10"
    assert figure["refusals"] == '<ul class="plain"> <li>payee_blocked: 2</li></ul>'
    assert (figure["stopped"], figure["voice"]) == ("2", "1")
    assert re.fullmatch(r'<div class="flag"><a href="/dashboard/stations/ST-0002">ST-0002</a> [^<]*</div>',
                        figure["silent"])
    assert re.fullmatch(r'<div class="flag"><a href="/dashboard/stations/ST-0001">ST-0001</a> [^<]*: 4</div>',
                        figure["behind"])

    # Per operation type: settled (with postings in the ledger) and refused, and the median of all the county's gaps
    # pooled: ST-0001's deposits 2, 3 and 1 minutes, ST-0002's 5 and 6 (09:00 follows an idle hour): 3:00 of five,
    # where the stations' own medians are 2:00 and 5:00.
    rows = {kind: (int(settled), int(refused), median, int(n)) for kind, settled, refused, median, n in re.findall(
        r'<tr data-type="(\w+)"><td>[^<]*</td><td class="n">(\d+)</td><td class="n">(\d+)</td>'
        r'<td class="n">([0-9:-]+)</td><td class="n">(\d+)</td></tr>', page)}
    posted = Counter(entry_type for _, _, entry_type in Entry.select(Entry.station_id, Entry.seq, Entry.type).join(
        Posting, on=((Posting.station_id == Entry.station_id) & (Posting.seq == Entry.seq))).where(
        Entry.station_id.in_(["ST-0001", "ST-0002"])).distinct().tuples())
    gaps = {kind: journal_gaps(first).get(kind, []) + journal_gaps(second).get(kind, []) for kind in rows}
    assert sorted(gaps["deposit"]) == [60_000, 120_000, 180_000, 300_000, 360_000]
    assert rows["deposit"] == (posted["deposit"], 0, "3:00", len(gaps["deposit"])) == (8, 0, "3:00", 5)
    assert rows["transfer"] == (posted["transfer"], 2, "-", len(gaps["transfer"])) == (0, 2, "-", 0)
    station_row = re.search(r'<tr id="station-ST-0001">(.*?)</tr>', page, re.S).group(1)
    assert 'href="/dashboard/stations/ST-0001"' in station_row and "2:00" in station_row
    assert '<tr id="station-ST-0002">' in page

    # Each station's page links back to its county; the stations with none have theirs at /dashboard/counties/-.
    station = client.get("/dashboard/stations/ST-0002").get_data(as_text=True)
    assert f'<a href="{link}">来凤县</a>' in station
    assert client.get("/dashboard/counties/-").status_code == 404  # no station without a county yet
    server_db()
    add_station("ST-0003", "Xiaoqiao shop")
    assert 'href="/dashboard/counties/-">全县数字 County figures: 未分县 No county' in client.get(
        "/dashboard/").get_data(as_text=True)
    no_county = client.get("/dashboard/counties/-").get_data(as_text=True)
    assert '<h1 id="county">未分县 No county</h1>' in no_county and '<tr id="station-ST-0003">' in no_county
    assert "ST-0001" not in no_county and "ST-0002" not in no_county
    assert figures_of(no_county, "county-figures")["entries"] == "0"


@pytest.mark.parametrize("county", [
    "咸丰县", "<script>alert(1)</script>", "x" * 5000, "../../etc/passwd", "..%2F..%2Fetc", "%00", "a%0Ab", " 来凤县",
    "来凤县%20", "来凤县/ST-0001", "%E6%9D%A5", "-/x"])
def test_an_unknown_or_impossible_county_is_a_404_page(server, manager, county):
    ServerStation.update(county="来凤县").where(ServerStation.station_id == "ST-0001").execute()
    ServerStation.update(county="咸丰").where(ServerStation.station_id == "ST-0002").execute()
    client = dashboard_app(server).test_client()
    log_in(client)
    response = client.get(f"/dashboard/counties/{county}")
    body = response.get_data(as_text=True)
    assert response.status_code == 404 and response.mimetype == "text/html", county
    assert "找不到 Not found" in body and "<script>alert" not in body
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_a_county_named_like_markup_or_a_path_is_escaped(server, manager):
    hostile = {"ST-0001": '<img src=x onerror="alert(1)">', "ST-0002": "来凤/县 & co"}
    for station_id, county in hostile.items():
        ServerStation.update(county=county).where(ServerStation.station_id == station_id).execute()
    client = dashboard_app(server).test_client()
    log_in(client)
    overview_page = client.get("/dashboard/").get_data(as_text=True)
    links = re.findall(r'<a class="county-link" href="([^"]+)">', overview_page)
    assert len(links) == 2 and "<img" not in overview_page
    for link in links:
        response = client.get(unescape(link))
        page = response.get_data(as_text=True)
        assert response.status_code == 200, link
        assert "<img src=x" not in page and 'onerror="alert' not in page
    page = client.get(unescape(links[0])).get_data(as_text=True)
    assert '<h1 id="county">&lt;img src=x onerror=&#34;alert(1)&#34;&gt;</h1>' in page
    assert "ST-0001" in page and "ST-0002" not in page
    page = client.get(unescape(links[1])).get_data(as_text=True)
    assert "来凤/县 &amp; co" in page and "ST-0002" in page and "ST-0001" not in page


def test_the_county_page_needs_a_login(server, manager):
    ServerStation.update(county="来凤县").where(ServerStation.station_id == "ST-0001").execute()
    client = dashboard_app(server).test_client()
    for path in ("/dashboard/counties/%E6%9D%A5%E5%87%A4%E5%8E%BF", "/dashboard/counties/-",
                 "/dashboard/counties/nowhere"):
        response = client.get(path)
        assert response.status_code == 302 and "/dashboard/login?next=" in response.headers["Location"], path
        assert "ST-0001" not in response.get_data(as_text=True)
