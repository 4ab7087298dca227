"""Hypothesis over every POST form of the station's touchscreen UI, as a logged-in agent, with CSRF protection on.

The forms are found, not listed by hand: every POST rule of the app's ``url_map`` must have a target below, and
every step of every operation flow (``station.ui.operations.FLOWS``, and a bill paid from the account) must too,
so a new form fails the coverage test until it is fuzzed. For each target the test walks to the screen with valid
input, reads the form's fields from the page (inputs, hidden ones, selects, buttons, textareas), and posts them
with hostile values: arbitrary unicode with control characters, huge text, negative, non-numeric and full-width
numbers, missing fields, extra fields, a wrong or missing CSRF token.

After each post: no 500 and no traceback; nothing half-written (the journal's chain and semantics verify, and the
operation and business-day rows, the drawer's cash included, say what their entries say:
``station.journal_rows.row_problems``, as ``station verify-journal`` checks them); no control character in any
text the station stored (columns, JSON settings, journal payloads) or sent to the printer.

Figures: ``{"fault": "ui form fuzz", "cases": N, "server_errors": 0}`` in
``$RELIABILITY_REPORT_DIR/test_ui_forms_fuzz.json``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlparse

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn
from ui_helpers import AGENT_PIN, CUSTOMER_PIN, ID_NUMBER, customer_with_payee

from station import business_day
from station.journal import audit_journal
from station.journal_rows import row_problems
from station.protocol.times import utc_text
from station.protocol.tokens import unverified_payload
from station.receipt_layout import KANJI_OFF, KANJI_ON
from station.sync import SyncOutcome
from station.ui.operations import FLOWS

from .fuzz_support import fuzz_settings, write_report

pytestmark = pytest.mark.reliability

figures = {"fault": "ui form fuzz", "cases": 0, "server_errors": 0}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    write_report(__name__, figures)


# -- the forms on a page ------------------------------------------------------------------------------------
class _Forms(HTMLParser):
    """Every POST form of a page: its action and, per field name, the values the page offers for it."""

    def __init__(self, page_path: str):
        super().__init__()
        self.page_path = page_path
        self.forms: list[tuple[str, dict[str, list[str]]]] = []
        self._fields: dict[str, list[str]] | None = None
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and (attrs.get("method") or "get").lower() == "post":
            self._fields = {}
            self.forms.append((urlparse(attrs.get("action") or self.page_path).path, self._fields))
        elif self._fields is not None and tag in ("input", "button", "textarea", "select") and attrs.get("name"):
            self._fields.setdefault(attrs["name"], [])
            if attrs.get("value") is not None:
                self._fields[attrs["name"]].append(attrs["value"])
            if tag == "select":
                self._select = attrs["name"]
        elif tag == "option" and self._fields is not None and self._select and attrs.get("value") is not None:
            self._fields[self._select].append(attrs["value"])

    def handle_endtag(self, tag):
        if tag == "form":
            self._fields = None
        elif tag == "select":
            self._select = None


def form_fields(html: str, page_path: str, action: str) -> dict[str, list[str]]:
    """The fields of the page's POST forms that submit to ``action``, with the values the page offers."""
    parser = _Forms(page_path)
    parser.feed(html)
    fields: dict[str, list[str]] = {}
    for form_action, form in parser.forms:
        if form_action == action:
            for name, values in form.items():
                fields.setdefault(name, []).extend(values)
    return fields


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# -- walking to a screen with valid input -------------------------------------------------------------------
NEW_PAYEE = "622200999999999" + luhn.calc_check_digit("622200999999999")


