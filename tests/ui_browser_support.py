"""A live station app under waitress on 127.0.0.1 (ephemeral port), and Debian's Chromium via Playwright."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from waitress.server import create_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 800, "height": 480}


@contextmanager
def serving(app):
    """Yield the base URL of ``app`` served by waitress in a thread; stop it afterwards."""
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.trigger.pull_trigger(lambda: close_all(server))
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
        assert not thread.is_alive(), "waitress did not stop"


def close_all(server) -> None:
    """Run in waitress's own loop thread: close the browser's keep-alive connections, then the server itself.

    Closing them from here (not the test thread) leaves no socket for the loop to poll after it is closed and
    none to be garbage-collected unclosed later (a ResourceWarning, an error under filterwarnings=error).
    """
    for channel in list(server._map.values()):
        if channel is not server and channel is not server.trigger:
            channel.close()
    server.close()
