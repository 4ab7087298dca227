"""First boot: `station serve` on an empty folder, its set-up screens in every state, enrollment by QR or typed
code against a real sync server on loopback, every refusal in both languages with nothing written."""

from __future__ import annotations

import logging
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from click.testing import CliRunner
from sync_support import serve_in_thread, server_db, stop_server
from ui_helpers import add_shop_people
from ui_helpers import error_of as escaped_error_of
from werkzeug.test import Client

from station import cli
from station.app import create_app
from station.device_state import EARLIEST_PLAUSIBLE_TIME
from station.protocol.enrollment_qr import CODE_ALPHABET, format_code, make_payload, normalise_code
from station.protocol.times import utc_text
from station.setup_ui import FirstBoot, SetupDispatcher, create_setup_app
from station.sync import EnrollError, enroll_station
from sync_server.admin import add_station, revoke_station
from sync_server.db import EnrollmentCode
from sync_server.service import code_hash


@pytest.fixture
def device(tmp_path):
    return tmp_path / "device"


def make_first_boot(device, clock, **options):
    return FirstBoot(device, clock=clock, **options)


@pytest.fixture
def first_boot(device, clock):
    fb = make_first_boot(device, clock)
    yield fb
    finish(fb)
    if fb.station is not None:
        fb.station.close()


def finish(fb):
    if fb.worker is not None:
        fb.worker.join(timeout=30)
        assert not fb.worker.is_alive()


def client_of(fb, **config):
    app = create_setup_app(fb, TESTING=True, WTF_CSRF_ENABLED=False, SECRET_KEY="test", **config)
    return app.test_client()


@pytest.fixture
def client(first_boot):
    return client_of(first_boot)


def english(client):
    client.post("/setup/lang", data={"lang": "en", "next": "/setup"})


def scan(client, fb, text, server=""):
    """What a scanner does: the payload into the field, then Enter; waits for the bank's answer."""
    response = client.post("/setup/enroll", data={"scan": text, "server": server})
    finish(fb)
    return response


def error_of(html_text):
    """The screen's error message as the person reads it."""
    message = escaped_error_of(html_text)
    return message if message is None else unescape(message)


def page(client, path="/setup"):
    return client.get(path).get_data(as_text=True)


def new_code(station_id="ST-0009", name="Shop 9"):
    server_db()
    return add_station(station_id, name)


def nothing_written(device):
    """The folder is as before the try: at most the screen's session key, no station."""
    return not (device / "config.json").exists() and not (device / "keys/signing.jwk").exists() and not (
        device / "station.db").exists()


# -- the screens --------------------------------------------------------------------------------------------
def test_not_enrolled_screen_has_the_focused_field_and_the_code_pad(client):
    html = page(client)
    assert "未注册" in html
    field = re.search(r"<input[^>]*id=\"scan\"[^>]*>", html).group(0)
    assert "autofocus" in field and "data-scanner" in field and 'inputmode="none"' in field
    keys = re.findall(r'data-key="([^"]+)"', html)
    assert sorted(keys) == sorted([*CODE_ALPHABET, "back", "clear"])
    # No STATION_SERVER_URL: the second field for a typed code's server.
    assert 'id="server"' in html
    english(client)
    assert "Not enrolled" in page(client)


def test_every_other_address_leads_to_the_set_up_screen(client):
    assert client.get("/").location == "/setup"
    assert client.get("/login").location == "/setup"
    assert client.post("/op/withdrawal/start").location == "/setup"
    assert client.get("/health").json == {"station": None, "state": "not_enrolled"}


def test_configured_server_replaces_the_second_field(device, clock, server):
    fb = make_first_boot(device, clock, server_url=server.url)
    html = page(client_of(fb))
    assert 'id="server"' not in html and server.url in html


def test_security_headers_and_csrf(first_boot):
    client = create_setup_app(first_boot, SECRET_KEY="csrf-test").test_client()
    response = client.get("/setup")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    refused = client.post("/setup/enroll", data={"scan": "K7QX-M2PD-9HWT"})
    assert refused.status_code == 400
    assert error_of(refused.get_data(as_text=True)) == "页面打开太久或来源不对，请返回再试一次。"
    assert first_boot.worker is None
    token = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)
    typed = client.post("/setup/enroll", data={"scan": "K7QX-M2PD-9HWT", "csrf_token": token})
    assert typed.status_code == 200 and "服务器地址" in error_of(typed.get_data(as_text=True))


# -- enrollment ---------------------------------------------------------------------------------------------
def test_enroll_by_scanned_qr_shows_station_and_key_then_never_the_code(client, first_boot, server, device,
                                                                          caplog):
    caplog.set_level(logging.DEBUG)
    code = new_code()
    response = scan(client, first_boot, make_payload(server.url, "ST-0009", code) + "\n")
    assert response.location == "/setup"
    st = first_boot.station
    assert st is not None and st.station_id == "ST-0009" and (device / "config.json").exists()
    html = page(client)
    assert 'id="enrolled"' in html and "ST-0009" in html and st.signer.kid in html and "Shop 9" in html
    assert 'id="station-mismatch"' not in html
    for text in (html, caplog.text, page(client, "/setup")):
        assert format_code(code) not in text and normalise_code(code) not in text
    assert client.get("/health").json["state"] == "enrolled"
    # Scanning again does not enroll twice.
    again = scan(client, first_boot, make_payload(server.url, "ST-0009", code))
    assert again.status_code == 200 and "已注册为服务点 ST-0009" in error_of(again.get_data(as_text=True))