def valid_input(kind: str, step: str, target: str) -> dict:
    """What a careful agent types at ``step`` of a ``kind`` on the way to ``target``."""
    customer, payee = customer_with_payee()
    number = {"id_kind": "card", "number": customer.card_number} if customer.card_number else \
        {"id_kind": "passbook", "number": customer.passbook_number}
    # A new payee brings the fraud warning up (the screen to fuzz); a known one passes it.
    account, name = (NEW_PAYEE, "王五") if target == "warning" else (payee.account, payee.name)
    amounts = {"withdrawal": "600", "deposit": "500", "transfer": "500", "bill_payment": "50"}
    return {"customer": number, "payee": {"payee_account": account, "payee_name": name},
            "amount": {"amount": amounts.get(kind, "500")}, "identity": {"id_number": ID_NUMBER},
            "warning": {"decision": "send"}, "confirm": {"funding": "account"} if kind == "bill_payment" else {},
            "biller": {"biller": "ELEC-SGCC"}, "reference": {"reference": "3300112233"},
            "product": {"product": WMP_CODE}, "statement": {"read": "yes"},
            "pin": {"pin": CUSTOMER_PIN}}[step]


class Counter:
    """A logged-in agent's browser: posts carry the session's CSRF token unless the test says otherwise."""

    def __init__(self, client):
        self.client = client
        self.token = ""

    def page(self, path: str) -> str:
        response = self.client.get(path, follow_redirects=True)
        assert response.status_code < 500
        html = response.get_data(as_text=True)
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        self.token = found.group(1) if found else self.token
        return html

    def post(self, path: str, data: dict, **kwargs):
        return self.client.post(path, data={"csrf_token": self.token, **data}, **kwargs)

    def log_in(self) -> None:
        """Log the agent in unless the session still is (a PIN check costs scrypt's time)."""
        if self.client.get("/").status_code == 302 and "/login" in self.client.get("/").location:
            self.page("/login")
            self.post("/login", {"agent_id": "A01", "pin": AGENT_PIN})
        self.page("/")

    def walk(self, kind: str, target: str) -> None:
        """Start a ``kind`` and type valid input at each step before ``target``."""
        self.post("/op/cancel", {})
        self.post(f"/op/{kind}/start", {})
        steps = flow(kind, target)
        for step in steps[:steps.index(target)]:
            html = self.page(f"/op/{kind}/{step}")
            data = valid_input(kind, step, target)
            txn = re.search(r'name="txn" value="([^"]+)"', html)
            if txn:
                data["txn"] = txn.group(1)
            self.post(f"/op/{kind}/{step}", data)


def flow(kind: str, target: str) -> tuple[str, ...]:
    """The steps of a ``kind`` on the way to ``target``: a bill paid from the account asks for the customer and the
    PIN after its confirmation."""
    return FLOWS[kind] + (("customer", "pin") if target_after_confirm(kind, target) else ())


def target_after_confirm(kind: str, step: str) -> bool:
    """A bill paid from the account asks for the customer and the PIN after its confirmation."""
    return kind == "bill_payment" and step in ("customer", "pin")


# -- the targets: every POST form -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A form to fuzz: the endpoint it posts to, how to reach the page that shows it (returns the page's path and
    the form's action), and whether the day must still be closed for it to show."""

    endpoint: str
    name: str
    reach: Callable[[Counter, dict], tuple[str, str]]
    day_open: bool = True
    #: The form is on a receipt: a deposit and a transfer are recorded first.
    on_receipt: bool = False
    #: What the station must have been through for the form to show (called once, with the station bound).
    prepare: Callable | None = None
    #: What puts the station back before each example (with the station bound), where an example's own effect
    #: would hide the form from the next (hostile PINs at the login lock the agent after five).
    each: Callable | None = None


def let_everyone_log_in(st_) -> None:
    """Wrong PINs of earlier examples forgotten: nobody locked or waiting, so the login form shows again."""
    from station.db import Agent, Setting

    Agent.update(failed_pins=0, locked=False).execute()
    Setting.delete().where(Setting.key.startswith("pin_wait:")).execute()


def lock_the_agent(st_) -> None:
    """Five wrong PINs lock agent A01: the login screen then offers the unlock screens."""
    from station import agents
    from station.errors import StationError

    for _ in range(5):
        with pytest.raises(StationError):
            agents.login_agent(st_, "A01", "0000")


