"""systemd integration of ``station serve``: readiness and the watchdog (sd_notify), and waiting for ``/health``.

Under ``station.service`` (``Type=notify``, ``WatchdogSec=``) systemd passes ``$NOTIFY_SOCKET`` and
``$WATCHDOG_USEC``. :func:`start_watchdog` starts one daemon thread that asks the station's own ``/health`` (served
by waitress, it reads the journal's head from the database) until it answers, then sends ``READY=1``; from then on
it sends ``WATCHDOG=1`` after each check that passes, four times per watchdog period. A station whose database or
HTTP server hangs stops answering, misses the watchdog, and systemd kills and restarts it. Readiness after the
first answer is also what orders the kiosk (``After=station.service``) behind a station that really serves.
Outside systemd (``$NOTIFY_SOCKET`` unset) nothing is started.

sd_notify(3) is one datagram on a unix socket; a library for it would be more than these few lines.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Mapping

log = logging.getLogger(__name__)

# No proxy for the station's own loopback address, whatever http_proxy the device's environment carries.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (e.g. ``"READY=1"``) to systemd; False, doing nothing, when not run by systemd."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket address
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode("utf-8"))
    return True


def station_answers(url: str, timeout: float) -> bool:
    """True when ``url`` (the station's ``/health``) answers 200 within ``timeout`` seconds."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError, http.client.HTTPException):  # refused, timed out, not HTTP, a malformed URL
        return False


def wait_until_answers(url: str, timeout: float, *, poll: float = 0.5) -> bool:
    """Ask ``url`` every ``poll`` seconds until it answers (True) or ``timeout`` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if station_answers(url, timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
            return True
        if time.monotonic() + poll > deadline:
            return False
        time.sleep(poll)


def health_url(host: str, port: int) -> str:
    """The ``/health`` URL of a station serving on ``host``:``port``, asked from the same device."""
    local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in local:
        local = f"[{local}]"
    return f"http://{local}:{port}/health"


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between watchdog checks (a quarter of ``$WATCHDOG_USEC``), or None when no watchdog is set for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 4_000_000


class Notifier(threading.Thread):
    """The thread that tells systemd the station is ready, then keeps feeding the watchdog while it answers."""

    def __init__(self, url: str, environ: Mapping[str, str]):
        super().__init__(name="systemd-notify", daemon=True)
        self.url = url
        self.environ = dict(environ)
        self.interval = watchdog_interval(environ)
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not station_answers(self.url, timeout=5):
                if self.stopped.wait(0.5):
                    return
            notify(f"READY=1\nSTATUS=Serving on {self.url.removesuffix('/health')}/", self.environ)
            if self.interval is None:
                return
            while not self.stopped.wait(self.interval):
                if station_answers(self.url, timeout=min(self.interval, 10)):
                    notify("WATCHDOG=1", self.environ)
        except OSError as exc:  # systemd's socket went away: nobody is listening any more
            log.warning("systemd notification failed, stopping them: %s", exc)

    def stop(self, timeout: float | None = None) -> None:
        """Stop sending (tests; the serving process just exits)."""
        self.stopped.set()
        self.join(timeout)


def start_watchdog(url: str, environ: Mapping[str, str] = os.environ) -> Notifier | None:
    """Under systemd, start the :class:`Notifier` for the station's ``/health`` at ``url`` and return it; do
    nothing and return None when ``$NOTIFY_SOCKET`` is unset."""
    if not environ.get("NOTIFY_SOCKET"):
        return None
    notifier = Notifier(url, environ)
    notifier.start()
    return notifier
