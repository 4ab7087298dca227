"""The fraud warning on the touchscreen (Chromium at 800x480, a station enrolled with the real sync server on
loopback), as the pension-day story tells it: a man told by "the police" to move money to a "safe account" types a
payee called 公安局安全账户; below every threshold the warning shows all the same, with 96110, and asks to call
the elderly customer's family; he stops, the receipts list shows the stopped attempt, it syncs and the bank's
``sync-server fraud stopped`` lists it. A transfer at the supervisor threshold needs the supervisor's PIN on the
warning screen (a wrong one refused with a message) and the bank settles it naming the supervisor. Every state of
the warning fits, in Chinese and in English."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from conftest import FakeClock
from sync_support import enrolled_station, open_counter, server_db, start_module_bank
from ui_browser_support import check_screen, log_in, new_page, serving, tap_keys
from ui_helpers import CUSTOMER_PIN

from station.app import create_app
from station.db import Customer, JournalEntry, Operation
from station.demo import DEMO_AGENTS
from station.protocol.scams import is_elderly
from station.protocol.tokens import unverified_payload
from station.sync import sync_once
from sync_server.cli import cli
from sync_server.db import ServerSetting, db_proxy

SCAM_PAYEE = ("6222000000007777", "公安局安全账户")
SUPERVISOR_PIN = DEMO_AGENTS[1][3]
LONGEST_NAME = "最高人民法院专案组公安局安全账户资金核查冻结验资通缉洗钱专户"


@pytest.fixture(scope="module")
def live(request, tmp_path_factory, browser):
    """(bank, station, base url, page): a SQLite bank whose stations ask the supervisor from 500 yuan, ST-0001
    enrolled with its day open, the app served, one page at 800x480 for the module."""
    request.param = "sqlite"  # the screens are the same whatever the bank's database (test_fraud_server: both)
    tmp = tmp_path_factory.mktemp("fraud-browser")
    bank = start_module_bank(request, tmp, ["ST-0001"])
    server_db()
    policy = ServerSetting.get_by_id("policy")
    ServerSetting.update(value={**policy.value, "station": {"fraud_supervisor_fen": 50_000}}).where(
        ServerSetting.key == "policy").execute()
    st = enrolled_station(bank, tmp, "ST-0001", FakeClock(datetime.now(UTC).replace(microsecond=0)))
    open_counter(st)
    app = create_app({"STATION": st, "SECRET_KEY": "browser-test"})
    with st.bound(), serving(app) as base:
        page = new_page(browser)
        log_in(page, base)  # each test may run alone (or on another xdist worker)
        yield bank, st, base, page
        page.close()
    st.close()
    bank.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


def customer(elderly: bool) -> Customer:
    year = datetime.now(UTC).year
    query = Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id)
    return next(c for c in query if is_elderly(c.birth_year, year, 60) == elderly)


def to_the_warning(page, base, who: Customer, payee: tuple[str, str], yuan: str) -> None:
    page.goto(base + "/home")
    page.click("#tile-transfer")
    tap_keys(page, who.card_number)
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/payee")
    tap_keys(page, payee[0])
    page.fill("#payee_name", payee[1])
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/amount")
    tap_keys(page, yuan)
    page.click("#next")
    page.wait_for_url(base + "/op/transfer/warning")


def test_a_scam_stopped_at_the_counter_reaches_the_bank(live):
    bank, st, base, page = live
    elderly = customer(elderly=True)
    to_the_warning(page, base, elderly, SCAM_PAYEE, "100")  # far below every threshold
    check_screen(page)
    assert "公安" in page.inner_text("#warning-why") and "安全账户" in page.inner_text("#warning-why")
    assert "请拨打96110反诈专线核实" in page.inner_text("#hotline")
    assert page.locator("#hotline b").inner_text() == "96110"
    assert "请先给家人打电话" in page.inner_text("#call-family")
    page.click("#do-not-send")
    page.wait_for_url(base + "/home")
    assert "钱没有转出" in page.inner_text(".flash")
    assert Operation.select().count() == 0

    page.goto(base + "/receipts/")
    row = page.locator("#receipts tr", has_text="转账已终止")
    assert "¥100.00" in row.inner_text() and "未转出" in row.inner_text()
    row.locator("a").click()
    page.wait_for_selector("#receipt")
    check_screen(page)
    assert "未转出" in page.inner_text("#status") and "安全账户" in page.inner_text("#stopped-why")

    assert sync_once(st).rejected == {}
    listed = CliRunner().invoke(cli, ["fraud", "stopped", "--station", "ST-0001", "--database-url",
                                      bank.database_url])
    assert listed.exit_code == 0, listed.output
    assert [line.split("\t")[4:8] for line in listed.output.splitlines()] == [
        [elderly.account_id, "10000", *SCAM_PAYEE]]


def test_at_the_supervisor_threshold_the_supervisors_pin_lets_it_through(live):
    bank, st, base, page = live
    younger = customer(elderly=False)
    to_the_warning(page, base, younger, ("6222000000008888", "王小明"), "600")
    check_screen(page)
    assert page.locator("#call-family").count() == 0 and "新收款人" in page.inner_text("#warning-why")
    page.click("#confirm-warning")  # "continue with a supervisor's PIN"
    page.wait_for_selector("#approve-warning")
    check_screen(page)
    assert "96110" in page.inner_text("#hotline")
    page.click("#approve-warning")  # no PIN typed
    page.wait_for_selector("#error")
    check_screen(page)
    tap_keys(page, "000000")
    page.click("#approve-warning")
    page.wait_for_selector("#error")
    assert "密码错误" in page.inner_text("#error")
    check_screen(page)
    assert page.url == base + "/op/transfer/warning"
    tap_keys(page, SUPERVISOR_PIN)
    page.click("#approve-warning")
    page.wait_for_url(base + "/op/transfer/confirm")
    page.click("#confirm")
    page.wait_for_url(base + "/op/transfer/pin")
    tap_keys(page, CUSTOMER_PIN)
    page.click("#pin-ok")
    page.wait_for_selector("#receipt")
    entry = JournalEntry.get(JournalEntry.type == "transfer")
    assert {k: v for k, v in unverified_payload(entry.token).items() if k in ("warned", "approved_by")} == {
        "warned": True, "approved_by": "S01"}
    sync_once(st)
    assert Operation.get(Operation.type == "transfer").status == "settled"


def test_every_state_of_the_warning_fits_in_english(live):
    _, _, base, page = live
    page.goto(base + "/home")
    page.click("text=English")
    # The longest warning: a 30-character name with seven scam words, every reason, an elderly customer.
    to_the_warning(page, base, customer(elderly=True), (SCAM_PAYEE[0], LONGEST_NAME), "6000")
    check_screen(page)
    assert "96110" in page.inner_text("#hotline") and "elderly" in page.inner_text("#call-family")
    page.click("#confirm-warning")
    page.wait_for_selector("#approve-warning")
    check_screen(page)
    tap_keys(page, "1234")
    page.click("#approve-warning")
    page.wait_for_selector("#error")
    assert "Wrong PIN" in page.inner_text("#error")
    check_screen(page)
    page.click("#do-not-send")  # the customer still stops: journaled like the first
    page.wait_for_url(base + "/home")
    assert JournalEntry.select().where(JournalEntry.type == "transfer_stopped").count() == 2
