"""Wealth-product orders (理财) online, on SQLite and PostgreSQL (``TEST_DATABASE_URL``): with the link up the bank
authorizes an order in real time (kind ``wmp_order``) before the PIN and the order is recorded under its grant, not
against the offline allowance; the bank refuses an unknown product, a closed window, a risk level too low, an amount
off the product's steps and a sold-out product, each in words and with nothing recorded or held; two stations
ordering the last of a quota at once sell exactly the quota; with the link down the order stays within the offline
allowance. The touchscreen's online path, confirmed and refused, in Chinese and English."""

from __future__ import annotations

import threading
from datetime import datetime
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from conftest import wall_clock
from sync_support import BACKENDS, enrolled_station, open_counter, server_db, start_module_bank
from test_wmp_server import product as catalogue_product
from test_wmp_server import to_confirm
from ui_helpers import error_of, txn_of

from station import agents, errors, online, receipts, wmp
from station.app import create_app
from station.db import Customer, JournalEntry, Operation
from station.demo import DEMO_AGENTS
from station.limits import offline_available
from station.link import note_failure, note_success
from station.protocol import authorizations as protocol
from station.protocol import key_codecs
from station.protocol.demo_data import DEMO_CUSTOMER_PIN
from station.protocol.entry_types import OperationState
from station.protocol.heads import new_nonce
from station.protocol.times import utc_text
from station.protocol.tokens import unverified_payload
from station.sync import sync_once
from sync_server.authorize import authorize
from sync_server.book import Book
from sync_server.checks import check_ledger
from sync_server.db import Account, Authorization, Hold, db_proxy
from sync_server.db import WmpProduct as BankProduct
from sync_server.problems import Problem
from sync_server.wmp import close_product, set_risk_level

CAUTIOUS = "DM00010000"  # home at ST-0001, assessed R2 here
BOLD = "DM00010001"  # home at ST-0001, assessed R4 here
FAR = "DM00020003"  # home at ST-0002 only, assessed R4 here
LOCAL = ZoneInfo("Asia/Shanghai")


def product(code: str, risk: int = 1, **rules) -> None:
    server_db()
    catalogue_product(code, risk, **rules)


@pytest.fixture(scope="module", params=BACKENDS)
def bank(request, tmp_path_factory):
    """One bank and its two stations, each with its counter open: (server, (st, agent), (st2, agent2))."""
    tmp = tmp_path_factory.mktemp("wmp-online")
    server = start_module_bank(request, tmp, ["ST-0001", "ST-0002"])
    server_db()
    set_risk_level(CAUTIOUS, "R2")
    set_risk_level(BOLD, "4")
    set_risk_level(FAR, "4")
    st = enrolled_station(server, tmp, "ST-0001", wall_clock())
    st2 = enrolled_station(server, tmp, "ST-0002", wall_clock())
    agent, _ = open_counter(st)
    agent2, _ = open_counter(st2)
    yield server, (st, agent), (st2, agent2)
    st.close()
    st2.close()
    server.stop()
    if not db_proxy.obj.is_closed():
        db_proxy.obj.close()


def synced(st, *codes: str) -> None:
    """The products added at the bank reach the station (the downlink sends a changed catalogue)."""
    sync_once(st)
    with st.bound():
        shown = {p.code for p in wmp.open_products(st)}
    assert set(codes) <= shown


def customer_of(st, account_id: str) -> Customer:
    with st.bound():
        return Customer.get(Customer.account_id == account_id)


def ask(st, agent, account_id: str, code: str, fen: int, txn: str | None = None):
    """Ask the bank for an order: (txn, grant); a refusal is raised."""
    txn = txn or receipts.new_txn_id()
    return txn, online.authorize(st, "wmp_order", txn=txn, agent=agent.agent_id, account=account_id, amount=fen,
                                 fee=0, product=code)


def place(st, agent, account_id: str, code: str, amount: str, txn: str, grant=None):
    customer = customer_of(st, account_id)
    auth = agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN)
    return wmp.place_order(st, agent, auth, code, amount, txn, risk_statement_read=True, authorization=grant)


