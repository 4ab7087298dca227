"""A live station app under waitress on 127.0.0.1 (ephemeral port), and Debian's Chromium via Playwright."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from playwright.sync_api import sync_playwright
from ui_helpers import AGENT_PIN
from waitress_support import serve_in_thread, stop_server

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
    url, server, thread = serve_in_thread(app, threads=2)
    try:
        yield url
    finally:
        stop_server(server, thread)


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
    # 15 s: on a 2-core machine shared with other work (CI runs beside whatever else the host does), a POST that
    # renders the next screen has taken more than 5 s. A wait that succeeds is no slower for it.
    page.set_default_timeout(15_000)
    # Script errors and Content-Security-Policy violations both land on the console as errors.
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    return page


#: What the agent taps: every visible one must lie inside the screen (or inside a scrolling list that does).
CONTROLS = "a, button, input:not([type=hidden]), textarea, select, label.choice"
#: What must be at least 48 x 48 px (a radio button is tapped through its label.choice).
TOUCH_TARGETS = "a, button, label.choice, select, input:not([type=hidden]):not([type=radio]), textarea"

# Run in the page: the screen's overflow, controls outside the viewport (a control inside a scrolling box, such as
# the receipts list, counts when that box lies inside it), and touch targets under 48 x 48 px, each named with its
# box ("x,y wxh") so a failure says what moved where.
_FIT_SCRIPT = """([controls, targets, width, height]) => {
  const problems = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > width) problems.push(`page scrollWidth ${doc.scrollWidth} > ${width}`);
  if (doc.scrollHeight > height) problems.push(`page scrollHeight ${doc.scrollHeight} > ${height}`);
  const visible = el => el.offsetParent !== null || getComputedStyle(el).position === "fixed";
  const name = el => {
    const text = (el.id ? "#" + el.id + " " : "") + (el.innerText || el.value || el.getAttribute("aria-label") || "");
    return `<${el.tagName.toLowerCase()}> ${text.trim().replace(/\\s+/g, " ").slice(0, 30)}`;
  };
  const box = r => `${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}x${Math.round(r.height)}`;
  const scroller = el => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      const style = getComputedStyle(up);
      if (/(auto|scroll)/.test(style.overflowY + style.overflowX)) return up;
    }
    return null;
  };
  for (const el of document.querySelectorAll(controls)) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const holder = scroller(el);
    const shown = holder ? holder.getBoundingClientRect() : r;
    if (shown.left < 0 || shown.top < 0 || shown.right > width + 0.5 || shown.bottom > height + 0.5) {
      const where = holder ? ` in a scrolling box at ${box(shown)}` : "";
      problems.push(`outside the screen: ${name(el)} at ${box(r)}${where}`);
    }
  }
  for (const el of document.querySelectorAll(targets)) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    if (r.width < 48 || r.height < 48) problems.push(`under 48x48: ${name(el)} at ${box(r)}`);
  }
  return problems;
}"""


def screen_problems(page) -> list[str]:
    """What breaks the 800x480 rule on the page as it stands: horizontal or vertical scroll, a visible control not
    entirely on the screen, a touch target under 48 x 48 px (each with its box)."""
    return page.evaluate(_FIT_SCRIPT, [CONTROLS, TOUCH_TARGETS, VIEWPORT["width"], VIEWPORT["height"]])


def check_screen(page, where: str = ""):
    """No horizontal scroll at 800x480, no vertical scroll either (these screens are short: nothing the agent must
    tap hides below the fold), every visible control inside the screen, every touch target at least 48 x 48 px,
    and no script error. ``where`` names the screen in the failure message (the URL is always given)."""
    page.wait_for_load_state("load")
    label = f"{where} ({page.url})" if where else page.url
    assert page.console_errors == [], f"{label}: {page.console_errors}"
    problems = screen_problems(page)
    assert problems == [], f"{label} does not fit 800x480:\n  " + "\n  ".join(problems)


def tap_pin(page, field, digits):
    """Tap the PIN field ``field`` (the pad types into the field tapped last), then ``digits`` on the pad."""
    page.click(f"#{field}")
    for digit in digits:
        page.click(f'.keypad [data-key="{digit}"]')


def tap_keys(page, keys, pad: str = ".keypad"):
    """Tap each of ``keys`` (digits, X, ...) on the on-screen pad ``pad``, as a finger would."""
    for key in keys:
        page.click(f'{pad} [data-key="{key}"]')


def log_in(page, base: str, lang: str = "zh", agent_id: str = "A01", pin: str | None = None):
    """Log agent ``agent_id`` in from the login screen by taps; ``lang="en"`` then switches the UI to English (once:
    the choice outlives a logout)."""
    page.goto(base + "/login")
    page.click(f"#agent-{agent_id}")
    page.wait_for_selector("#pin")
    # The pad answers taps once its script has run: on a loaded machine the field can be there before it (a tap
    # then lost, the PIN short, and the login refused).
    page.wait_for_load_state("load")
    digits = pin or AGENT_PIN
    tap_keys(page, digits)
    page.wait_for_function(f"document.querySelector('#pin').value.length === {len(digits)}")
    page.click("#login")
    # The PIN's scrypt check and the session record (a write) take longer than the 5 s default on a loaded machine
    # (seen once in CI with two workers and Chromium busy).
    page.wait_for_url(base + "/home", timeout=15_000)
    if lang == "en" and page.get_attribute("html", "lang") != "en":
        page.click("text=English")
        page.wait_for_selector("text=中文")