def a_suggestion_answered(st_) -> None:
    """A customer's suggestion the bank has answered (the downlink's ``voice_answers``): the answers screen then
    offers "mark all as read"."""
    from station import agents, feedback

    session = agents.login_agent(st_, "A01", AGENT_PIN)
    said = feedback.record_feedback(st_, session, "suggestion", "中午也开门就好了")
    with st_.write():
        feedback.apply_answers([{"seq": said.seq, "status": "resolved", "note": "已安排午间开门",
                                 "at": "2026-11-03T04:00:00.000Z"}])


def unread_again(st_) -> None:
    """Every answer unread again: an example that marked them read would hide the form from the next."""
    from station.db import VoiceAnswer

    VoiceAnswer.update(read_at=None).execute()


def _op_step(kind: str, step: str) -> Target:
    def reach(counter: Counter, _: dict) -> tuple[str, str]:
        counter.walk(kind, step)
        return f"/op/{kind}/{step}", f"/op/{kind}/{step}"

    suffix = " (from the account)" if target_after_confirm(kind, step) else ""
    return Target("ops.step", f"{kind} {step}{suffix}", reach)


def _fixed(page: str, action: str) -> Callable[[Counter, dict], tuple[str, str]]:
    return lambda counter, _: (page, action)


def _on_receipt(kind: str, page: str, action: str) -> Callable[[Counter, dict], tuple[str, str]]:
    return lambda counter, made: (page.format(seq=made[kind]), action.format(seq=made[kind]))


def _with_operation(counter: Counter, _: dict) -> tuple[str, str]:
    counter.walk("deposit", "amount")
    return "/op/deposit/amount", "/op/cancel"


def _proxy(counter: Counter, _: dict) -> tuple[str, str]:
    counter.walk("withdrawal", "amount")
    return "/op/withdrawal/amount", "/op/withdrawal/proxy"


OP_STEPS = sorted({(kind, step) for kind, steps in FLOWS.items() for step in steps}
                  | {("bill_payment", "customer"), ("bill_payment", "pin")})
TARGETS = [
    *(_op_step(kind, step) for kind, step in OP_STEPS),
    Target("auth.login", "login", _fixed("/login?agent_id=A01", "/login"), each=let_everyone_log_in),
    Target("auth.logout", "logout", _fixed("/", "/logout")),
    Target("auth.set_language", "language", _fixed("/", "/lang")),
    Target("auth.toggle_large_print", "large print", _fixed("/", "/large-print")),
    Target("home.sync_now", "sync now", _fixed("/sync", "/sync")),
    Target("home.print_chart", "print the chart", _fixed("/chart", "/chart/print")),
    Target("ops.start", "start an operation", _fixed("/", "/op/withdrawal/start")),
    Target("ops.cancel", "cancel an operation", _with_operation),
    Target("ops.toggle_proxy", "withdrawal by a proxy", _proxy),
    Target("receipts.print_copy", "print a copy", _on_receipt("deposit", "/receipts/{seq}", "/receipts/{seq}/print"),
           on_receipt=True),
    Target("receipts.reverse", "reverse", _on_receipt("deposit", "/receipts/{seq}/reverse",
                                                      "/receipts/{seq}/reverse"), on_receipt=True),
    Target("receipts.cancel_transfer", "cancel a transfer", _on_receipt("transfer", "/receipts/{seq}/cancel",
                                                                        "/receipts/{seq}/cancel"), on_receipt=True),
    Target("day.open_day", "open the day", _fixed("/day/open", "/day/open"), day_open=False),
    Target("day.close_day", "close the day", _fixed("/day/close", "/day/close")),
    Target("voice.voice", "customer voice", _fixed("/voice/", "/voice/")),
    Target("voice.answers_read", "mark the bank's answers read", _fixed("/voice/answers", "/voice/answers/read"),
           prepare=a_suggestion_answered, each=unread_again),
    Target("complaints.complaint", "12315 complaint", _fixed("/complaint/", "/complaint/")),
    Target("unlock.by_supervisor", "unlock by a supervisor", _fixed("/unlock/?agent_id=A01", "/unlock/"),
           prepare=lock_the_agent),
    Target("unlock.by_code", "unlock by the bank's code", _fixed("/unlock/code?agent_id=A01", "/unlock/code"),
           prepare=lock_the_agent),
]


