"""station/systemd.py: `station serve` tells systemd it is ready once /health answers and feeds the watchdog only
while it keeps answering; `station wait-ready` (the kiosk's ExecStartPre) waits for /health."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid

import pytest
from click.testing import CliRunner
from flask import Flask
from ui_browser_support import serving
from waitress_support import serve_in_thread, stop_server

from station import cli as station_cli
from station import systemd


@pytest.fixture
def notify_socket():
    """systemd's side: an abstract datagram socket, given to the station as ``@name`` (as systemd does)."""
    name = f"station-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield "@" + name, sock
    sock.close()


def received(sock: socket.socket, seconds: float) -> list[str]:
    """Every datagram that arrives within ``seconds``."""
    messages = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return messages


def next_message(sock: socket.socket, timeout: float = 10) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_notify_sends_one_datagram_to_an_abstract_or_a_path_socket(notify_socket):
    address, sock = notify_socket
    assert systemd.notify("READY=1", {"NOTIFY_SOCKET": address}) is True
    assert next_message(sock) == "READY=1"
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        path = os.path.join(folder, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listening:
            listening.bind(path)
            assert systemd.notify("WATCHDOG=1", {"NOTIFY_SOCKET": path}) is True
            assert next_message(listening) == "WATCHDOG=1"


def test_outside_systemd_nothing_is_sent_or_started():
    before = threading.active_count()
    assert systemd.notify("READY=1", {}) is False
    assert systemd.start_watchdog("http://127.0.0.1:9/health", {}) is None
    assert threading.active_count() == before


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 15.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_a_quarter_of_the_period_and_only_for_this_process(environ, interval):
    assert systemd.watchdog_interval(environ) == interval


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8080, "http://127.0.0.1:8080/health"),
        ("0.0.0.0", 8000, "http://127.0.0.1:8000/health"),
        ("::", 8080, "http://[::1]:8080/health"),
        ("::1", 8080, "http://[::1]:8080/health"),
    ],
)
def test_health_url_is_asked_on_the_device_itself(host, port, url):
    assert systemd.health_url(host, port) == url


def test_serve_is_ready_once_health_answers_and_feeds_the_watchdog_only_while_it_does(
    station, notify_socket, monkeypatch
):
    address, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # checks every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    port = free_port()
    seen = {}

    def serve_for_a_while(app, host, port):
        # Nothing is sent before the station answers.
        seen["before_serving"] = received(sock, 0.5)
        assert host == "127.0.0.1"  # serve's default, where the helper listens too
        _, server, thread = serve_in_thread(app, threads=2, port=port)
        seen["ready"] = next_message(sock)
        seen["fed"] = [next_message(sock) for _ in range(3)]
        stop_server(server, thread)
        received(sock, 0.3)  # a check that began before the server stopped
        seen["after_stop"] = received(sock, 0.6)

    monkeypatch.setattr(station_cli, "serve_app", serve_for_a_while)
    try:
        result = CliRunner().invoke(station_cli.cli, ["serve", "--data-dir", str(station.data_dir),
                                                      "--port", str(port)])
    finally:
        for thread in threading.enumerate():
            if isinstance(thread, systemd.Notifier):
                thread.stop(timeout=10)
    assert result.exit_code == 0, result.output
    assert seen["before_serving"] == []
    assert seen["ready"] == f"READY=1\nSTATUS=Serving on http://127.0.0.1:{port}/"
    assert seen["fed"] == ["WATCHDOG=1"] * 3
    assert seen["after_stop"] == []  # no answer, no watchdog: systemd restarts the station


def test_only_a_200_from_health_counts_as_answering():
    app = Flask(__name__)
    app.add_url_rule("/health", "health", lambda: ("database locked", 503))
    app.add_url_rule("/ok", "ok", lambda: "ok")
    with serving(app) as base:
        assert systemd.station_answers(f"{base}/ok", timeout=5) is True
        assert systemd.station_answers(f"{base}/health", timeout=5) is False
    assert systemd.station_answers(f"http://127.0.0.1:{free_port()}/health", timeout=1) is False


def test_wait_ready_returns_once_the_station_answers(ui_app):
    with serving(ui_app) as base:
        result = CliRunner().invoke(station_cli.cli, ["wait-ready", "--url", f"{base}/health", "--timeout", "10"])
    assert result.exit_code == 0, result.output
    assert result.output == f"The station answers at {base}/health.\n"


def test_wait_ready_gives_up_after_the_timeout():
    url = f"http://127.0.0.1:{free_port()}/health"
    started = time.monotonic()
    result = CliRunner().invoke(station_cli.cli, ["wait-ready", "--url", url, "--timeout", "1"])
    assert result.exit_code == 1
    assert f"The station did not answer at {url} within 1 s." in result.output
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://127.0.0.1/health"], "give an http:// or https:// URL"),
        (["--url", "127.0.0.1:8080/health"], "give an http:// or https:// URL"),
        (["--timeout", "nan"], "give a number of seconds"),
        (["--timeout", "inf"], "give a number of seconds"),
        (["--timeout", "-1"], "-1.0 is not in the range x>=0"),
        (["--timeout", "soon"], "'soon' is not a valid float"),
    ],
)
def test_wait_ready_refuses_bad_options(args, message):
    result = CliRunner().invoke(station_cli.cli, ["wait-ready", *args])
    assert result.exit_code == 2
    assert message in result.output