def test_enroll_by_code_typed_on_the_pad_with_the_configured_server(device, clock, server):
    code = new_code()
    fb = make_first_boot(device, clock, server_url=server.url)
    client = client_of(fb)
    scan(client, fb, normalise_code(code))
    assert fb.station is not None and fb.station.station_id == "ST-0009"
    fb.station.close()


def test_enroll_by_typed_code_and_typed_server(client, first_boot, server):
    code = new_code()
    scan(client, first_boot, code.lower(), server=server.url + "/")
    assert first_boot.station.config["server"]["url"] == server.url


def test_the_qr_names_another_station_than_the_bank_enrolled(client, first_boot, server):
    code = new_code("ST-0009")
    scan(client, first_boot, make_payload(server.url, "ST-0008", code))
    html = page(client)
    assert 'id="station-mismatch"' in html and "ST-0008" in html


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def plain_web_page(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<html><body>Welcome to the hotel Wi-Fi</body></html>"]


@pytest.fixture
def captive_portal():
    url, server, thread = serve_in_thread(plain_web_page, threads=1)
    yield url
    stop_server(server, thread)


REFUSALS = [
    # (case, zh, en)
    ("unknown", "银行查不到这个注册码", "The bank does not know this code"),
    ("used", "这个注册码已经用过", "This code has already been used"),
    ("expired", "这个注册码已过期", "This code has expired"),
    ("unreachable", "连不上银行的服务器", "Cannot reach the bank's server"),
    ("portal", "不是银行的站点服务器", "it is not the bank's station server"),
    ("newer_qr", "更新的版本", "from a newer release"),
    ("other_qr", "不是服务点注册二维码", "this QR is not a station enrollment QR"),
    ("short_code", "12 个字母和数字", "12 letters and digits"),
    ("bad_server", "服务器地址应", "the server address must look like"),
]


def refusal_input(case, server, tmp_path, clock, captive_portal):
    if case == "unknown":
        return make_payload(server.url, "ST-0009", "K7QX-M2PD-9HWT"), ""
    code = new_code()
    if case == "used":
        enroll_station(tmp_path / "first-device", server.url, code, clock=clock).close()
    elif case == "expired":
        EnrollmentCode.update(expires_at=utc_text(datetime.now(UTC) - timedelta(days=1))).where(
            EnrollmentCode.code_hash == code_hash(code)).execute()
    payload = {
        "unreachable": make_payload(closed_port_url(), "ST-0009", code),
        "portal": make_payload(captive_portal, "ST-0009", code),
        "newer_qr": make_payload(server.url, "ST-0009", code).replace("v=1", "v=2"),
        "other_qr": "stationkit:pay?v=1&code=" + code,
        "short_code": code[:-1],
    }
    if case == "bad_server":
        return code, "sync.bank.example"
    return payload.get(case, make_payload(server.url, "ST-0009", code)), ""


@pytest.mark.parametrize(("case", "zh", "en"), REFUSALS)
def test_every_refusal_in_both_languages_then_the_folder_still_enrolls(case, zh, en, client, first_boot, server,
                                                                       device, tmp_path, clock, captive_portal):
    text, typed_server = refusal_input(case, server, tmp_path, clock, captive_portal)

    def answer():
        response = scan(client, first_boot, text, typed_server)
        # Refused before asking the bank: the answer itself says why; else the screen it leads back to.
        return page(client) if response.status_code == 302 else response.get_data(as_text=True)

    html = answer()
    assert zh in error_of(html), error_of(html)
    assert 'id="not-enrolled"' in html and 'id="scan"' in html
    english(client)
    assert en in error_of(answer() if case in ("newer_qr", "other_qr", "short_code", "bad_server") else page(client))
    assert first_boot.station is None and nothing_written(device)
    # Nothing half-written: a good code enrolls the same folder at once.
    code = new_code("ST-0010", "Shop 10")
    scan(client, first_boot, make_payload(server.url, "ST-0010", code))
    assert first_boot.station is not None and first_boot.station.station_id == "ST-0010"
    assert error_of(page(client)) is None


def test_a_revoked_station_gets_the_revoked_screen(client, first_boot, server, device):
    code = new_code()
    revoke_station("ST-0009")
    scan(client, first_boot, make_payload(server.url, "ST-0009", code))
    html = page(client)
    assert 'id="revoked"' in html and "已被银行停用" in html and "ST-0009" in html
    english(client)
    html = page(client)
    assert "This station has been revoked by the bank" in html and "ST-0009" in html
    assert nothing_written(device) and first_boot.station is None
    assert client.post("/setup/dismiss").location == "/setup"
    assert 'id="not-enrolled"' in page(client) and error_of(page(client)) is None


def test_clock_not_set_refuses_to_enroll_until_network_time(device, clock, server):
    clock.now = datetime(1970, 1, 1, 0, 2, tzinfo=UTC)
    fb = make_first_boot(device, clock)
    client = client_of(fb)
    html = page(client)
    assert 'id="clock-not-set"' in html and "等待网络时间" in html and "1970-01-01" in html
    assert '<meta http-equiv="refresh" content="5">' in html and 'id="scan"' not in html
    code = new_code()
    refused = client.post("/setup/enroll", data={"scan": make_payload(server.url, "ST-0009", code)})
    assert refused.status_code == 200 and fb.worker is None
    english(client)
    assert "Clock not set: waiting for network time" in page(client)
    assert client.get("/health").json["state"] == "clock_not_set"
    # Network time arrives: the same screen now offers enrollment, and the code still works.
    clock.now = EARLIEST_PLAUSIBLE_TIME + timedelta(days=40)
    assert 'id="scan"' in page(client)
    scan(client, fb, make_payload(server.url, "ST-0009", code))
    assert fb.station is not None
    fb.station.close()


def test_enroll_station_itself_refuses_a_clock_before_the_release(device, server):
    code = new_code()
    with pytest.raises(EnrollError) as refused:
        enroll_station(device, server.url, code, clock=lambda: datetime(1970, 1, 1, tzinfo=UTC))
    assert refused.value.reason == "clock_not_set" and nothing_written(device)


def test_enrolling_state_says_with_whom_and_refuses_a_second_scan(client, first_boot, slow_bank, device):
    url, release = slow_bank
    assert client.post("/setup/enroll", data={"scan": make_payload(url, "ST-0009", "K7QX-M2PD-9HWT")}
                       ).location == "/setup"
    html = page(client)
    assert 'id="enrolling"' in html and url in html and "ST-0009" in html
    assert '<meta http-equiv="refresh" content="1">' in html
    assert client.get("/health").json["state"] == "enrolling"
    second = client.post("/setup/enroll", data={"scan": make_payload(url, "ST-0009", "K7QX-M2PD-9HWT")})
    assert second.status_code == 200 and "正在注册" in error_of(second.get_data(as_text=True))
    english(client)
    assert "Enrolling" in page(client)
    release.set()
    finish(first_boot)
    html = page(client)
    assert "The bank refused the enrollment" in error_of(html) and "Try later." in error_of(html)
    assert nothing_written(device)


# -- the swap to the station's screens, and `station serve` ------------------------------------------------
def test_dispatcher_swaps_to_the_station_app_without_a_restart(device, clock, server):
    fb = make_first_boot(device, clock)
    made = []

    def station_app(st):
        made.append(st)
        return create_app({"STATION": st, "SECRET_KEY": "test", "TESTING": True, "WTF_CSRF_ENABLED": False})

    dispatcher = SetupDispatcher(fb, station_app, SECRET_KEY="test", TESTING=True, WTF_CSRF_ENABLED=False)
    browser = Client(dispatcher)
    assert browser.get("/").headers["Location"] == "/setup"
    code = new_code()
    browser.post("/setup/enroll", data={"scan": make_payload(server.url, "ST-0009", code)})
    finish(fb)
    assert made == [fb.station]
    assert 'id="enrolled"' in browser.get("/setup").get_data(as_text=True)
    # Nobody can log in yet: every screen but /health stays the set-up's until the shop's people are added.
    assert browser.get("/").headers["Location"] == "/setup"
    assert browser.get("/health").json["station"] == "ST-0009"
    assert add_shop_people(browser).headers["Location"] == "/"
    assert browser.get("/").headers["Location"] == "/login"
    fb.station.close()


def test_station_serve_enrolls_from_the_screen_then_syncs_in_the_background(device, server, monkeypatch):
    code = new_code()
    served = {}

    def capture(app, host, port):
        browser = Client(app)
        html = browser.get("/setup").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        browser.post("/setup/enroll", data={"scan": make_payload(server.url, "ST-0009", code),
                                            "csrf_token": token})
        finish(app.first_boot)
        served["setup"] = browser.get("/setup").get_data(as_text=True)
        served["before_people"] = browser.get("/").headers.get("Location")
        add_shop_people(browser)
        served["login"] = browser.get("/").headers.get("Location")
        station_app = app.station_app
        served["hooked"] = station_app.extensions.get("sync_now") is not None
        st = station_app.extensions["station"]
        station_app.extensions["sync_now"]()
        deadline = time.monotonic() + 20
        while st.setting("last_sync_at") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        served["synced"] = st.setting("last_sync_at")

    monkeypatch.setattr(cli, "serve_app", capture)
    monkeypatch.setenv("STATION_SERVER_URL", server.url)
    result = CliRunner().invoke(cli.cli, ["serve", "--data-dir", str(device)])
    assert result.exit_code == 0, result.output
    assert "enrollment screen" in result.output and "in the background" in result.output
    assert 'id="enrolled"' in served["setup"] and served["before_people"] == "/setup"
    assert served["login"] == "/login"
    assert served["hooked"] and served["synced"] is not None