def test_every_post_form_of_the_ui_has_a_target(ui_app):
    posting = {rule.endpoint for rule in ui_app.url_map.iter_rules() if "POST" in (rule.methods or ())}
    assert posting == {target.endpoint for target in TARGETS}
    every_step = {(kind, step) for kind, steps in FLOWS.items() for step in flow(kind, "pin") + steps}
    assert every_step <= set(OP_STEPS)


# -- hostile values -------------------------------------------------------------------------------------------
CONTROL = st.characters(categories=["Cc"])
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.text(st.one_of(CONTROL, st.characters(categories=["Nd", "Zs", "Cf"])), min_size=1, max_size=20),
    st.builds(lambda text, control: text[: len(text) // 2] + control + text[len(text) // 2:], st.text(max_size=20),
              CONTROL),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", " ", "-1", "-500", "0", "0.001", "1e9", "NaN", "Infinity", "１２３", "５００", "500.00",
                     "999999999999999999999", "A01\n", "\u202e1000", "<script>alert(1)</script>", "' OR 1=1 --",
                     "../../etc/passwd", "%00", "null", "[]", "{}", "true", "\ud800".encode("utf-8",
                                                                                        "surrogatepass").decode(
                                                                                        "utf-8", "replace")]),
    st.text(min_size=1, max_size=3).map(lambda text: text * 4000),
)
KEEP, CHANGE, DROP = "keep", "change", "drop"


@st.composite
def submissions(draw, fields: dict[str, list[str]]) -> dict:
    """A hostile submission of a form with ``fields``: each field kept (one of the values the page offers),
    changed to a hostile value, or left out; sometimes an extra field; the CSRF token right, wrong or missing."""
    data = {}
    for name, offered in sorted(fields.items()):
        if name == "csrf_token":
            continue
        what = draw(st.sampled_from([KEEP, CHANGE, CHANGE, DROP]))
        if what == KEEP:
            data[name] = draw(st.sampled_from(offered)) if offered else ""
        elif what == CHANGE:
            data[name] = draw(HOSTILE)
    if draw(st.booleans()):
        data[draw(st.text(min_size=1, max_size=12))] = draw(HOSTILE)
    csrf = draw(st.sampled_from(["right", "right", "right", "wrong", "missing"]))
    return {"data": data, "csrf": csrf}


# -- what must hold after every post --------------------------------------------------------------------------
def control_characters(value) -> list[str]:
    """Every string inside ``value`` (JSON kept as text included) that holds a control character."""
    if isinstance(value, dict):
        return [found for item in value.items() for found in control_characters(list(item))]
    if isinstance(value, list):
        return [found for item in value for found in control_characters(item)]
    if isinstance(value, str):
        if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
            return [value]
        if value[:1] in ("{", "["):
            try:
                return control_characters(json.loads(value))
            except ValueError:
                return []
    return []


def assert_nothing_half_written(st_) -> None:
    """The journal verifies, and the operation and business-day rows say what their entries say (the drawer too)."""
    audit = audit_journal(st_)
    assert audit.intact, audit.as_dict()
    assert [problem.as_dict() for problem in row_problems(st_)] == []


