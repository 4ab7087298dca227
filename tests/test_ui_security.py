"""CSRF, security headers, what the session cookie holds, logs, and `station serve`."""

from __future__ import annotations

import logging
import re

from click.testing import CliRunner
from ui_helpers import CUSTOMER_PIN, card_customer, login, withdraw
from werkzeug.test import Client

from station import cli
from station.app import create_app
from station.db import Operation


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_post_without_csrf_token_is_refused(station):
    client = create_app({"STATION": station, "SECRET_KEY": "csrf-test"}).test_client()
    response = client.post("/login", data={"agent_id": "A01", "pin": "1357"})
    assert response.status_code == 400
    assert "页面打开太久或来源不对，请返回再试一次。" in response.get_data(as_text=True)
    assert client.get("/home").location == "/login"


def test_post_with_the_form_token_works(station):
    client = create_app({"STATION": station, "SECRET_KEY": "csrf-test"}).test_client()
    token = csrf_token(client.get("/login?agent_id=A01").get_data(as_text=True))
    response = client.post("/login", data={"agent_id": "A01", "pin": "1357", "csrf_token": token})
    assert response.location == "/home"
    bad = client.post("/op/withdrawal/start", data={"csrf_token": "forged"})
    assert bad.status_code == 400


def test_security_headers(ui_client):
    response = ui_client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    # Nothing the page loads or links comes from elsewhere (a CDN or any other host). The page's own random
    # tokens may spell anything, "cdn" included: only the addresses are looked at.
    addresses = re.findall(r"""(?:src|href|action)\s*=\s*["']([^"']*)""", response.get_data(as_text=True), re.I)
    assert addresses and all(not re.match(r"(?i)([a-z][a-z0-9+.-]*:|//)", address) or address.startswith("data:")
                             for address in addresses), addresses
    assert not any("cdn" in address.lower() for address in addresses)
    assert "HttpOnly" in response.headers.get("Set-Cookie", "HttpOnly")


