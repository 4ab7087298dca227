"""Wealth-management products (理财) end to end, on SQLite and PostgreSQL (``TEST_DATABASE_URL``): the bank's
catalogue and the customers' risk levels reach the station; the station refuses an order above the customer's level
and records nothing; the bank confirms an order or refuses it (sold out, closed, risk level lowered, forged) and a
refused one releases the money; ``sync-server wmp`` and ``customers risk-level`` refuse bad input in one line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from conftest import wall_clock
from sync_support import BACKENDS, append_forged_entry, enrolled_station, open_counter, server_db, start_module_bank
from ui_helpers import txn_of

from station import agents, errors, receipts, wmp
from station.app import create_app
from station.db import Customer, JournalEntry, Operation, WmpProduct
from station.demo import DEMO_AGENTS
from station.limits import offline_available
from station.protocol.demo_data import DEMO_CUSTOMER_PIN
from station.protocol.entry_types import OperationState
from station.sync import sync_once
from sync_server.admin import AdminError
from sync_server.checks import check_ledger
from sync_server.cli import cli
from sync_server.db import Account, Hold, ReconItem, db_proxy
from sync_server.db import WmpProduct as BankProduct
from sync_server.wmp import add_product, close_product, set_risk_level

CAUTIOUS = "DM00010000"  # assessed R2
BOLD = "DM00010001"  # assessed R4
UNASSESSED = "DM00010002"
LATE = "DM00020003"  # home at ST-0002 only
LOCAL = ZoneInfo("Asia/Shanghai")


def today(days: int = 0) -> str:
    return (datetime.now(LOCAL) + timedelta(days=days)).date().isoformat()


def product(code: str, risk: int, *, minimum="100", step="10", quota="1000000", opens=-1, closes=5) -> None:
    add_product(code, name_zh=f"稳健理财{code[-2:]}", name_en=f"Steady {code[-2:]}", risk_level=risk,
                minimum=minimum, step=step, opens_on=today(opens), closes_on=today(closes), quota=quota,
                description_zh="投资于存款和债券，净值会波动，可能亏损本金。", description_en="Invests in deposits and "
                "bonds; its value moves and the capital can be lost.")


@pytest.fixture(scope="module", params=BACKENDS)
def bank(request, tmp_path_factory):
    """One bank with its catalogue and assessed customers, and its station ST-0001 (day open, agent A01)."""
    tmp = tmp_path_factory.mktemp("wmp")
    server = start_module_bank(request, tmp, ["ST-0001", "ST-0002"])
    server_db()
    product("WM-R2", 2)
    product("WM-R4", 4)
    product("WM-SMALL", 1, minimum="100", step="100", quota="500")
    product("WM-SHUT", 1)
    product("WM-LATER", 1, opens=3, closes=9)
    product("WM-ENDED", 1, opens=-3, closes=-1)
    set_risk_level(CAUTIOUS, "R2")
    set_risk_level(BOLD, "4")
    st = enrolled_station(server, tmp, "ST-0001", wall_clock())
    agent, _supervisor = open_counter(st)
    yield server, st, agent
    st.close()
    server.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


def customer_auth(st, session, account_id):
    with st.bound():
        customer = Customer.get(Customer.account_id == account_id)
    return customer, agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)


def order(st, session, account_id, code, amount, **kwargs):
    _, auth = customer_auth(st, session, account_id)
    return wmp.place_order(st, session, auth, code, amount, receipts.new_txn_id(),
                           risk_statement_read=kwargs.pop("read", True), **kwargs)


def central(account_id: str, station_id: str = "ST-0001") -> tuple[int, int]:
    """(balance, the station's hold) of a customer at the bank."""
    server_db()
    hold = Hold.get_or_none((Hold.station_id == station_id) & (Hold.account_id == account_id))
    return Account.get_by_id(account_id).balance_fen, hold.amount_fen if hold else 0


def allowance_left(st, account_id: str) -> int:
    with st.bound():
        return offline_available(st, Customer.get(Customer.account_id == account_id))


def status_of(st, txn: str) -> tuple[str, str | None]:
    with st.bound():
        op = Operation.get_by_id(txn)
    return op.status, op.outcome_reason


def test_the_catalogue_and_the_risk_levels_reach_the_station(bank):
    _, st, _ = bank
    with st.bound():
        # The demo data's products (WM-DEMO-*) are there too.
        products = {p.code: p for p in WmpProduct.select().where(~WmpProduct.code.startswith("WM-DEMO"))}
        levels = {c.account_id: c.risk_level for c in Customer.select().where(
            Customer.account_id.in_([CAUTIOUS, BOLD, UNASSESSED]))}
        shown = [p.code for p in wmp.open_products(st) if not p.code.startswith("WM-DEMO")]
    assert set(products) == {"WM-R2", "WM-R4", "WM-SMALL", "WM-SHUT", "WM-LATER", "WM-ENDED"}
    assert (products["WM-R2"].risk_level, products["WM-R2"].min_fen, products["WM-R2"].step_fen) == (2, 10_000, 1_000)
    assert products["WM-R2"].description_zh.startswith("投资于存款和债券")
    # WM-LATER's window opens in three days, WM-ENDED's closed yesterday.
    assert shown == ["WM-R2", "WM-R4", "WM-SHUT", "WM-SMALL"]
    assert levels == {CAUTIOUS: 2, BOLD: 4, UNASSESSED: None}


def test_an_order_above_the_customers_level_is_refused_at_the_station_and_nothing_is_recorded(bank):
    _, st, agent = bank
    with st.bound():
        head = JournalEntry.select().count()
    customer, _ = customer_auth(st, agent, CAUTIOUS)
    with pytest.raises(errors.WmpRiskLevelTooLow) as refused:
        wmp.check_customer(st, agent, customer, "WM-R4")
    assert "R4" in refused.value.message and "R2" in refused.value.message
    with pytest.raises(errors.WmpRiskLevelTooLow):
        order(st, agent, CAUTIOUS, "WM-R4", "1000")
    with pytest.raises(errors.WmpNotAssessed):
        order(st, agent, UNASSESSED, "WM-R2", "1000")
    with pytest.raises(errors.WmpWindowClosed):
        order(st, agent, BOLD, "WM-LATER", "1000")
    with pytest.raises(errors.UnknownWmpProduct):
        order(st, agent, BOLD, "WM-NONE", "1000")
    with pytest.raises(errors.WmpAmountRule):
        order(st, agent, BOLD, "WM-R2", "105")  # the minimum is 100, then steps of 10
    with pytest.raises(errors.WmpAmountRule):
        order(st, agent, BOLD, "WM-R2", "90")
    with pytest.raises(errors.WmpRiskStatementRequired):
        order(st, agent, BOLD, "WM-R2", "110", read=False)
    with pytest.raises(errors.OverOfflineAllowance):
        order(st, agent, BOLD, "WM-R2", "1010")  # the allowance is 1,000 yuan
    for hostile in ("-100", "1e3", "NaN", "100.001", "", "0", 10**30):
        with pytest.raises(errors.InvalidAmount):
            order(st, agent, BOLD, "WM-R2", hostile)
    with st.bound():
        assert JournalEntry.select().count() == head
        assert not Operation.select().where(Operation.type == "wmp_order").exists()


def test_an_order_confirmed_and_one_refused_sold_out_releases_the_money(bank):
    _, st, agent = bank
    balance, hold = central(BOLD)
    before = allowance_left(st, BOLD)
    assert before == hold
    first = order(st, agent, BOLD, "WM-SMALL", "300")
    second = order(st, agent, BOLD, "WM-SMALL", "300")  # only 200 yuan of the quota will be left
    assert first.status == second.status == OperationState.RECORDED
    assert allowance_left(st, BOLD) == before - 60_000  # both held until the bank answers
    result = sync_once(st)
    assert result.rejected == {second.seq: "sold_out"}
    assert status_of(st, first.txn) == (OperationState.SETTLED, None)
    assert status_of(st, second.txn) == (OperationState.REJECTED, "sold_out")
    assert central(BOLD)[0] == balance - 30_000  # only the confirmed order was taken
    server_db()
    assert BankProduct.get_by_id("WM-SMALL").quota_fen == 20_000
    assert Account.get_by_id("wmp_subscriptions:WM-SMALL:ST-0001").balance_fen == 30_000
    # The refused order's money is free again: the allowance comes back whole after the sync.
    assert allowance_left(st, BOLD) == central(BOLD)[1]
    # A refusal is the bank's ordinary answer: no money to recover, no reconciliation item.
    assert not ReconItem.select().where(ReconItem.seq == second.seq).exists()
    assert check_ledger() == []


def test_the_bank_refuses_an_order_for_a_product_it_closed_or_a_customer_it_reassessed(bank):
    _, st, agent = bank
    balance, _ = central(CAUTIOUS)
    shut = order(st, agent, BOLD, "WM-SHUT", "100")
    lowered = order(st, agent, CAUTIOUS, "WM-R2", "150")
    server_db()
    close_product("WM-SHUT")
    set_risk_level(CAUTIOUS, "1")
    assert sync_once(st).rejected == {shut.seq: "window_closed", lowered.seq: "risk_level_too_low"}
    assert status_of(st, lowered.txn) == (OperationState.REJECTED, "risk_level_too_low")
    assert central(CAUTIOUS)[0] == balance
    assert allowance_left(st, CAUTIOUS) == central(CAUTIOUS)[1]
    with st.bound():
        assert not WmpProduct.select().where(WmpProduct.code == "WM-SHUT").exists()  # gone from the catalogue
        assert Customer.get(Customer.account_id == CAUTIOUS).risk_level == 1
    with pytest.raises(errors.WmpRiskLevelTooLow):
        order(st, agent, CAUTIOUS, "WM-R2", "150")
    set_risk_level(CAUTIOUS, "2")
    sync_once(st)


def test_an_order_made_offline_on_the_windows_last_day_and_synced_after_it_is_refused(bank, tmp_path):
    """The bank checks the window on the entry's local date and on the day the order arrives."""
    server, _, _ = bank
    behind = wall_clock()
    behind.now -= timedelta(days=1)  # the station's yesterday: WM-ENDED's last day
    late = enrolled_station(server, tmp_path, "ST-0002", behind)
    try:
        agent, _supervisor = open_counter(late)
        server_db()
        set_risk_level(LATE, "1")
        sync_once(late)
        balance, hold = central(LATE, "ST-0002")
        placed = order(late, agent, LATE, "WM-ENDED", "100")
        assert sync_once(late).rejected == {placed.seq: "window_closed"}
        assert status_of(late, placed.txn) == (OperationState.REJECTED, "window_closed")
        assert central(LATE, "ST-0002") == (balance, hold)
    finally:
        late.close()


def forge(st, body: dict) -> int:
    with st.write():
        return append_forged_entry(st, "wmp_order", st.now(), {"agent": "A01", **body},
                                   txn=receipts.new_txn_id()).seq


def test_the_bank_rechecks_every_forged_order(bank):
    """Signed by the station's key, yet against the bank's rules: each refused with its reason, nothing posted."""
    _, st, _ = bank
    balance, _ = central(CAUTIOUS)

    def body(**changes):
        return {"account": CAUTIOUS, "amount": 10_000, "product": "WM-R2", "risk_level": 2, "warned": True,
                **changes}

    seqs = {
        "risk": forge(st, body(product="WM-R4", risk_level=2)),  # the bank knows WM-R4 is R4, the customer R2
        "unread": forge(st, body(warned=False)),
        "unknown": forge(st, body(product="WM-NONE")),
        "not yet open": forge(st, body(product="WM-LATER")),
        "step": forge(st, body(amount=10_500)),
        "below the minimum": forge(st, body(amount=9_000)),
        "over the allowance": forge(st, body(amount=500_000)),
        "a stranger": forge(st, body(account="NOBODY01")),
        "a product code that is a number": forge(st, body(product=7)),
        "a float amount": forge(st, body(amount=100.5)),
        "a fee": forge(st, body(fee=100)),
        "fine": forge(st, body()),
    }
    assert sync_once(st).rejected == {
        seqs["risk"]: "risk_level_too_low", seqs["unread"]: "risk_statement_unread",
        seqs["unknown"]: "unknown_product", seqs["not yet open"]: "window_closed",
        seqs["step"]: "amount_rule", seqs["below the minimum"]: "amount_rule",
        seqs["over the allowance"]: "not_authorized", seqs["a stranger"]: "unknown_account",
        seqs["a product code that is a number"]: "malformed_entry", seqs["a float amount"]: "invalid_amount",
        seqs["a fee"]: "malformed_entry"}
    assert central(CAUTIOUS)[0] == balance - 10_000
    assert check_ledger() == []


@pytest.fixture
def invoke(bank):
    server, _, _ = bank

    def call(*args: str):
        result = CliRunner().invoke(cli, [*args, "--database-url", server.database_url])
        server_db()
        return result

    return call


ADD = ["wmp", "add", "WM-CLI", "--name-zh", "新品", "--name-en", "New", "--risk", "3", "--min", "1000", "--step",
       "100", "--opens", "2026-12-01", "--closes", "2026-12-07", "--quota", "50000", "--description-zh",
       "投资于债券，可能亏损。", "--description-en", "Invests in bonds; may lose money."]


def with_option(option: str, value: str) -> list[str]:
    """``ADD`` with ``option``'s value (or, for ``code``, the product code) replaced."""
    args = list(ADD)
    args[2 if option == "code" else args.index(option) + 1] = value
    return args


@pytest.mark.parametrize("args, message", [
    (with_option("code", "wm cli"), "code must be 2 to 32 capital letters, digits or '-'"),
    (with_option("--min", "-5"), "minimum:"),
    (with_option("--step", "1e3"), "step:"),
    (with_option("--quota", "500"), "the minimum is more than the quota"),
    (with_option("--opens", "2026-12-31"), "the window closes before it opens"),
    (with_option("--closes", "next week"), "closes must be a date"),
    (with_option("--name-zh", "新\n品"), "name_zh must be one line"),
    (with_option("--description-zh", "年化收益率4.5%，保本"), "description_zh states a rate, a guarantee or advice"),
    (with_option("--description-en", "Guaranteed 3% a year"), "description_en states a rate"),
])
def test_wmp_add_refuses_bad_fields_in_one_line(invoke, args, message):
    result = invoke(*args)
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_wmp_add_list_close_and_risk_level_from_the_command_line(invoke):
    assert invoke(*ADD).output == "Product WM-CLI added (R3, 2026-12-01 to 2026-12-07).\n"
    assert "exists already" in invoke(*ADD).output
    rows = json.loads(invoke("wmp", "list", "--json").output)
    assert {row["code"]: (row["status"], row["quota_fen"]) for row in rows}["WM-CLI"] == ("open", 5_000_000)
    assert invoke("wmp", "close", "WM-CLI").output == "Product WM-CLI closed.\n"
    assert "WM-CLI\tclosed\t3\t100000\t10000\t5000000" in invoke("wmp", "list").output
    assert invoke("wmp", "close", "WM-NOPE").output == "Error: No product WM-NOPE.\n"
    assert invoke("customers", "risk-level", UNASSESSED, "R5").output == f"Customer {UNASSESSED}: risk level R5.\n"
    assert invoke("customers", "risk-level", UNASSESSED, "none").output == (
        f"Customer {UNASSESSED}: risk level none (not assessed).\n")
    for bad in ("6", "R0", "high", "３"):
        result = invoke("customers", "risk-level", UNASSESSED, bad)
        assert result.exit_code == 1 and "the risk level is 1 to 5" in result.output
    assert invoke("customers", "risk-level", "NOBODY01", "3").output == "Error: No customer NOBODY01.\n"


def test_the_customer_csv_carries_the_risk_level():
    from sync_server.admin import parse_customers_csv

    header = "account_id,name,pin,home_stations,risk_level\n"
    rows = parse_customers_csv(header + "RL000001,李四,123456,ST-0001,R3\nRL000002,王五,123456,ST-0001,\n",
                               pin_log2_n=8)
    assert [row["risk_level"] for row in rows] == [3, None]
    with pytest.raises(AdminError) as failed:
        parse_customers_csv(header + "RL000003,赵六,123456,ST-0001,6\n", pin_log2_n=8)
    assert "risk_level must be 1 to 5" in str(failed.value)


def to_confirm(client, customer, code: str, amount: str) -> str:
    """Walk the touchscreen flow to the confirm screen; its page."""
    assert client.post("/op/wmp_order/start").status_code == 302
    client.post("/op/wmp_order/customer", data={"id_kind": "card", "number": customer.card_number})
    assert client.post("/op/wmp_order/product", data={"product": code}).location.endswith("/amount")
    assert client.post("/op/wmp_order/amount", data={"amount": amount}).location.endswith("/statement")
    client.post("/op/wmp_order/statement", data={"read": "yes"})
    return client.get("/op/wmp_order/confirm").get_data(as_text=True)


def order_on_the_touchscreen(client, customer, code: str, amount: str) -> str:
    """Walk the touchscreen flow to the receipt; its page, unescaped."""
    confirm = to_confirm(client, customer, code, amount)
    client.post("/op/wmp_order/confirm", data={"txn": txn_of(confirm)})
    pin = client.get("/op/wmp_order/pin").get_data(as_text=True)
    done = client.post("/op/wmp_order/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(pin)})
    assert "/receipts/" in done.location
    return unescape(client.get(done.location).get_data(as_text=True))


def test_online_the_bank_is_asked_before_the_pin_and_the_receipt_shows_its_answer(bank):
    """With the link up the bank authorizes the order before the PIN and the order is pushed right after it: the
    receipt shows the bank's confirmation. An order for more than is left is refused on the confirm screen (sold
    out): no PIN, nothing recorded, nothing taken (tests/test_wmp_online.py has the rest)."""
    _, st, _ = bank
    server_db()
    product("WM-ONLINE", 1, minimum="100", step="50", quota="150")
    sync_once(st)
    balance, _ = central(BOLD)
    app = create_app({"STATION": st, "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test"})
    client = app.test_client()
    with st.bound():
        customer = Customer.get(Customer.account_id == BOLD)
        client.post("/login", data={"agent_id": "A01", "pin": DEMO_AGENTS[0][3]})
        client.post("/lang", data={"lang": "en", "next": "/"})
        confirmed = order_on_the_touchscreen(client, customer, "WM-ONLINE", "100")
        assert client.post("/op/wmp_order/start").status_code == 302
        client.post("/op/wmp_order/customer", data={"id_kind": "card", "number": customer.card_number})
        client.post("/op/wmp_order/product", data={"product": "WM-ONLINE"})
        client.post("/op/wmp_order/amount", data={"amount": "100"})
        client.post("/op/wmp_order/statement", data={"read": "yes"})
        confirm = client.get("/op/wmp_order/confirm").get_data(as_text=True)
        head = JournalEntry.select().count()
        refused = client.post("/op/wmp_order/confirm", data={"txn": txn_of(confirm)}).get_data(as_text=True)
        recorded = JournalEntry.select().count() - head
    assert "Order confirmed by the bank" in confirmed
    assert "The bank refused: this product is sold out. Nothing was recorded." in unescape(refused)
    assert recorded == 0
    assert central(BOLD)[0] == balance - 10_000
    server_db()
    assert BankProduct.get_by_id("WM-ONLINE").quota_fen == 5_000
