"""Every screen fits 800x480 in every state, in Chinese and in English (docs/operations.md, "Every screen fits").

One served station and one Chromium for the module. ``CASES`` is the table: one line per (screen, state), each
naming the function that brings the page there (HTTP form posts through the logged-in page's own cookies, then
the screen itself loaded or posted in the page, so an error or a flash message shows as the agent sees it).
Each case runs in zh and in en and is checked by ``check_screen`` (tests/ui_browser_support.py): no scroll, every
visible control inside the screen, every touch target at least 48 x 48 px. A new screen is one ``Case`` line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from conftest import FakeClock
from ui_browser_support import check_screen, new_page, serving
from ui_helpers import AGENT_PIN, CUSTOMER_PIN, ID_NUMBER

from station import (
    agents,
    bank_unlock,
    business_day,
    errors,
    feedback,
    online,
    operations,
    receipts,
    setup_ui,
    storage,
    wmp,
)
from station.app import create_app
from station.complaints import record_complaint
from station.db import Agent, BusinessDay, Customer, JournalEntry, Operation, Payee, VoiceAnswer, WmpProduct
from station.demo import DEMO_AGENTS, load_demo_customers
from station.protocol import key_codecs
from station.protocol.complaints import MAX_BUSINESS, MAX_DETAILS
from station.provision import init_station
from station.setup_ui import Attempt, FirstBoot, SetupDispatcher
from station.sync import ENCRYPTION_KEY_FILE
from station.ui import operations as ui_operations

#: A long customer name (the bank's data may carry one) and the longest payee name the payee screen accepts.
LONG_CUSTOMER_NAME = "欧阳阿卜杜热合曼·买买提明江"
LONG_PAYEE_NAME = "乌鲁木齐市天山区阿卜杜热合曼·买买提明江"
#: The wealth products of the served station: the longest code a product may have, and the longest description.
WMP_LONG = "WM-2026-RURAL-REVIVAL-STEADY-01"
WMP_ABOUT_ZH = ("主要投资于存款、债券等固定收益类资产，产品净值随市场波动，可能亏损本金。"
                "申购确认后资金按产品说明书运作。客户应根据自身情况独立决定，本服务点不提供任何投资建议。" * 2)[:200]
WMP_ABOUT_EN = ("Invests mainly in deposits and bonds; its value moves with the market and the capital can be lost. "
                "The customer decides alone; the station gives no advice on it. " * 2)[:200]
#: Receipts today before the tests: enough rows that the list must scroll inside its box.
MANY_RECEIPTS = 30


@dataclass
class Counter:
    """The served station, the logged-in page, and how to reach a state through it."""

    st: object
    clock: FakeClock
    base: str
    page: object  # logged in as agent A01
    anon: object  # nobody logged in
    setup: object  # the set-up screens of a device not enrolled yet (``first_boot``, at ``setup_base``)
    setup_base: str
    first_boot: FirstBoot
    new_station: object  # enrolled, nobody added yet (the set-up's people step)
    sync_outcome: list  # what the sync hook answers next (None: still syncing)
    customers: dict
    languages: dict = field(default_factory=dict)  # each page's language now

    # -- getting there -------------------------------------------------------------------------------------
    def token(self, page=None) -> str:
        page = page or self.page
        return page.get_attribute("input[name=csrf_token]", "value")

    def go(self, path: str, page=None) -> None:
        page = page or self.page
        page.goto(self.base_of(page) + path)

    def post(self, path: str, data: dict | None = None, *, page=None) -> None:
        """A form post with the page's cookies, not shown: a step on the way to the state."""
        page = page or self.page
        response = page.request.post(self.base_of(page) + path, form={"csrf_token": self.token(page), **(data or {})})
        assert response.status < 500, f"{path}: {response.status}"

    def show(self, path: str, data: dict | None = None, *, page=None) -> None:
        """A form posted in the page itself: the page shows the answer (a refusal, or where a redirect leads)."""
        page = page or self.page
        fields = {"csrf_token": self.token(page), **(data or {})}
        with page.expect_navigation():
            page.evaluate(
                """([action, fields]) => {
                     const form = document.createElement("form");
                     form.method = "post";
                     form.action = action;
                     for (const [name, value] of Object.entries(fields)) {
                       const input = document.createElement("input");
                       input.type = "hidden"; input.name = name; input.value = value;
                       form.appendChild(input);
                     }
                     document.body.appendChild(form);
                     form.submit();
                   }""",
                [self.base_of(page) + path, fields],
            )

    def language(self, lang: str, page=None) -> None:
        page = page or self.page
        action = page.get_attribute("header.bar form", "action").removeprefix(self.base_of(page))
        self.post(action, {"lang": "en" if lang == "en" else "zh_CN", "next": "/"}, page=page)

    def base_of(self, page) -> str:
        return self.setup_base if page is self.setup else self.base

    def op(self, kind: str, *, customer: str = "plain", payee=None, amount=None, warning=False,
           confirm=False, biller=None, ref=None, funding=None, identity=None, product=None,
           statement=False) -> None:
        """Key an operation in up to a step (each given value submits its step)."""
        self.post(f"/op/{kind}/start")
        if biller is not None:
            self.post(f"/op/{kind}/biller", {"biller": biller})
            if ref is not None:
                self.post(f"/op/{kind}/reference", {"reference": ref})
        elif customer is not None:
            self.identify(kind, customer)
        if product is not None:
            self.post(f"/op/{kind}/product", {"product": product})
        if payee is not None:
            self.post(f"/op/{kind}/payee", {"payee_account": payee[0], "payee_name": payee[1]})
        if amount is not None:
            self.post(f"/op/{kind}/amount", {"amount": amount})
        if identity is not None:
            self.post(f"/op/{kind}/identity", {"id_number": identity})
        if warning:
            self.post(f"/op/{kind}/warning", {"decision": "send"})
        if statement:
            self.post(f"/op/{kind}/statement", {"read": "yes"})
        if confirm:
            self.post(f"/op/{kind}/confirm", {"funding": funding} if funding else {})
        if funding == "account" and customer is not None:
            self.identify(kind, customer)

    def identify(self, kind: str, customer: str) -> None:
        self.post(f"/op/{kind}/customer", {"id_kind": "card", "number": self.customers[customer].card_number})

    def receipt_of(self, entry_type: str) -> int:
        """The seq of the latest entry of ``entry_type`` (a receipt screen)."""
        return JournalEntry.select().where(JournalEntry.type == entry_type).order_by(JournalEntry.seq.desc()).get().seq

    # -- states -----------------------------------------------------------------------------------------------
    @contextmanager
    def offline_warning(self) -> Iterator[None]:
        """The bar's offline warning (and the home screen's notice): no sync for longer than the policy allows."""
        self.clock.advance(seconds=1)
        with self.setting("policy", {**(self.st.setting("policy") or {}), "max_offline_hours": 0}):
            yield

    @contextmanager
    def clock_corrected(self) -> Iterator[None]:
        """After a clock correction that left the last sync time unknown (``station.clock``): the bar says so and
        the home screen's notice asks for a sync before offline operations."""
        now = self.clock.now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.setting("clock_corrected", {"at": now, "seq": 1, "floor": now, "sync_unknown": True}):
            yield

    @contextmanager
    def clock_wrong(self) -> Iterator[None]:
        """The clock set an hour back, behind the journal: "the clock is wrong, call the technician"."""
        before = self.clock.now
        self.clock.now = before - timedelta(hours=1)
        try:
            yield
        finally:
            self.clock.now = before

    @contextmanager
    def day_not_open(self) -> Iterator[None]:
        """No day open (the open day marked closed for the case, then open again)."""
        day = business_day.current_day(self.st)
        BusinessDay.update(closed_at=self.clock()).where(BusinessDay.id == day.id).execute()
        try:
            yield
        finally:
            BusinessDay.update(closed_at=None).where(BusinessDay.id == day.id).execute()

    @contextmanager
    def storage_full(self) -> Iterator[None]:
        """Storage full: the data folder's file system below its reserve (``station.storage``) for the case; the
        station notices the room back at its next check."""
        real = storage.free_bytes
        storage.free_bytes = lambda st: 0
        try:
            yield
        finally:
            storage.free_bytes = real

    @contextmanager
    def bank_refuses(self) -> Iterator[None]:
        """The link up and the bank refusing what it is asked, with the longest of its wealth-order refusals (the
        serving thread runs in this process: the two names it calls are swapped for the case)."""
        with mock.patch.object(ui_operations, "should_ask_bank", lambda st: True), \
                mock.patch.object(online, "authorize", mock.Mock(side_effect=errors.BankWmpRiskLevelTooLow())):
            yield

    @contextmanager
    def large_print(self) -> Iterator[None]:
        """Large print on for the agent's session (the home screen's toggle), off again after the case."""
        self.post("/large-print")
        try:
            yield
        finally:
            self.post("/large-print")

    @contextmanager
    def voice_answered(self, said: str = "希望养老金发放日早点开门" * 16,
                       note: str = "已安排发放日七点开门，谢谢您的建议" * 12) -> Iterator[None]:
        """Three of the bank's answers to customer voice, unread, the customers' words and the answers as long as
        they may be (``station.feedback.MAX_TEXT``, ``MAX_ANSWER``); removed after the case."""
        session = agents.login_agent(self.st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
        seqs = [feedback.record_feedback(self.st, session, "suggestion", said, receipts.new_txn_id()).seq
                for _ in range(3)]
        for seq in seqs:
            VoiceAnswer.create(seq=seq, note=note, answered_at=self.clock())
        try:
            yield
        finally:
            VoiceAnswer.delete().where(VoiceAnswer.seq.in_(seqs)).execute()

    def voice_answered_wide(self):
        """``voice_answered`` in the widest Latin letters without a space to break at, the answer holding markup
        (shown as text): each as long as it may be."""
        return self.voice_answered(said="W" * feedback.MAX_TEXT, note=("<b>W</b>" + "W" * 200)[:feedback.MAX_ANSWER])

    @contextmanager
    def setting(self, key: str, value) -> Iterator[None]:
        before = self.st.setting(key)
        self.st.set_setting(key, value)
        try:
            yield
        finally:
            if before is None:
                self.st.delete_setting(key)
            else:
                self.st.set_setting(key, before)

    @contextmanager
    def first_boot_state(self, **state) -> Iterator[None]:
        """The set-up's ``FirstBoot`` in a state (an attempt under way, a revoked code, enrolled); the screens
        that wait reload themselves only after the case."""
        before = {key: getattr(self.first_boot, key) for key in state}
        polls = dict(setup_ui.POLL_SECONDS)
        setup_ui.POLL_SECONDS.update(dict.fromkeys(polls, 600))
        for key, value in state.items():
            setattr(self.first_boot, key, value)
        try:
            yield
        finally:
            for key, value in before.items():
                setattr(self.first_boot, key, value)
            setup_ui.POLL_SECONDS.update(polls)

    @contextmanager
    def printer(self, config: dict) -> Iterator[None]:
        before = self.st.config.get("printer")
        self.st.config["printer"] = config
        try:
            yield
        finally:
            self.st.config["printer"] = before


def wrong_pin_reset(name: str) -> None:
    Customer.update(pin_failures=0, status="active").where(Customer.id == name).execute()


# -- the cases: how to reach each (screen, state) ----------------------------------------------------------------
def login_wrong_pin(c):
    c.show("/login", {"agent_id": "S01", "pin": "0000"}, page=c.anon)
    Agent.update(failed_pins=0).where(Agent.agent_id == "S01").execute()


def locked_out(agent_id, reach, *, wait=False):
    """``reach`` with ``agent_id`` locked by wrong PINs (``wait``: made to wait, as the last supervisor is), as
    they were after the case."""

    def reached(c):
        agent = Agent.get_by_id(agent_id)
        c.stack.callback(Agent.update(failed_pins=agent.failed_pins, locked=agent.locked)
                         .where(Agent.agent_id == agent_id).execute)
        tries = c.st.policy["agent_pin_tries"]
        Agent.update(failed_pins=tries, locked=not wait).where(Agent.agent_id == agent_id).execute()
        if wait:
            c.stack.callback(c.st.delete_setting, f"pin_wait:{agent_id}")
            agents.start_wait(c.st, f"pin_wait:{agent_id}", 0)
        reach(c)

    return reached


def second_supervisor(reach):
    """``reach`` with a second supervisor at the station (removed after the case)."""

    def reached(c):
        supervisor = Agent.get_by_id(DEMO_AGENTS[1][0])
        Agent.create(agent_id="S02", name="欧阳秀英 Ouyang Xiuying", role="supervisor",
                     pin_verifier=supervisor.pin_verifier)
        c.stack.callback(Agent.delete().where(Agent.agent_id == "S02").execute)
        reach(c)

    return reached


def unlock_code_refused(enrolled: bool, waiting: bool = False):
    """A wrong unlock code typed for the locked agent A01: refused as wrong (``enrolled``: the station given an
    encryption key and the server's, as enrollment writes them, for the case), else as not checkable; ``waiting``:
    after too many wrong codes, refused until the wait ends."""

    def reach(c):
        if waiting:
            c.stack.callback(c.st.delete_setting, bank_unlock.WAIT_SETTING)
            agents.start_wait(c.st, bank_unlock.WAIT_SETTING, 3)
        if enrolled:
            key_file = c.st.data_dir / ENCRYPTION_KEY_FILE
            key_file.write_text(key_codecs.encryption_private_to_text(key_codecs.generate_encryption_key()))
            c.stack.callback(key_file.unlink)
            c.stack.callback(c.st.config.pop, "server")
            c.st.config["server"] = {"encryption_jwk": key_codecs.encryption_public_jwk(
                key_codecs.generate_encryption_key())}
            c.stack.callback(c.st.delete_setting, bank_unlock.FAILURES_SETTING)
        c.go("/unlock/code?agent_id=A01", c.anon)
        c.show("/unlock/code", {"agent_id": "A01", "code": "12345678"}, page=c.anon)

    return locked_out("A01", reach)


def op_step(kind, step, **keyed):
    def reach(c):
        c.op(kind, **keyed)
        c.go(f"/op/{kind}/{step}")

    return reach


def op_refused(kind, step, data, **keyed):
    """The step posted with ``data`` in the page: the screen shows the refusal."""

    def reach(c):
        c.op(kind, **keyed)
        c.go(f"/op/{kind}/{step}")
        txn = c.page.locator("input[name=txn]")
        c.show(f"/op/{kind}/{step}", {"txn": txn.get_attribute("value")} | data if txn.count() else data)

    return reach


def wrong_customer_pin(kind, **keyed):
    def reach(c):
        c.op(kind, **keyed)
        c.go(f"/op/{kind}/pin")
        txn = c.page.get_attribute("input[name=txn]", "value")
        c.show(f"/op/{kind}/pin", {"pin": "000000", "txn": txn})
        customer = c.customers[keyed.get("customer", "plain")]
        wrong_pin_reset(customer.id)

    return reach


def locked_customer_refused(c):
    """A locked customer identified: refused on the customer step (the customer unlocked after the case)."""
    customer = c.customers["long"]
    Customer.update(status="locked").where(Customer.id == customer.id).execute()
    c.stack.callback(wrong_pin_reset, customer.id)
    c.op("withdrawal", customer=None)
    c.go("/op/withdrawal/customer")
    c.show("/op/withdrawal/customer", {"id_kind": "card", "number": customer.card_number})


def locked_by_pins(kind, **keyed):
    """The customer's last wrong PIN: the PIN screen without its pad (the customer unlocked after the case)."""

    def reach(c):
        c.op(kind, **keyed)
        customer = c.customers[keyed.get("customer", "plain")]
        c.stack.callback(wrong_pin_reset, customer.id)
        c.go(f"/op/{kind}/pin")
        for _ in range(c.st.policy["customer_pin_tries"]):
            c.show(f"/op/{kind}/pin", {"pin": "000000", "txn": c.page.get_attribute("input[name=txn]", "value")})

    return reach


def tap_after(reach, field):
    """``reach``, then a tap on the text field ``field``: the pinyin keyboard comes up in the number pad's place."""

    def reached(c):
        reach(c)
        c.page.click(field)
        c.page.locator("#imepad").wait_for(state="visible")

    return reached


def elderly(reach):
    """``reach`` with the plain and long-named customers born 80 years ago (their birth years back after)."""

    def reached(c):
        for name in ("plain", "long"):
            customer = Customer.get_by_id(c.customers[name].id)
            c.stack.callback(Customer.update(birth_year=customer.birth_year).where(Customer.id == customer.id).execute)
            Customer.update(birth_year=c.st.local_date().year - 80).where(Customer.id == customer.id).execute()
        reach(c)

    return reached


def supervisor_asked(wrong_pin=False, **keyed):
    """A transfer at or above ``fraud_supervisor_fen`` gone past the warning: the supervisor's PIN pad (refused)."""

    def reach(c):
        c.op("transfer", **keyed)
        c.go("/op/transfer/warning")
        stop_txn = c.page.get_attribute("input[name=stop_txn]", "value")
        c.show("/op/transfer/warning", {"decision": "send", "stop_txn": stop_txn})
        if wrong_pin:
            c.show("/op/transfer/warning", {"decision": "approve", "stop_txn": stop_txn, "supervisor_id": "S01",
                                            "pin": "000000"})
            Agent.update(failed_pins=0).where(Agent.agent_id == "S01").execute()

    return reach


def approval_run_out(c):
    """Past the warning with the supervisor's PIN, then the customer's PIN after the approval ran out: the
    warning's supervisor PIN pad again, saying why."""
    # The supervisor from 1,000 yuan: 1,500 yuan to a new payee stays within what the customer may send offline.
    policy = c.st.setting("policy") or {}
    c.stack.enter_context(c.setting("policy", {**policy, "fraud_supervisor_fen": 100_000}))
    c.op("transfer", customer="long", payee=LONG_PAYEE, amount="1500")
    c.go("/op/transfer/warning")
    c.post("/op/transfer/warning", {"decision": "approve", "supervisor_id": "S01", "pin": DEMO_AGENTS[1][3],
                                    "stop_txn": c.page.get_attribute("input[name=stop_txn]", "value")})
    c.post("/op/transfer/confirm")
    c.clock.advance(seconds=c.st.policy["customer_auth_seconds"] + 1)
    c.go("/op/transfer/pin")
    c.show("/op/transfer/pin", {"pin": CUSTOMER_PIN, "txn": c.page.get_attribute("input[name=txn]", "value")})


def home_after_fraud_stop(c):
    c.op("transfer", payee=("6222000000009999", "张三"), amount="300")
    c.show("/op/transfer/warning", {"decision": "stop"})


def with_state(state: str, reach):
    """``reach`` under one of the Counter's context states (``offline_warning``, ``day_not_open``)."""

    def reached(c):
        c.stack.enter_context(getattr(c, state)())
        reach(c)

    return reached


def go(path, page="page"):
    return lambda c: c.go(path, page=getattr(c, page))


def receipt(entry_type, then=None):
    def reach(c):
        c.go(f"/receipts/{c.receipt_of(entry_type)}")
        if then:
            then(c)

    return reach


def complaint_receipt_wide(c):
    """The receipt of a complaint recorded just now with ``COMPLAINT_WIDE``'s texts, as long as they may be."""
    session = agents.login_agent(c.st, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
    seq = record_complaint(c.st, session, "0571-88889999", COMPLAINT_WIDE["business"], "other",
                           COMPLAINT_WIDE["details"], True, receipts.new_txn_id()).seq
    c.go(f"/receipts/{seq}")


def wmp_receipt(which: str):
    """The first wealth-product order's receipt (waiting for the bank; ``authorized``: as if recorded under the
    bank's grant, for the case) or the last's (refused)."""
    def reach(c):
        seqs = [e.seq for e in JournalEntry.select().where(JournalEntry.type == "wmp_order").order_by(JournalEntry.seq)]
        seq = seqs[-1] if which == "refused" else seqs[0]
        if which == "authorized":
            Operation.update(auth_id="AUTH-SCREEN").where(Operation.seq == seq).execute()
            c.stack.callback(Operation.update(auth_id=None).where(Operation.seq == seq).execute)
        c.go(f"/receipts/{seq}")

    return reach


def wmp_level_too_low(c):
    """The plain customer assessed R1 chooses the R5 product: refused on the product screen."""
    Customer.update(risk_level=1).where(Customer.id == c.customers["plain"].id).execute()
    op_refused("wmp_order", "product", {"product": WMP_LONG})(c)


def printed_receipt(c):
    seq = c.receipt_of("withdrawal")
    c.go(f"/receipts/{seq}")
    c.show(f"/receipts/{seq}/print")


def printer_error_receipt(c):
    seq = c.receipt_of("withdrawal")
    c.go(f"/receipts/{seq}")
    c.stack.enter_context(c.printer(BROKEN_PRINTER))
    c.show(f"/receipts/{seq}/print")


def reverse_screen(wrong_pin=False):
    def reach(c):
        seq = c.receipt_of("deposit")
        c.go(f"/receipts/{seq}/reverse")
        if wrong_pin:
            c.show(f"/receipts/{seq}/reverse", {"supervisor_id": "S01", "reason": "Wrong amount", "pin": "0000",
                                                 "txn": c.page.get_attribute("input[name=txn]", "value")})
            Agent.update(failed_pins=0).where(Agent.agent_id == "S01").execute()

    return reach


def cancel_screen(wrong_pin=False):
    def reach(c):
        op = (Operation.select().where((Operation.type == "transfer") & (Operation.status == "recorded"))
              .order_by(Operation.seq.desc()).get())
        c.go(f"/receipts/{op.seq}/cancel")
        if wrong_pin:
            c.show(f"/receipts/{op.seq}/cancel", {"pin": "000000"})
            wrong_pin_reset(op.customer_id)

    return reach


def day_count(mode, data=None):
    def reach(c):
        c.post("/op/cancel")  # an earlier case's operation, half keyed in, would refuse the close
        c.go(f"/day/{mode}")
        if data is not None:
            c.show(f"/day/{mode}", data)

    return reach


def day_close_half_done(c):
    c.op("withdrawal")
    c.go("/day/close")
    c.show("/day/close", {"n10000": "300", "confirm": "0"})


def sync_screen(configured=True, outcome="none", show=None):
    def reach(c):
        if configured:
            c.app.extensions["sync_now"] = lambda wait=None: c.sync_outcome[0]
            c.stack.callback(c.app.extensions.pop, "sync_now", None)
        c.sync_outcome[0] = {
            "none": None,
            "ok": _Outcome(True, "2026-11-03T00:10:00Z", None),
            "failed": _Outcome(False, "2026-11-03T00:10:00Z", "timeout"),
        }[outcome]
        c.go("/sync")
        if show:
            c.show("/sync")

    return reach


@dataclass
class _Outcome:
    ok: bool
    at: str
    reason: str | None


def chart_printed(error=False):
    def reach(c):
        c.go("/chart")
        if error:
            c.stack.enter_context(c.printer(BROKEN_PRINTER))
        c.show("/chart/print")

    return reach


def voice_refused(data):
    def reach(c):
        c.go("/voice/")
        c.show("/voice/", {"txn": c.page.get_attribute("input[name=txn]", "value"), **data})

    return reach


def complaint_step(data=None):
    """The complaint screen, its first step (``data`` None) or the answer to ``data`` posted: a refusal, or the
    second step (``step`` ``subject``), itself refused when ``step`` is ``record``."""

    def reach(c):
        c.go("/complaint/")
        if data is not None:
            c.show("/complaint/", {"txn": c.page.get_attribute("input[name=txn]", "value"), **data})

    return reach


#: What a complaint is about, as the first step posts it: a long business, the longest account of what happened.
COMPLAINT_SUBJECT = {"category": "false_advertising", "details": "长" * 200,
                     "business": "乌鲁木齐市天山区阿卜杜热合曼·买买提明江农资日杂批发零售综合商店"}
#: The same in the widest Latin letters, without a space to break at, and markup (shown as text).
COMPLAINT_WIDE = {"category": "false_advertising", "details": "<b>" + "W" * (MAX_DETAILS - 3),
                  "business": "<script>" + "W" * (MAX_BUSINESS - 8)}


def revoked(page):
    def reach(c):
        c.stack.enter_context(c.setting("revoked", {"at": "2026-11-02T23:00:00Z", "detail": "revoked"}))
        c.go("/revoked", page=getattr(c, page))

    return reach


def sync_failed_in_bar(reach):
    def reached(c):
        c.stack.enter_context(c.setting("last_sync_failure", {"at": "2026-11-02T23:39:00Z", "reason": "timeout"}))
        reach(c)

    return reached


def set_up(path="/setup", data=None, **state):
    """A set-up screen in a ``FirstBoot`` state (``station=True``: enrolled, its people still to add)."""

    def reach(c):
        if state.pop("station", False):
            state["station"] = c.new_station
        c.stack.enter_context(c.first_boot_state(**state))
        c.go(path, page=c.setup)
        if data is not None:
            c.show(path if path != "/setup" else "/setup/enroll", data, page=c.setup)

    return reach


def home_clock_wrong(c):
    """Logged in (nobody's session survives the clock going back) to the home screen that says the clock is wrong;
    logged out again, before the clock is set right."""
    c.stack.enter_context(c.clock_wrong())
    c.show("/login", {"agent_id": "A01", "pin": AGENT_PIN}, page=c.anon)
    c.stack.callback(c.go, "/login", page=c.anon)  # the next case finds the language toggle where it expects it
    c.stack.callback(c.post, "/logout", page=c.anon)


def set_up_clock_not_set(c):
    c.stack.enter_context(c.first_boot_state(clock=lambda: datetime(1970, 1, 1, tzinfo=UTC)))
    c.go("/setup", page=c.setup)


PAYEE = ("6222000000009999", "张三")
LONG_PAYEE = ("6222000000009999", LONG_PAYEE_NAME)
BIG = "99999"
SCAM_PAYEE_NAME = "公安局安全账户"
SUPERVISED = "12000"  # at least fraud_supervisor_fen: going past the warning takes a supervisor's PIN
#: A printer that is not there: printing fails with the printer's error on the screen.
BROKEN_PRINTER = {"kind": "file", "path": "/nonexistent/lp0"}  # above every per-transaction limit: a refusal


REFUSED_PAGE = re.compile(
    r"Failed to load resource: the server responded with a status of (400|404|409|503|507) .*")


#: What each screen shows whatever its state: a selector that must be visible once the case has reached it.
SCREEN_SHOWS = {
    "login": "header.bar", "error": "#error", "home": ".tiles", "receipt": "#receipt", "receipts list": "#receipts",
    "reverse": "#reverse-form", "cancel transfer": "#cancel-form", "day open": "#count-form",
    "day close": "#count-form",
    "sync": "#sync-status", "chart": "#chart", "customer voice": "#voice-form", "revoked": "#revoked",
    "customer voice answers": "#answers",
    "complaint": "#complaint-form",
    "set-up": "header.bar", "set-up people": "#save",
    "customer": "#number", "amount": "#amount, .quick", "payee": "#payee_account",
    "warning": "#fraud-warning, #warning-form",
    "confirm": "#summary", "pin": "#pin, #pin-locked", "identity": "#id_number", "biller": ".billers",
    "reference": "#reference", "product": "#products, #no-products", "statement": "#risk-statement",
    "unlock": "#unlock-form, #unlock-code", "unlock code": "#code-form",
}
#: What each part of a state's name promises (the parts are separated by ", "); parts not here promise nothing.
STATE_SHOWS = {
    "refused": "#error", "not assessed": "#error", "risk level too low": "#error", "wrong PIN": "#error",
    "unknown card": "#error", "wrong carrier": "#error",
    "printer error": "#error", "no operation in progress": "#error", "operation half done": "#error",
    "idle logout message": "#error", "failed": "#error", "not a code": "#error", "a code without the server": "#error",
    "PINs differ": "#error", "404": "#error", "404 logged out": "#error",
    "after a message": ".flash", "after printing": ".flash", "synced message": ".flash",
    "still syncing message": ".flash",
    "offline warning": "#offline-warning", "sync failed in the bar": "#last-sync.failed", "day not open": "#day-closed",
    "clock corrected": "#offline-warning",
    "long name": f':text("{LONG_CUSTOMER_NAME}")',
    "long names": f':text("{LONG_CUSTOMER_NAME}"), :text("{LONG_PAYEE_NAME}")',
    "passbook": "#kind-passbook.on", "known payees": "#payee-1", "phone top-up": "#quick-10",
    "preview": "#preview", "configured": "#sync-now", "not configured": "#sync-missing", "enrolling": "#enrolling",
    "clock not set": "#clock-not-set", "clock wrong": "#clock-wrong", "another station named": "#station-mismatch",
    "revoked": "#revoked", "storage full": "#storage-full", "voice answered": "#voice-answered",
    "answers unread": "#mark-read", "no answers": "#no-answers", "answers waiting": "#voice-answers",
    "supervisor": "#people-supervisor", "half done": "#pending-op", "locked customer": "#error",
    "ID card": "#id-card", "locked by the last wrong PIN": "#pin-locked", "keyboard up": "#imepad",
    "nothing found": "#no-rows", "scam words": "#warning-why .reason", "elderly": "#call-family",
    "supervisor PIN": "#approve-warning", "approval run out": "#error", "figures changed": "#error",
    "beyond the tolerance": "#variance-reasons", "large print": "body.large",
    "many rows": f"#receipts tr:nth-of-type({MANY_RECEIPTS + 1})",
    "locked": "#unlock-code", "supervisor waits": "#error", "their supervisor's PIN": "#unlock-form",
    "phone masked": "#phone-masked", "phone pad": "#phone",
    "which supervisor": "#supervisor-S02", "no supervisor": "#no-supervisor", "wrong code": "#error",
    "station not enrolled": "#error", "too many wrong codes": "#error",
}


@dataclass(frozen=True)
class Case:
    screen: str
    state: str
    reach: Callable[[Counter], None]
    page: str = "page"  # "anon": the screen of nobody logged in; "setup": a device's first boot

    @property
    def id(self) -> str:
        return f"{self.screen}[{self.state}]"

    def shows(self) -> list[str]:
        """The selectors that prove the case reached its screen and state."""
        screen = SCREEN_SHOWS.get(self.screen) or SCREEN_SHOWS[self.screen.split()[-1]]
        return [screen] + [STATE_SHOWS[part] for part in self.state.split(", ") if part in STATE_SHOWS]


CASES = [
    Case("login", "names", go("/login", "anon"), page="anon"),
    Case("login", "pin", go("/login?agent_id=A01", "anon"), page="anon"),
    Case("login", "wrong PIN", login_wrong_pin, page="anon"),
    Case("login", "idle logout message", go("/login?idle=1", "anon"), page="anon"),
    Case("login", "clock wrong", with_state("clock_wrong", go("/login", "anon")), page="anon"),
    Case("login", "pin, clock wrong", with_state("clock_wrong", go("/login?agent_id=A01", "anon")), page="anon"),
    Case("home", "clock wrong", home_clock_wrong, page="anon"),
    Case("login", "locked", locked_out("A01", go("/login?agent_id=A01", "anon")), page="anon"),
    Case("login", "supervisor waits", locked_out("S01", go("/login?agent_id=S01", "anon"), wait=True), page="anon"),
    Case("unlock", "their supervisor's PIN", locked_out("A01", go("/unlock/?agent_id=A01", "anon")), page="anon"),
    Case("unlock", "wrong PIN", locked_out("A01", lambda c: (
        c.go("/unlock/?agent_id=A01", c.anon),
        c.show("/unlock/", {"agent_id": "A01", "supervisor_id": "S01", "pin": "0000"}, page=c.anon),
        Agent.update(failed_pins=0).where(Agent.agent_id == "S01").execute())), page="anon"),
    Case("unlock", "refused, the clock is wrong", with_state("clock_wrong", locked_out("A01", lambda c: (
        c.go("/unlock/?agent_id=A01", c.anon),
        c.show("/unlock/", {"agent_id": "A01", "supervisor_id": "S01", "pin": DEMO_AGENTS[1][3]}, page=c.anon)))),
        page="anon"),
    Case("unlock code", "while storage is full",
         with_state("storage_full", locked_out("A01", go("/unlock/code?agent_id=A01", "anon"))), page="anon"),
    Case("unlock", "which supervisor", second_supervisor(locked_out("A01", go("/unlock/?agent_id=A01", "anon"))),
         page="anon"),
    Case("unlock", "no supervisor", locked_out("S01", go("/unlock/?agent_id=S01", "anon"), wait=True), page="anon"),
    Case("unlock code", "normal", locked_out("A01", go("/unlock/code?agent_id=A01", "anon")), page="anon"),
    Case("unlock code", "wrong code", unlock_code_refused(enrolled=True), page="anon"),
    Case("unlock code", "station not enrolled", unlock_code_refused(enrolled=False), page="anon"),
    Case("unlock code", "too many wrong codes", unlock_code_refused(enrolled=True, waiting=True), page="anon"),
    Case("error", "404 logged out", go("/no/such/screen", "anon"), page="anon"),
    Case("error", "404", go("/no/such/screen")),
    Case("error", "no operation in progress", lambda c: (c.post("/op/cancel"), c.go("/op/deposit/amount"))),
    Case("home", "normal", go("/home")),
    Case("home", "voice answered", with_state("voice_answered", go("/home"))),
    Case("home", "after a message", home_after_fraud_stop),
    Case("home", "offline warning", with_state("offline_warning", go("/home"))),
    # Before "half done": a correction ends every session, so nothing is half done after it.
    Case("home", "clock corrected", with_state("clock_corrected", go("/home"))),
    Case("home", "day not open", with_state("day_not_open", go("/home"))),
    Case("home", "half done", lambda c: (c.op("withdrawal", customer="long", amount="300"), c.go("/home"))),
    Case("home", "large print, half done",
         with_state("large_print", lambda c: (c.op("deposit", customer="long", amount="300"), c.go("/home")))),
    Case("home", "offline warning, half done", with_state("offline_warning", lambda c: (
        c.op("withdrawal", customer="long", amount="300"), c.go("/home")))),
    Case("home", "offline warning, voice answered, half done",
         with_state("offline_warning", with_state("voice_answered", lambda c: (
             c.op("withdrawal", customer="long", amount="300"), c.go("/home"))))),
    Case("home", "large print, voice answered", with_state("large_print", with_state("voice_answered", go("/home")))),
    Case("home", "large print, offline warning, voice answered, half done",
         with_state("large_print", with_state("offline_warning", with_state("voice_answered", lambda c: (
             c.op("deposit", customer="long", amount="300"), c.go("/home")))))),
    Case("home", "sync failed in the bar", sync_failed_in_bar(go("/home"))),
    Case("home", "storage full", with_state("storage_full", go("/home"))),
    Case("home", "storage full, offline warning, half done",
         with_state("offline_warning", lambda c: (c.op("deposit", customer="long", amount="300"),
                                                  c.stack.enter_context(c.storage_full()), c.go("/home")))),
    Case("error", "storage full refused", with_state("storage_full", lambda c: (
        c.go("/home"), c.show("/op/withdrawal/start")))),
    # withdrawal
    Case("withdrawal customer", "normal", op_step("withdrawal", "customer", customer=None)),
    Case("withdrawal customer", "passbook", lambda c: (c.op("withdrawal", customer=None),
                                                       c.go("/op/withdrawal/customer?id_kind=passbook"))),
    Case("withdrawal customer", "unknown card", op_refused("withdrawal", "customer",
                                                           {"id_kind": "card", "number": "6217000000000000"},
                                                           customer=None)),
    Case("withdrawal customer", "offline warning",
         with_state("offline_warning", op_step("withdrawal", "customer", customer=None))),
    Case("withdrawal customer", "locked customer", locked_customer_refused),
    Case("withdrawal amount", "normal", op_step("withdrawal", "amount")),
    Case("withdrawal amount", "large print, refused",
         with_state("large_print", op_refused("withdrawal", "amount", {"amount": BIG}, customer="long"))),
    Case("withdrawal identity", "normal", op_step("withdrawal", "identity", amount="1000")),
    Case("withdrawal identity", "refused", op_refused("withdrawal", "identity", {"id_number": "110105194912310021"},
                                                     amount="1000")),
    Case("withdrawal identity", "large print, refused",
         with_state("large_print", op_refused("withdrawal", "identity", {"id_number": "1"}, amount="1000"))),
    # (the long-named customer withdrew earlier today: 1,000 yuan more would pass the daily limit)
    Case("withdrawal confirm", "ID card", op_step("withdrawal", "confirm", amount="1000", identity=ID_NUMBER)),
    Case("withdrawal confirm", "large print, ID card",
         with_state("large_print", op_step("withdrawal", "confirm", amount="1000", identity=ID_NUMBER))),
    Case("withdrawal pin", "locked by the last wrong PIN",
         locked_by_pins("withdrawal", customer="long", amount="300", confirm=True)),
    Case("withdrawal amount", "long name", op_step("withdrawal", "amount", customer="long")),
    Case("withdrawal amount", "refused", op_refused("withdrawal", "amount", {"amount": BIG}, customer="long")),
    Case("withdrawal amount", "offline warning, refused",
         with_state("offline_warning", op_refused("withdrawal", "amount", {"amount": "100"}, customer="long"))),
    Case("withdrawal confirm", "long name", op_step("withdrawal", "confirm", customer="long", amount="300")),
    Case("withdrawal pin", "normal", op_step("withdrawal", "pin", amount="500", confirm=True)),
    Case("withdrawal pin", "wrong PIN, long name",
         wrong_customer_pin("withdrawal", customer="long", amount="500", confirm=True)),
    # wealth product order
    Case("wmp product", "long name", op_step("wmp_order", "product", customer="long")),
    Case("wmp product", "large print", with_state("large_print", op_step("wmp_order", "product", customer="long"))),
    Case("wmp product", "not assessed", op_refused("wmp_order", "product", {"product": "WM-R2-1"},
                                                   customer="with payee")),
    Case("wmp product", "risk level too low", wmp_level_too_low),
    Case("wmp amount", "normal", op_step("wmp_order", "amount", customer="long", product=WMP_LONG)),
    Case("wmp amount", "refused", op_refused("wmp_order", "amount", {"amount": "100.5"}, customer="long",
                                             product="WM-R2-1")),
    Case("wmp statement", "normal", op_step("wmp_order", "statement", customer="long", product=WMP_LONG,
                                            amount="100")),
    Case("wmp statement", "large print", with_state("large_print", op_step(
        "wmp_order", "statement", customer="long", product=WMP_LONG, amount="100"))),
    Case("wmp confirm", "normal", op_step("wmp_order", "confirm", customer="long", product=WMP_LONG, amount="100",
                                          statement=True)),
    Case("wmp confirm", "online", with_state("bank_refuses", op_step(
        "wmp_order", "confirm", customer="long", product=WMP_LONG, amount="100", statement=True))),
    Case("wmp confirm", "online, refused", with_state("bank_refuses", op_refused(
        "wmp_order", "confirm", {}, customer="long", product=WMP_LONG, amount="100", statement=True))),
    Case("wmp pin", "normal", op_step("wmp_order", "pin", customer="long", product=WMP_LONG, amount="100",
                                      statement=True, confirm=True)),
    # deposit
    Case("deposit amount", "normal", op_step("deposit", "amount")),
    Case("deposit amount", "refused", op_refused("deposit", "amount", {"amount": "0.001"}, customer="long")),
    Case("deposit confirm", "normal", op_step("deposit", "confirm", amount="1234.50")),
    Case("deposit pin", "wrong PIN", wrong_customer_pin("deposit", amount="100", confirm=True)),
    # transfer
    Case("transfer payee", "known payees", op_step("transfer", "payee", customer="with payee")),
    Case("transfer payee", "new payee", op_step("transfer", "payee")),
    Case("transfer payee", "refused", op_refused("transfer", "payee", {"payee_account": "123", "payee_name": ""})),
    Case("transfer payee", "known payees, refused", op_refused("transfer", "payee", {"payee_account": "123"},
                                                                customer="with payee")),
    Case("transfer payee", "known payees, refused, long names",
         op_refused("transfer", "payee", {"payee_account": "123", "payee_name": LONG_PAYEE_NAME},
                    customer="long with payee")),
    Case("transfer payee", "keyboard up", tap_after(op_step("transfer", "payee"), "#payee_name")),
    Case("transfer payee", "refused, keyboard up", tap_after(
        op_refused("transfer", "payee", {"payee_account": "6222000000009999", "payee_name": ""}), "#payee_name")),
    Case("transfer payee", "large print, known payees, refused, keyboard up", with_state("large_print", tap_after(
        op_refused("transfer", "payee", {"payee_account": "6222000000009999", "payee_name": ""},
                   customer="long with payee"), "#payee_name"))),
    Case("transfer amount", "long names", op_step("transfer", "amount", customer="long", payee=LONG_PAYEE)),
    Case("transfer amount", "refused", op_refused("transfer", "amount", {"amount": "abc"}, customer="long",
                                                  payee=LONG_PAYEE)),
    Case("transfer warning", "long names",
         op_step("transfer", "warning", customer="long", payee=LONG_PAYEE, amount="300")),
    Case("transfer warning", "scam words, elderly",
         elderly(op_step("transfer", "warning", customer="long", payee=(LONG_PAYEE[0], SCAM_PAYEE_NAME),
                         amount="100"))),
    Case("transfer warning", "large print, scam words, elderly",
         with_state("large_print", elderly(op_step("transfer", "warning", payee=("6222000000009999",
                                                                                SCAM_PAYEE_NAME), amount="100")))),
    Case("transfer warning", "supervisor PIN", supervisor_asked(payee=PAYEE, amount=SUPERVISED)),
    Case("transfer warning", "supervisor PIN, wrong PIN, long names",
         supervisor_asked(wrong_pin=True, customer="long", payee=LONG_PAYEE, amount=SUPERVISED)),
    Case("transfer warning", "supervisor PIN, approval run out, long names", approval_run_out),
    Case("transfer confirm", "normal", op_step("transfer", "confirm", payee=PAYEE, amount="300", warning=True)),
    # (below fraud_supervisor_fen, beyond what the customer may send offline)
    Case("transfer confirm", "refused, long names",
         op_refused("transfer", "confirm", {}, customer="long", payee=LONG_PAYEE, amount="9999", warning=True)),
    Case("transfer confirm", "offline warning, refused",
         with_state("offline_warning", op_refused("transfer", "confirm", {}, payee=PAYEE, amount="300",
                                                  warning=True))),
    Case("transfer pin", "wrong PIN, long names",
         wrong_customer_pin("transfer", customer="long", payee=LONG_PAYEE, amount="300", warning=True, confirm=True)),
    # bills
    Case("bill biller", "normal", op_step("bill_payment", "biller", customer=None)),
    Case("bill reference", "electricity", op_step("bill_payment", "reference", biller="ELEC-SGCC")),
    Case("bill reference", "water, refused", op_refused("bill_payment", "reference", {"reference": "12"},
                                                        biller="WATER-COUNTY")),
    Case("bill reference", "gas, refused", op_refused("bill_payment", "reference", {"reference": "12"},
                                                      biller="GAS-COUNTY")),
    Case("bill reference", "phone, wrong carrier", op_refused("bill_payment", "reference",
                                                              {"reference": "13012345678"}, biller="MOBILE-CMCC")),
    Case("bill amount", "electricity, refused", op_refused("bill_payment", "amount", {"amount": "12.345"},
                                                           biller="ELEC-SGCC", ref="1234567890")),
    Case("bill amount", "phone top-up", op_step("bill_payment", "amount", biller="MOBILE-CMCC", ref="13912345678")),
    Case("bill confirm", "top-up", op_step("bill_payment", "confirm", biller="MOBILE-CMCC", ref="13912345678",
                                                 amount="50")),
    Case("bill confirm", "over the biller's most, refused",
         op_refused("bill_payment", "confirm", {"funding": "cash"}, biller="ELEC-SGCC", ref="1234567890",
                    amount="99999")),
    Case("bill confirm", "gas", op_step("bill_payment", "confirm", biller="GAS-COUNTY", ref="1234567890",
                                        amount="88.50")),
    Case("bill customer", "from the account", op_step("bill_payment", "customer", biller="ELEC-SGCC",
                                                      ref="1234567890", amount="50", confirm=True,
                                                      funding="account", customer=None)),
    Case("bill pin", "from the account, wrong PIN",
         wrong_customer_pin("bill_payment", biller="ELEC-SGCC", ref="1234567890", amount="50", confirm=True,
                            funding="account", customer="long")),
    # balance
    Case("balance customer", "normal", op_step("balance_enquiry", "customer", customer=None)),
    Case("balance pin", "wrong PIN, long name", wrong_customer_pin("balance_enquiry", customer="long")),
    # receipts
    Case("receipt", "withdrawal", receipt("withdrawal")),
    Case("receipt", "after printing", printed_receipt),
    Case("receipt", "printer error", printer_error_receipt),
    Case("receipt", "deposit", receipt("deposit")),
    Case("receipt", "transfer, long names", receipt("transfer")),
    Case("receipt", "transfer cancelled", receipt("transfer_cancel")),
    Case("receipt", "bill", receipt("bill_payment")),
    Case("receipt", "balance", receipt("balance_enquiry")),
    Case("receipt", "reversal", receipt("reversal")),
    Case("receipt", "customer voice", receipt("feedback")),
    Case("receipt", "12315 complaint", receipt("complaint_12315")),
    Case("receipt", "large print, 12315 complaint", with_state("large_print", receipt("complaint_12315"))),
    Case("receipt", "12315 complaint, widest input", complaint_receipt_wide),
    Case("receipt", "large print, 12315 complaint, widest input", with_state("large_print", complaint_receipt_wide)),
    Case("receipt", "wealth order waiting", wmp_receipt("waiting")),
    Case("receipt", "wealth order refused", wmp_receipt("refused")),
    Case("receipt", "wealth order authorized", wmp_receipt("authorized")),
    Case("receipt", "day open", receipt("day_open")),
    Case("receipt", "transfer stopped", receipt("transfer_stopped")),
    Case("receipt", "day close", receipt("day_close")),
    Case("receipt", "offline warning", with_state("offline_warning", receipt("transfer"))),
    Case("receipts list", "many rows", go("/receipts/")),
    Case("receipts list", "nothing found", go("/receipts/?q=98765")),
    Case("receipts list", "large print, many rows", with_state("large_print", go("/receipts/"))),
    Case("receipt", "large print, transfer, long names", with_state("large_print", receipt("transfer"))),
    Case("reverse", "normal", reverse_screen()),
    Case("reverse", "wrong PIN", reverse_screen(wrong_pin=True)),
    Case("cancel transfer", "normal", cancel_screen()),
    Case("cancel transfer", "wrong PIN", cancel_screen(wrong_pin=True)),
    # the day
    Case("day open", "normal", with_state("day_not_open", day_count("open"))),
    Case("day open", "refused", with_state("day_not_open", day_count("open", {"n10000": "x"}))),
    Case("day close", "normal", day_count("close")),
    Case("day close", "preview", day_count("close", {"n10000": "290", "n5000": "3", "confirm": "0"})),
    Case("day close", "refused", day_count("close", {"n10000": "x", "confirm": "0"})),
    Case("day close", "operation half done", day_close_half_done),
    Case("day close", "beyond the tolerance", day_count("close", {"n10000": "290", "confirm": "0"})),
    Case("day close", "beyond the tolerance, refused", day_count("close", {"n10000": "290", "confirm": "1"})),
    # The approval screen posted after the drawer's figures changed (a second tab): refused, the new figures shown.
    Case("day close", "beyond the tolerance, figures changed",
         day_count("close", {"n10000": "290", "confirm": "1", "reason": "Unknown", "reason_text": "一张百元假钞",
                             "supervisor_id": "S01", "pin": "0000", "expected": "1"})),
    Case("day close", "large print, beyond the tolerance, refused",
         with_state("large_print", day_count("close", {"n10000": "290", "confirm": "1"}))),
    Case("day close", "preview, offline warning",
         with_state("offline_warning", day_count("close", {"n10000": "290", "confirm": "0"}))),
    # sync, chart, voice
    Case("sync", "not configured", sync_screen(configured=False)),
    Case("sync", "configured", sync_screen()),
    Case("sync", "synced message", sync_screen(outcome="ok", show=True)),
    Case("sync", "still syncing message", sync_screen(outcome="none", show=True)),
    Case("sync", "failed", sync_failed_in_bar(sync_screen(outcome="failed", show=True))),
    Case("sync", "offline warning", with_state("offline_warning", sync_screen())),
    Case("sync", "clock corrected", with_state("clock_corrected", sync_screen())),
    Case("chart", "normal", go("/chart")),
    Case("chart", "after printing", chart_printed()),
    Case("chart", "printer error", chart_printed(error=True)),
    Case("customer voice", "normal", go("/voice/")),
    Case("customer voice", "refused", voice_refused({"text": "x"})),
    Case("customer voice", "keyboard up", tap_after(go("/voice/"), "#text")),
    Case("customer voice", "refused, keyboard up", tap_after(voice_refused({"text": "x"}), "#text")),
    Case("customer voice", "large print, refused, keyboard up",
         with_state("large_print", tap_after(voice_refused({"text": "x"}), "#text"))),
    Case("customer voice", "refused, long text", voice_refused({"category": "praise", "text": "长" * 600})),
    Case("customer voice", "answers waiting", with_state("voice_answered", go("/voice/"))),
    Case("customer voice answers", "no answers", go("/voice/answers")),
    Case("customer voice answers", "answers unread", with_state("voice_answered", go("/voice/answers"))),
    Case("customer voice answers", "large print, answers unread",
         with_state("large_print", with_state("voice_answered", go("/voice/answers")))),
    # 12315 complaints: what about (the pinyin keyboard), then the phone (the number pad) and consent
    Case("complaint", "normal", complaint_step()),
    Case("complaint", "refused", complaint_step({"business": "x", "step": "subject"})),
    Case("complaint", "keyboard up", tap_after(complaint_step(), "#business")),
    Case("complaint", "refused, keyboard up", tap_after(complaint_step({"category": "other", "business": "x",
                                                                        "step": "subject"}), "#details")),
    Case("complaint", "large print, refused, keyboard up",
         with_state("large_print", tap_after(complaint_step({"business": "x", "step": "subject"}), "#details"))),
    Case("complaint", "phone pad", complaint_step({**COMPLAINT_SUBJECT, "step": "subject"})),
    Case("complaint", "phone pad, refused", complaint_step({**COMPLAINT_SUBJECT, "step": "record", "phone": "123",
                                                            "consent": "yes"})),
    Case("complaint", "phone masked, refused", complaint_step({**COMPLAINT_SUBJECT, "step": "record",
                                                               "phone": "0571-88889999"})),
    Case("complaint", "large print, phone masked, refused",
         with_state("large_print", complaint_step({**COMPLAINT_SUBJECT, "step": "record", "phone": "13812345678"}))),
    Case("complaint", "offline warning, phone pad",
         with_state("offline_warning", complaint_step({**COMPLAINT_SUBJECT, "step": "subject"}))),
    # The longest a hostile form may send, in wide Latin letters: refused (no category; then too long), the phone
    # refused, the phone masked and refused (no consent).
    Case("complaint", "refused, widest input", complaint_step({**COMPLAINT_WIDE, "category": "", "step": "subject"})),
    Case("complaint", "refused, too long", complaint_step({**COMPLAINT_WIDE, "details": "W" * 5000,
                                                           "business": "W" * 5000, "step": "subject"})),
    Case("complaint", "large print, refused, widest input, keyboard up",
         with_state("large_print", tap_after(complaint_step({**COMPLAINT_WIDE, "category": "", "step": "subject"}),
                                             "#details"))),
    Case("complaint", "phone pad, refused, widest input",
         complaint_step({**COMPLAINT_WIDE, "step": "record", "phone": "1" * 5000, "consent": "yes"})),
    Case("complaint", "phone masked, refused, widest input",
         complaint_step({**COMPLAINT_WIDE, "step": "record", "phone": "13812345678"})),
    Case("customer voice answers", "answers unread, widest input",
         with_state("voice_answered_wide", go("/voice/answers"))),
    Case("customer voice answers", "large print, answers unread, widest input",
         with_state("large_print", with_state("voice_answered_wide", go("/voice/answers")))),
    # first boot: the set-up screens
    Case("set-up", "not enrolled", set_up(), page="setup"),
    Case("set-up", "not a code", set_up(data={"scan": "hello"}), page="setup"),
    Case("set-up", "a code without the server", set_up(data={"scan": "K7QX-M2PD-9HWT"}), page="setup"),
    Case("set-up", "enrolling", set_up(attempt=Attempt("https://sync.bank.example", "ST-0009", 0.0)), page="setup"),
    Case("set-up", "revoked", set_up(revoked_station="ST-0009"), page="setup"),
    Case("set-up", "clock not set", set_up_clock_not_set, page="setup"),
    Case("set-up", "enrolled, another station named", set_up(station=True, station_hint="ST-0011"), page="setup"),
    Case("set-up people", "supervisor", set_up("/setup/people", station=True), page="setup"),
    Case("set-up people", "PINs differ, long typed name",
         set_up("/setup/people", {"role": "supervisor", "agent_id": "S01", "name": "欧阳阿卜杜热合曼·买买提明江",
                                  "pin": "2580", "pin_again": "2581"}, station=True), page="setup"),
    # a revoked station
    Case("revoked", "logged out", revoked("anon"), page="anon"),
    Case("revoked", "logged in", revoked("page")),
]


# -- the served station ------------------------------------------------------------------------------------------
def record_day(st) -> None:
    """Today's operations behind the receipt screens: one of each kind, a reversal, a cancelled transfer, the
    day opened and closed once before (its receipts), and ``MANY_RECEIPTS`` deposits for the list."""
    agent_id, _, _, pin = DEMO_AGENTS[0]
    supervisor_id, _, _, supervisor_pin = DEMO_AGENTS[1]
    agent = agents.login_agent(st, agent_id, pin)
    business_day.open_day(st, agent, {"10000": 300})
    business_day.close_day(st, agent, {"10000": 300})
    business_day.open_day(st, agent, {"10000": 300})
    customer = Customer.get(Customer.name == LONG_CUSTOMER_NAME)

    def auth():
        return agents.authenticate_customer(st, agent, customer, CUSTOMER_PIN)

    for index in range(MANY_RECEIPTS):
        operations.deposit_cash(st, agent, auth(), f"{100 + index}", receipts.new_txn_id())
    operations.withdraw_cash(st, agent, auth(), "500", receipts.new_txn_id())
    operations.pay_bill(st, agent, None, "MOBILE-CMCC", "13912345678", "50", receipts.new_txn_id())
    operations.balance_enquiry(st, agent, auth(), receipts.new_txn_id())
    for _ in range(2):
        transfer = operations.transfer(st, agent, auth(), *LONG_PAYEE, "300", receipts.new_txn_id(),
                                       fraud_warning_confirmed=True)
    operations.cancel_transfer(st, agent, auth(), transfer.txn, receipts.new_txn_id())
    reversed_deposit = operations.deposit_cash(st, agent, auth(), "100", receipts.new_txn_id())
    supervisor = agents.login_agent(st, supervisor_id, supervisor_pin)
    operations.reverse(st, supervisor, reversed_deposit.txn, receipts.new_txn_id(), "Wrong amount")
    operations.deposit_cash(st, agent, auth(), "200", receipts.new_txn_id())
    operations.stop_transfer(st, agent, customer, "6222000000009999", SCAM_PAYEE_NAME, "100", receipts.new_txn_id())
    from station.feedback import record_feedback

    record_feedback(st, agent, "praise", "服务热情，有耐心。" * 10, receipts.new_txn_id())
    record_complaint(st, agent, "0571-88889999", COMPLAINT_SUBJECT["business"], "other", "长" * 200, True,
                     receipts.new_txn_id())
    # Two wealth-product orders: one waiting for the bank, one it refused (the longest status line).
    today = st.local_date().isoformat()
    WmpProduct.create(code=WMP_LONG, name_zh="乡村振兴稳健增利一年定开理财产品",
                      name_en="Rural Revival Steady Income 1Y", risk_level=5, min_fen=10_000, step_fen=1,
                      opens_on=today, closes_on=today,
                      description_zh=WMP_ABOUT_ZH, description_en=WMP_ABOUT_EN)
    for index, level in enumerate((2, 3, 4, 1), start=1):
        WmpProduct.create(code=f"WM-R{level}-{index}", name_zh=f"稳健理财{index}号", name_en=f"Steady No. {index}",
                          risk_level=level, min_fen=10_000, step_fen=1_000, opens_on=today, closes_on=today,
                          description_zh=WMP_ABOUT_ZH, description_en=WMP_ABOUT_EN)
    Customer.update(risk_level=5).where(Customer.id == customer.id).execute()
    for amount in ("123.45", "100"):
        order = wmp.place_order(st, agent, auth(), WMP_LONG, amount, receipts.new_txn_id(),
                                risk_statement_read=True)
    Operation.update(status="rejected", outcome_reason="risk_level_too_low").where(Operation.txn == order.txn).execute()


@pytest.fixture(scope="module")
def counter(tmp_path_factory, browser):
    clock = FakeClock(datetime(2026, 11, 3, 1, 40, tzinfo=UTC))  # 09:40 in Beijing
    st = init_station(tmp_path_factory.mktemp("fit") / "ST-0001", "ST-0001", clock=clock)
    load_demo_customers(st, count=20)
    st.config["printer"] = {"kind": "dummy"}
    with ExitStack() as stack, st.bound():
        stack.callback(st.close)
        plain, long_one = (Customer.select().where(Customer.card_number.is_null(False))
                                  .where(Customer.id.not_in(Payee.select(Payee.customer)))
                                  .order_by(Customer.id)[:2])
        with_payee = Payee.select().order_by(Payee.id).first().customer
        long_with_payee = Payee.select().order_by(Payee.id.desc()).first().customer
        Customer.update(name=LONG_CUSTOMER_NAME).where(Customer.id.in_([long_one.id, long_with_payee.id])).execute()
        Payee.create(customer=long_with_payee, account=LONG_PAYEE[0], name=LONG_PAYEE_NAME)
        record_day(st)
        app = create_app({"STATION": st, "SECRET_KEY": "fit-test"})
        base = stack.enter_context(serving(app))
        page, anon, setup = new_page(browser), new_page(browser), new_page(browser)
        for each in (page, anon, setup):
            stack.callback(each.close)
        # A device not enrolled yet, and a station enrolled with nobody added (the set-up's people step).
        first_boot = FirstBoot(tmp_path_factory.mktemp("device") / "device", clock=clock)
        new_station = init_station(tmp_path_factory.mktemp("new") / "ST-0010", "ST-0010", clock=clock)
        stack.callback(new_station.close)
        setup_base = stack.enter_context(serving(SetupDispatcher(first_boot, create_app, SECRET_KEY="fit-test")))
        setup.goto(setup_base + "/setup")
        page.goto(base + f"/login?agent_id={DEMO_AGENTS[0][0]}")
        for digit in AGENT_PIN:
            page.click(f'.keypad [data-key="{digit}"]')
        page.click("#login")
        page.wait_for_url(base + "/home")
        anon.goto(base + "/login")
        customers = {"plain": plain, "long": Customer.get_by_id(long_one.id),
                     "with payee": with_payee, "long with payee": Customer.get_by_id(long_with_payee.id)}
        c = Counter(st, clock, base, page, anon, setup, setup_base, first_boot, new_station, [None], customers)
        c.app = app
        yield c


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_screen_fits(counter, case, lang):
    page = getattr(counter, case.page)
    page.console_errors.clear()
    with ExitStack() as stack:
        counter.stack = stack
        if counter.languages.get(case.page) != lang:  # the cases run language by language
            counter.language(lang, page=page)
            counter.languages[case.page] = lang
        case.reach(counter)
        # An error screen comes with its HTTP status (404, 409, 503): Chromium logs that, and it is no script error.
        page.console_errors[:] = [text for text in page.console_errors if not REFUSED_PAGE.fullmatch(text)]
        missing = [selector for selector in case.shows() if not page.locator(selector).first.is_visible()]
        assert missing == [], f"{case.id} in {lang} ({page.url}) did not reach its state: nothing shows {missing}"
        check_screen(page, f"{case.id} in {lang}")
    assert page.evaluate("document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en"), case.id
