"""A live station app under waitress on 127.0.0.1 (ephemeral port), and Debian's Chromium via Playwright."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from playwright.sync_api import sync_playwright
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


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, once per test module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser):
    """A page at the touchscreen's size that collects script errors and CSP violations (``page.console_errors``)."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(5000)
    # Script errors and Content-Security-Policy violations both land on the console as errors.
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return page


def check_screen(page):
    """No horizontal scroll at 800x480, every visible touch target at least 48 x 48 px, and (these screens are
    short) no vertical scroll either: nothing the agent must tap hides below the fold."""
    page.wait_for_load_state("load")
    assert page.console_errors == [], page.url
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"], page.url
    assert page.evaluate("document.documentElement.scrollHeight") <= VIEWPORT["height"], page.url
    small = page.evaluate(
        """() => Array.from(document.querySelectorAll(
               'a, button, label.choice, input:not([type=hidden]):not([type=radio]), textarea'))
             .filter(el => el.offsetParent !== null)
             .map(el => [el.id || el.textContent.trim().slice(0, 20), el.getBoundingClientRect()])
             .filter(([, r]) => r.width < 48 || r.height < 48)
             .map(([name, r]) => `${name}: ${Math.round(r.width)}x${Math.round(r.height)}`)"""
    )
    assert small == [], f"{page.url}: {small}"


def tap_pin(page, field, digits):
    """Tap the PIN field ``field`` (the pad types into the field tapped last), then ``digits`` on the pad."""
    page.click(f"#{field}")
    for digit in digits:
        page.click(f'.keypad [data-key="{digit}"]')