def central(account_id: str, station_id: str = "ST-0001") -> tuple[int, int]:
    """(balance, the station's offline hold) of a customer at the bank."""
    server_db()
    hold = Hold.get_or_none((Hold.station_id == station_id) & (Hold.account_id == account_id))
    return Account.get_by_id(account_id).balance_fen, hold.amount_fen if hold else 0


def available(account_id: str) -> int:
    server_db()
    return Book("-", {account_id}, utc_text(datetime.now(LOCAL))).available(account_id)


def quota(code: str) -> int:
    server_db()
    return BankProduct.get_by_id(code).quota_fen


def journal_length(st) -> int:
    with st.bound():
        return JournalEntry.select().count()


def status_of(st, txn: str) -> tuple[str, str | None]:
    with st.bound():
        op = Operation.get_by_id(txn)
    return op.status, op.outcome_reason


def link_up(st) -> None:
    note_success(st, "probe")


def test_an_order_granted_online_is_recorded_under_the_grant_and_confirmed(bank):
    _, (st, agent), _ = bank
    product("WM-ON-OK", quota="5000")
    synced(st, "WM-ON-OK")
    balance, hold = central(BOLD)
    free = available(BOLD)
    allowance = offline_available(st, customer_of(st, BOLD))
    txn, grant = ask(st, agent, BOLD, "WM-ON-OK", 30_000)
    assert grant.granted and grant.kind == "wmp_order"
    server_db()
    row = Authorization.get_by_id(grant.auth_id)
    assert (row.product, row.hold_fen, row.status) == ("WM-ON-OK", 30_000, "active")
    assert available(BOLD) == free - 30_000  # the grant holds the amount
    receipt = place(st, agent, BOLD, "WM-ON-OK", "300", txn, grant)
    assert unverified_payload(receipt.token)["auth"] == grant.auth_id
    # The bank holds it, not the offline allowance.
    assert offline_available(st, customer_of(st, BOLD)) == allowance
    assert online.push_now(st)
    assert status_of(st, txn) == (OperationState.SETTLED, None)
    assert central(BOLD) == (balance - 30_000, hold)
    assert quota("WM-ON-OK") == 470_000
    server_db()
    assert Authorization.get_by_id(grant.auth_id).status == "used"
    assert available(BOLD) == free - 30_000
    # Applied once: the same txn asked again is the same grant, used, and holds nothing more.
    _, again = ask(st, agent, BOLD, "WM-ON-OK", 30_000, txn=txn)
    assert again.auth_id == grant.auth_id
    sync_once(st)
    assert quota("WM-ON-OK") == 470_000 and central(BOLD)[0] == balance - 30_000
    assert check_ledger() == []


