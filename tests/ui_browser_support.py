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
        server.close()
        thread.join(timeout=5)
