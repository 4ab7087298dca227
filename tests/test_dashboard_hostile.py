"""The branch dashboard against what a hostile visitor sends, on SQLite and PostgreSQL: every answer a page of 4xx
(never a 500), no login by a name PostgreSQL cannot even compare, a CSRF token on every POST, and the bank's own
records (a station's name, county, village) shown as text, never as markup."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from test_dashboard import PASSWORD, csrf_token, dashboard_app, log_in, manager  # noqa: F401 (a fixture)

from sync_server.db import Station as ServerStation

pytestmark = pytest.mark.usefixtures("manager")  # the bank user wang


def logged_in(server):
    client = dashboard_app(server).test_client()
    assert log_in(client).status_code == 302
    return client


#: Query strings and station ids a visitor may type, each with the status its page answers.
HOSTILE_PATHS = [
    ("/dashboard/stations/ST-0001/peak-chart?weeks=abc", 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=-1", 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=1.5", 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=10**30", 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=4%00", 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=%204", 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=" + "9" * 30, 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=" + "1" * 5000, 400),  # past int()'s 4300 digits
    ("/dashboard/stations/ST-0001/peak-chart?weeks=%EF%BC%94", 400),  # a full-width 4
    ("/dashboard/stations/ST-0001/peak-chart?weeks=", 400),
    ("/dashboard/stations/ST-0001/peak-chart.svg?weeks=0", 400),
    ("/dashboard/stations/ST-0001/peak-chart?weeks=4&weeks=999", 200),  # the first one counts
    ("/dashboard/stations/ST-9999", 404),
    ("/dashboard/stations/ST-9999/peak-chart?weeks=4", 404),
    ("/dashboard/stations/ST-0001%00", 404),  # NUL: PostgreSQL refuses it in a query
    ("/dashboard/stations/%00/peak-chart.svg", 404),
    ("/dashboard/stations/" + "S" * 5000, 404),
    ("/dashboard/stations/%E2%80%AEST-0001", 404),  # a right-to-left override
    ("/dashboard/stations/..%2F..%2Fetc%2Fpasswd", 404),
    ("/dashboard/stations/%2e%2e", 404),
    ("/dashboard/stations/ST-0001'%20OR%20'1'='1", 404),
    ("/dashboard/counties/来凤县", 404),
    ("/dashboard/?county=%00&station=..%2F", 200),  # the overview takes no parameter: ignored
]


@pytest.mark.parametrize("path, status", HOSTILE_PATHS)
def test_hostile_paths_and_parameters_are_4xx_pages(server, path, status):
    response = logged_in(server).get(path)
    assert response.status_code == status, (path, response.get_data(as_text=True)[:300])
    if status != 200:
        assert response.mimetype == "text/html", path
        assert "default-src 'none'" in response.headers["Content-Security-Policy"], path
        body = response.get_data(as_text=True)
        assert "Traceback" not in body and "\x00" not in body, path


@pytest.mark.parametrize("name, password, next_page", [
    ("wang\x00", PASSWORD, "/dashboard/"),  # NUL: PostgreSQL refuses it in a query
    ("\x00", "\x00", "/dashboard/"),
    ("wang\u202e", PASSWORD, "/dashboard/"),
    ("wang", PASSWORD + "\x00", "/dashboard/"),
    ("w" * 100_000, "p" * 100_000, "/dashboard/"),
    ("' OR '1'='1", "' OR '1'='1", "/dashboard/"),
])
def test_hostile_logins_get_the_one_message(server, name, password, next_page):
    client = dashboard_app(server).test_client()
    response = client.post("/dashboard/login", data={"name": name, "password": password, "next": next_page,
                                                     "csrf_token": csrf_token(client)})
    assert response.status_code == 401, response.get_data(as_text=True)[:300]
    assert "Wrong name or password." in response.get_data(as_text=True)
    assert client.get("/dashboard/").status_code == 302


@pytest.mark.parametrize("next_page", ["https://evil.example/", "//evil.example/dashboard/", "/dashboard/\\evil",
                                       "/dashboard/\r\nSet-Cookie: x=1", "/dashboard/站点", "/dashboard/%0d%0aX: 1",
                                       "javascript:alert(1)", "/dashboard/" + "x" * 10_000])
def test_after_the_login_the_browser_stays_on_the_dashboard(server, next_page):
    client = dashboard_app(server).test_client()
    response = client.post("/dashboard/login", data={"name": "wang", "password": PASSWORD, "next": next_page,
                                                     "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert urlsplit(location)[:2] == ("", "") and location.startswith("/dashboard/"), location
    assert "\r" not in location and "\n" not in location and "evil" not in location, location
    # The login page echoes ?next= inside an attribute: escaped.
    page = client.get("/dashboard/login?next=/dashboard/%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>" not in page.get_data(as_text=True)


def test_every_post_needs_its_csrf_token_and_logout_ends_the_session(server):
    client = logged_in(server)
    page = client.get("/dashboard/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}, {"csrf_token": token[:-2] + "xx"}):
        response = client.post("/dashboard/logout", data=data)
        assert response.status_code == 400 and "Form expired" in response.get_data(as_text=True), data
        assert client.get("/dashboard/").status_code == 200, data  # still logged in: the forged POST did nothing
    # A token from another session is no token here.
    other = dashboard_app(server).test_client()
    assert other.post("/dashboard/login", data={"name": "wang", "password": PASSWORD,
                                                "csrf_token": token}).status_code == 400
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard/").status_code == 302
    assert client.get("/dashboard/stations/ST-0001/peak-chart.svg").status_code == 401


def test_the_banks_records_are_shown_as_text(server):
    ServerStation.update(name='<script>alert("name")</script>', county="<b>县</b>",
                         village="<img src=x onerror=alert(1)>").where(
        ServerStation.station_id == "ST-0001").execute()
    client = logged_in(server)
    for path in ("/dashboard/", "/dashboard/stations/ST-0001", "/dashboard/stations/ST-0001/peak-chart?weeks=4",
                 "/dashboard/stations/ST-0001/peak-chart.svg?weeks=4"):
        body = client.get(path).get_data(as_text=True)
        assert "<script>" not in body and "<img" not in body and "<b>县" not in body, path
        assert "&lt;script&gt;" in body or "&lt;b&gt;" in body, path


@pytest.mark.parametrize("method, path", [
    ("PUT", "/dashboard/"), ("DELETE", "/dashboard/logout"), ("PATCH", "/dashboard/login"), ("OPTIONS", "/dashboard/"),
    ("HEAD", "/dashboard/stations/ST-0001"), ("POST", "/dashboard/stations/ST-0001"), ("GET", "/dashboard/logout")])
def test_other_methods_are_4xx_or_harmless(server, method, path):
    client = logged_in(server)
    response = client.open(path, method=method, data={"csrf_token": "x"})
    assert response.status_code in (200, 400, 401, 405), (method, path, response.status_code)
    assert client.get("/dashboard/").status_code == 200  # none of them logged out or broke the session


@pytest.mark.parametrize("cookie", ["garbage", "", "e30.AAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAA", "\x00" * 10, "x" * 4000])
def test_a_forged_or_broken_session_cookie_is_a_login_page(server, cookie):
    client = dashboard_app(server).test_client()
    client.set_cookie("dashboard_session", cookie, path="/dashboard")
    response = client.get("/dashboard/stations/ST-0001")
    assert response.status_code == 302 and "/dashboard/login" in response.headers["Location"]
    assert client.get("/dashboard/stations/ST-0001/peak-chart.svg").status_code == 401