def test_templates_autoescape_typed_values(ui_client, open_drawer):
    login(ui_client)
    ui_client.post("/op/withdrawal/start")
    page = ui_client.post("/op/withdrawal/customer", data={"number": '"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in page.get_data(as_text=True)


def test_no_pin_or_card_number_in_logs_or_session(ui_client, ui_app, open_drawer, caplog):
    # INFO, as `station serve` logs: peewee's DEBUG log prints query parameters, card numbers included.
    caplog.set_level(logging.INFO)
    customer = card_customer()
    login(ui_client)
    withdraw(ui_client, customer, "100")
    assert Operation.select().count() == 1
    with ui_client.session_transaction() as session:
        stored = repr(dict(session))
    for secret in (customer.card_number, CUSTOMER_PIN, "1357"):
        assert secret not in caplog.text
        assert secret not in stored


def test_default_secret_key_is_per_device_and_private(station):
    app = create_app({"STATION": station})
    key_file = station.data_dir / "keys/ui_session.key"
    assert app.secret_key == key_file.read_text().strip() and len(app.secret_key) == 64
    assert key_file.stat().st_mode & 0o077 == 0
    assert create_app({"STATION": station}).secret_key == app.secret_key


def test_station_serve_binds_to_loopback_by_default(station, monkeypatch):
    served = {}
    monkeypatch.setattr(cli, "serve_app", lambda app, host, port: served.update(app=app, host=host, port=port))
    result = CliRunner().invoke(cli.cli, ["serve", "--data-dir", str(station.data_dir)])
    assert result.exit_code == 0, result.output
    assert served["host"] == "127.0.0.1" and served["port"] == 8080
    assert served["app"].extensions["station"].station_id == "ST-0001"
    result = CliRunner().invoke(cli.cli, ["serve", "--data-dir", str(station.data_dir), "--port", "9090",
                                          "--host", "0.0.0.0"])
    assert served["port"] == 9090 and served["host"] == "0.0.0.0"
    assert logging.getLogger("peewee").getEffectiveLevel() >= logging.INFO


def test_station_serve_on_an_empty_data_dir_shows_the_enrollment_screen(tmp_path, monkeypatch):
    served = {}
    monkeypatch.setattr(cli, "serve_app", lambda app, host, port: served.update(app=app, host=host, port=port))
    result = CliRunner().invoke(cli.cli, ["serve", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 0, result.output
    assert "No station in" in result.output and "enrollment screen" in result.output
    client = Client(served["app"])
    assert client.get("/").location == "/setup"
    assert 'id="not-enrolled"' in client.get("/setup").get_data(as_text=True)
    # Only the screen's session key was written: nothing of a station.
    assert sorted(p.name for p in (tmp_path / "none").rglob("*")) == ["keys", "ui_session.key"]


def test_station_serve_refuses_a_damaged_database(station, monkeypatch):
    monkeypatch.setattr(cli, "serve_app", lambda app, host, port: None)
    station.close()
    (station.data_dir / "station.db").write_bytes(b"not a database" * 100)
    result = CliRunner().invoke(cli.cli, ["serve", "--data-dir", str(station.data_dir)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output


def test_the_session_cookie_is_samesite_strict_and_httponly(ui_client):
    # Flask's own default (None) must not win over the station's Strict.
    response = ui_client.post("/lang", data={"lang": "en", "next": "/login"})
    cookie = response.headers["Set-Cookie"]
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie


# -- the agent session is bound to the station: a copied cookie dies with the session ----------------------------
def session_cookie(client) -> str:
    return client.get_cookie("session").value


def replayed(ui_app, cookie: str):
    """A new browser (no cookie of its own) that presents ``cookie``, as someone who copied it would."""
    other = ui_app.test_client()
    other.set_cookie("session", cookie)
    return other


def test_a_copied_cookie_stops_working_at_logout(ui_app, ui_client, open_drawer):
    login(ui_client)
    copied = session_cookie(ui_client)
    assert replayed(ui_app, copied).get("/home").status_code == 200  # a bearer token while the session lasts
    ui_client.post("/logout")
    assert ui_client.get("/home").location == "/login"
    thief = replayed(ui_app, copied)
    assert thief.get("/home").location == "/login"
    assert thief.post("/op/withdrawal/start").location == "/login"
    assert Operation.select().count() == 0


def test_a_copied_cookie_stops_working_after_an_idle_logout(ui_app, ui_client, open_drawer, clock):
    login(ui_client)
    ui_client.get("/home")
    copied = session_cookie(ui_client)
    clock.advance(seconds=open_drawer.policy["agent_idle_seconds"] + 1)
    assert ui_client.get("/home").location == "/login?idle=1"
    # The copy was taken later than the last request the station saw: its own idle time has not run out, but the
    # session it names has ended at the station.
    clock.advance(seconds=-open_drawer.policy["agent_idle_seconds"] + 30)
    assert replayed(ui_app, copied).get("/home").location == "/login"


def test_a_lockout_ends_the_agents_sessions(ui_app, ui_client, open_drawer):
    login(ui_client)
    assert ui_client.get("/home").status_code == 200
    for _ in range(open_drawer.policy["agent_pin_tries"]):
        replayed(ui_app, "").post("/login", data={"agent_id": "A01", "pin": "0000"})
    assert ui_client.get("/home").location == "/login"


def test_a_forged_session_id_is_refused(ui_app, ui_client, open_drawer):
    """The cookie is signed, so only the app can write one; still, another agent's session id, or one of the wrong
    type, is no session."""
    supervisor = ui_app.test_client()
    login(supervisor, "S01", "2468")
    with supervisor.session_transaction() as cookie:
        supervisors_sid = cookie["agent"]["sid"]
    for sid in (supervisors_sid, ["not", "a", "string"], None):
        login(ui_client)
        with ui_client.session_transaction() as cookie:
            cookie["agent"] = {**cookie["agent"], "sid": sid}
        assert ui_client.get("/home").location == "/login"
    assert supervisor.get("/home").status_code == 200