def test_an_online_order_larger_than_the_offline_allowance_succeeds(bank):
    _, (st, agent), _ = bank
    product("WM-ON-BIG")
    synced(st, "WM-ON-BIG")
    customer = customer_of(st, BOLD)
    allowance = offline_available(st, customer)
    balance, _ = central(BOLD)
    fen = (allowance // 100 // 100 + 2) * 100 * 100  # whole hundreds of yuan beyond the allowance
    assert allowance < fen <= available(BOLD) + central(BOLD)[1]
    with pytest.raises(errors.OverOfflineAllowance):
        wmp.check_order(st, agent, customer, "WM-ON-BIG", str(fen // 100))
    assert wmp.check_order(st, agent, customer, "WM-ON-BIG", str(fen // 100), ask_bank=True) == fen
    txn, grant = ask(st, agent, BOLD, "WM-ON-BIG", fen)
    place(st, agent, BOLD, "WM-ON-BIG", str(fen // 100), txn, grant)
    assert online.push_now(st)
    assert status_of(st, txn) == (OperationState.SETTLED, None)
    assert central(BOLD)[0] == balance - fen
    assert check_ledger() == []


@pytest.mark.parametrize("reason", ["unknown_product", "window_closed", "risk_level_too_low", "amount_rule",
                                    "sold_out"])
def test_each_refusal_of_the_bank_is_worded_and_takes_nothing(bank, reason):
    _, (st, agent), _ = bank
    code = f"WM-NO-{reason.upper().replace('_', '-')}"[:32]
    product(code, 2, quota="150")
    synced(st, code)
    account, ordered, fen = BOLD, code, 10_000
    if reason == "unknown_product":
        ordered = "WM-NOWHERE"
    elif reason == "window_closed":
        close_product(code)
    elif reason == "risk_level_too_low":
        set_risk_level(CAUTIOUS, "1")  # reassessed at the bank; the station still holds R2
        account = CAUTIOUS
    elif reason == "amount_rule":
        fen = 10_500
    else:
        fen = 20_000
    balance, hold = central(account)
    free, head = available(account), journal_length(st)
    txn = receipts.new_txn_id()
    try:
        with pytest.raises(errors.BankRefused) as refused:
            ask(st, agent, account, ordered, fen, txn)
    finally:
        set_risk_level(CAUTIOUS, "R2")
    assert type(refused.value) is errors.BANK_REFUSALS[reason] and refused.value.reason == reason
    assert refused.value.message.startswith("The bank refused: ")
    assert journal_length(st) == head
    assert central(account) == (balance, hold) and available(account) == free
    server_db()
    row = Authorization.get(Authorization.txn == txn)
    assert (row.status, row.reason, row.hold_fen) == ("refused", reason, 0)
    assert check_ledger() == []


def test_offline_the_order_stays_within_the_allowance(bank):
    _, (st, agent), _ = bank
    product("WM-OFF")
    synced(st, "WM-OFF")
    server_db()
    asked = Authorization.select().count()
    note_failure(st, "probe", "refused")  # the link is known down: the bank is not asked
    try:
        customer = customer_of(st, BOLD)
        allowance = offline_available(st, customer)
        balance, _ = central(BOLD)
        txn, grant = ask(st, agent, BOLD, "WM-OFF", 10_000)
        assert grant is None
        with pytest.raises(errors.OverOfflineAllowance):
            place(st, agent, BOLD, "WM-OFF", str(allowance // 100 + 100), receipts.new_txn_id())
        receipt = place(st, agent, BOLD, "WM-OFF", "100", txn)
        assert "auth" not in unverified_payload(receipt.token)
        assert offline_available(st, customer_of(st, BOLD)) == allowance - 10_000
    finally:
        link_up(st)
    sync_once(st)
    assert status_of(st, txn) == (OperationState.SETTLED, None)
    assert central(BOLD)[0] == balance - 10_000
    server_db()
    assert Authorization.select().count() == asked
    assert check_ledger() == []


def test_two_stations_asking_for_the_last_of_a_quota_at_once_sell_exactly_the_quota(bank):
    _, (st, agent), (st2, agent2) = bank
    product("WM-RACE-1", quota="300")
    synced(st, "WM-RACE-1")
    synced(st2, "WM-RACE-1")
    before = {BOLD: central(BOLD)[0], FAR: central(FAR, "ST-0002")[0]}
    start = threading.Barrier(2)
    answers: dict[str, object] = {}

    def order(station, session, account):
        start.wait()
        txn = receipts.new_txn_id()
        try:
            answers[account] = (txn, ask(station, session, account, "WM-RACE-1", 20_000, txn)[1])
        except errors.BankRefused as refused:
            answers[account] = (txn, refused)

    threads = [threading.Thread(target=order, args=args) for args in ((st, agent, BOLD), (st2, agent2, FAR))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outcomes = sorted("granted" if getattr(answer, "granted", False) else answer.reason
                      for _, answer in answers.values())
    assert outcomes == ["granted", "sold_out"]
    winner = next(account for account, (_, answer) in answers.items() if getattr(answer, "granted", False))
    loser = FAR if winner == BOLD else BOLD
    station, session = (st, agent) if winner == BOLD else (st2, agent2)
    txn, grant = answers[winner]
    place(station, session, winner, "WM-RACE-1", "200", txn, grant)
    assert online.push_now(station)
    assert status_of(station, txn) == (OperationState.SETTLED, None)
    assert quota("WM-RACE-1") == 10_000
    assert central(winner, "ST-0001" if winner == BOLD else "ST-0002")[0] == before[winner] - 20_000
    assert central(loser, "ST-0001" if loser == BOLD else "ST-0002")[0] == before[loser]
    assert check_ledger() == []


def test_an_offline_order_arriving_while_a_grant_holds_the_last_of_the_quota_is_sold_out(bank):
    """ST-0002 records an order offline while ST-0001 is granted the last of the quota: whichever arrives first,
    the grant's order is settled and the offline one refused with its money released."""
    _, (st, agent), (st2, agent2) = bank
    product("WM-RACE-2", quota="300")
    synced(st, "WM-RACE-2")
    synced(st2, "WM-RACE-2")
    far_before = central(FAR, "ST-0002")
    bold_before = central(BOLD)[0]
    note_failure(st2, "probe", "refused")
    try:
        offline = place(st2, agent2, FAR, "WM-RACE-2", "200", receipts.new_txn_id())
    finally:
        link_up(st2)
    txn, grant = ask(st, agent, BOLD, "WM-RACE-2", 20_000)  # the offline order has not arrived: granted
    assert grant.granted
    assert sync_once(st2).rejected == {offline.seq: "sold_out"}
    assert status_of(st2, offline.txn) == (OperationState.REJECTED, "sold_out")
    assert central(FAR, "ST-0002") == far_before  # nothing taken, the offline hold whole again
    assert offline_available(st2, customer_of(st2, FAR)) == far_before[1]
    place(st, agent, BOLD, "WM-RACE-2", "200", txn, grant)
    assert online.push_now(st)
    assert status_of(st, txn) == (OperationState.SETTLED, None)
    assert quota("WM-RACE-2") == 10_000 and central(BOLD)[0] == bold_before - 20_000
    assert check_ledger() == []


def test_an_order_the_bank_refuses_after_its_grant_is_rejected_and_takes_nothing(bank):
    """Should not happen (the bank closed the product between the grant and the entry): the entry is rejected with
    the reason, never a 500, and nothing is taken; the rejected entry ends its grant, so nothing is held either."""
    _, (st, agent), _ = bank
    product("WM-LATE-SHUT")
    synced(st, "WM-LATE-SHUT")
    balance, hold = central(BOLD)
    before = available(BOLD)
    txn, grant = ask(st, agent, BOLD, "WM-LATE-SHUT", 10_000)
    place(st, agent, BOLD, "WM-LATE-SHUT", "100", txn, grant)
    close_product("WM-LATE-SHUT")
    assert online.push_now(st)
    assert status_of(st, txn) == (OperationState.REJECTED, "window_closed")
    assert central(BOLD) == (balance, hold)
    assert quota("WM-LATE-SHUT") == 100_000_000
    server_db()
    ended = Authorization.get_by_id(grant.auth_id)
    with st.bound():
        assert (ended.status, ended.used_seq) == ("used", Operation.get_by_id(txn).seq)
    assert available(BOLD) == before  # the grant's hold went with its rejected entry, not at its expiry
    assert check_ledger() == []


# -- the touchscreen ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_touchscreen_asks_the_bank_before_the_pin(bank, lang):
    """Online: the confirm screen says the bank is asked; its grant shows on the PIN screen; the receipt shows the
    bank's confirmation. The next order for what is left is refused on the confirm screen in the person's language,
    and nothing is recorded."""
    _, (st, _), _ = bank
    code = f"WM-UI-{lang.upper()}"
    product(code, minimum="100", step="50", quota="150")
    synced(st, code)
    balance, _ = central(BOLD)
    app = create_app({"STATION": st, "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test"})
    client = app.test_client()
    with st.bound():
        customer = Customer.get(Customer.account_id == BOLD)
        client.post("/login", data={"agent_id": "A01", "pin": DEMO_AGENTS[0][3]})
        client.post("/lang", data={"lang": "en" if lang == "en" else "zh_CN", "next": "/"})
        confirm = unescape(to_confirm(client, customer, code, "100"))
        assert ("The bank is asked when you confirm" if lang == "en" else "确认后立即询问银行") in confirm
        assert client.post("/op/wmp_order/confirm", data={"txn": txn_of(confirm)}).location.endswith("/pin")
        pin = client.get("/op/wmp_order/pin").get_data(as_text=True)
        assert ("The bank has authorized this operation." if lang == "en" else "银行已授权") in unescape(pin)
        done = client.post("/op/wmp_order/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(pin)})
        receipt = unescape(client.get(done.location).get_data(as_text=True))
        assert ("Order confirmed by the bank" if lang == "en" else "银行已确认申购") in receipt
        head = JournalEntry.select().count()
        refused = client.post("/op/wmp_order/confirm", data={"txn": txn_of(to_confirm(client, customer, code, "100"))})
        message = unescape(error_of(refused.get_data(as_text=True)))
        assert message == ("The bank refused: this product is sold out. Nothing was recorded." if lang == "en"
                           else "银行拒绝：本产品额度已售完。没有记账。")
        assert JournalEntry.select().count() == head
        assert Operation.select().where(Operation.type == "wmp_order", Operation.status == "recorded").count() == 0
    assert central(BOLD)[0] == balance - 10_000
    assert quota(code) == 5_000


def test_an_order_asked_with_a_fee_is_refused_as_malformed(bank):
    """An order carries no fee (its entry has none): a request with one is not an authorization request."""
    server, (st, _), _ = bank
    keys = server.app.extensions["server_keys"]
    payload = protocol.request_payload(station_id=st.station_id, nonce=new_nonce(), ts=utc_text(datetime.now(LOCAL)),
                                       kind="wmp_order", txn=receipts.new_txn_id(), agent="A01", account=BOLD,
                                       amount=10_000, fee=100, product="WM-ON-OK")
    body = protocol.seal_request(payload, st.signer, key_codecs.encryption_public_from_jwk(
        keys.public()["encryption_jwk"]))
    headers = {protocol.HEADER_STATION: st.station_id, protocol.HEADER_NONCE: payload["nonce"]}
    server_db()
    with pytest.raises(Problem) as refused:
        authorize(keys, st.station_id, headers, body)
    assert refused.value.slug == "malformed-authorization" and "carries no fee" in str(refused.value)


def test_on_the_touchscreen_an_online_order_may_be_larger_than_the_offline_allowance(bank):
    _, (st, _), _ = bank
    product("WM-UI-BIG")
    synced(st, "WM-UI-BIG")
    allowance = offline_available(st, customer_of(st, BOLD))
    balance, _ = central(BOLD)
    yuan = allowance // 100 + 200
    app = create_app({"STATION": st, "TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test"})
    client = app.test_client()
    with st.bound():
        customer = Customer.get(Customer.account_id == BOLD)
        client.post("/login", data={"agent_id": "A01", "pin": DEMO_AGENTS[0][3]})
        client.post("/lang", data={"lang": "en", "next": "/"})
        confirm = to_confirm(client, customer, "WM-UI-BIG", str(yuan))
        assert client.post("/op/wmp_order/confirm", data={"txn": txn_of(confirm)}).location.endswith("/pin")
        pin = client.get("/op/wmp_order/pin").get_data(as_text=True)
        done = client.post("/op/wmp_order/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(pin)})
        assert "Order confirmed by the bank" in unescape(client.get(done.location).get_data(as_text=True))
        op = Operation.get(Operation.seq == int(done.location.rsplit("/", 1)[1]))
    assert op.auth_id is not None and op.status == OperationState.SETTLED
    assert offline_available(st, customer_of(st, BOLD)) == allowance
    assert central(BOLD)[0] == balance - yuan * 100


def test_a_grant_holds_its_product_only(bank):
    """An order naming a grant given for another product is not authorized by it: rejected, nothing taken; the
    grant's quota share is released when it expires."""
    _, (st, agent), _ = bank
    product("WM-BOUND-A")
    product("WM-BOUND-B")
    synced(st, "WM-BOUND-A", "WM-BOUND-B")
    balance, hold = central(BOLD)
    txn, grant = ask(st, agent, BOLD, "WM-BOUND-A", 10_000)
    place(st, agent, BOLD, "WM-BOUND-B", "100", txn, grant)
    assert online.push_now(st)
    assert status_of(st, txn) == (OperationState.REJECTED, "not_authorized")
    assert central(BOLD) == (balance, hold)
    assert quota("WM-BOUND-A") == quota("WM-BOUND-B") == 100_000_000
    # The entry is not the grant's operation, so it does not end the grant: that waits for its expiry.
    server_db()
    assert Authorization.get_by_id(grant.auth_id).status == "active"
    assert check_ledger() == []