def assert_no_control_characters_stored(st_) -> None:
    tables = [row[0] for row in st_.db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        cursor = st_.db.execute_sql(f'SELECT * FROM "{table}"')
        names = [column[0] for column in cursor.description]
        for row in cursor.fetchall():
            for name, value in zip(names, row, strict=True):
                if table == "journal_entry" and name == "token":
                    value = unverified_payload(value)
                assert control_characters(value) == [], (table, name)


def assert_no_control_characters_printed(jobs) -> None:
    for _, _, output in jobs:
        for chunk in output.split(KANJI_ON)[1:]:
            text = chunk.split(KANJI_OFF)[0].decode("gb18030")
            assert [ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cs")] == []


# -- the trial ------------------------------------------------------------------------------------------------
@pytest.fixture
def counter_station(station, printed):
    """The station with the day open, a deposit and a transfer on record (receipts to print, reverse, cancel)."""
    from station.app import create_app

    app = create_app({"STATION": station, "TESTING": True, "SECRET_KEY": "fuzz"})
    open_a_wealth_product(station)
    # What `station serve` installs: the sync job run now (here its failure, as without a link).
    app.extensions["sync_now"] = lambda wait: SyncOutcome(ok=False, at=utc_text(station.now()), reason="refused")
    counter = Counter(app.test_client())
    counter.log_in()
    return app, counter


#: The wealth product the fuzz's orders are for (open today, R3; the customer walked with is assessed R5).
WMP_CODE = "WM-FUZZ-01"


def open_a_wealth_product(st_) -> None:
    """A product the bank's catalogue holds open today, and the walking customer's risk level above it, so that an
    order's every step can be reached."""
    from station.db import Customer, WmpProduct

    with st_.bound():
        today = st_.local_date().isoformat()
        WmpProduct.create(code=WMP_CODE, name_zh="稳健理财", name_en="Steady", risk_level=3, min_fen=10_000,
                          step_fen=1_000, opens_on=today, closes_on=today, description_zh="可能亏损本金。",
                          description_en="The capital can be lost.")
        customer, _ = customer_with_payee()
        Customer.update(risk_level=5).where(Customer.id == customer.id).execute()


def record_receipts(counter: Counter) -> dict:
    """A deposit and a transfer, walked through the screens; their receipts' seqs."""
    made = {}
    for kind in ("deposit", "transfer"):
        counter.walk(kind, "pin")
        html = counter.page(f"/op/{kind}/pin")
        txn = re.search(r'name="txn" value="([^"]+)"', html).group(1)
        response = counter.post(f"/op/{kind}/pin", {"pin": CUSTOMER_PIN, "txn": txn})
        made[kind] = int(re.search(r"/receipts/(\d+)", response.location).group(1))
    return made


@pytest.mark.parametrize("target", TARGETS, ids=[target.name for target in TARGETS])
def test_no_form_takes_hostile_input_badly(counter_station, station, agent, printed, target):
    app, counter = counter_station
    made = {}
    if target.day_open:
        business_day.open_day(station, agent, {"10000": 300})
    if target.on_receipt:
        made = record_receipts(counter)
    if target.prepare is not None:
        target.prepare(station)

    @fuzz_settings(quick=6, full=200)
    @given(form=st.data())
    def fuzz(form):
        if target.each is not None:
            with station.bound():
                target.each(station)
        counter.log_in()
        page, action = target.reach(counter, made)
        html = counter.page(page)
        fields = form_fields(html, urlparse(page).path, action)
        # The walk reached the screen: it shows the form (every form carries the CSRF token).
        assert "csrf_token" in fields, (target.name, page, action, html[:2000])
        submission = form.draw(submissions(fields))
        data = dict(submission["data"])
        if submission["csrf"] == "right":
            data["csrf_token"] = counter.token
        elif submission["csrf"] == "wrong":
            data["csrf_token"] = counter.token[::-1] or "x"
        response = counter.client.post(action, data=data)
        figures["cases"] += 1
        figures["server_errors"] += response.status_code >= 500
        body = response.get_data(as_text=True)
        assert response.status_code < 500 and "Traceback" not in body, (response.status_code, body[:500])
        with station.bound():
            assert_nothing_half_written(station)
            assert_no_control_characters_stored(station)
        assert_no_control_characters_printed(printed)

    fuzz()

