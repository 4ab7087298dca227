"""Login, idle logout, home and status bar, receipts, print, reversal, day open/close, voice, sync, chart."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from ui_helpers import (
    AGENT_PIN,
    SUPERVISOR_PIN,
    card_customer,
    english,
    error_of,
    login,
    txn_of,
    withdraw,
)

from station import agents, business_day, receipts
from station.db import Agent, JournalEntry, Operation, PrintedReceipt
from station.link import note_failure, note_success
from station.protocol.tokens import unverified_payload, verify_token
from station.sync import SyncOutcome
from station.ui.home import SYNC_NOW_WAIT_SECONDS


@pytest.fixture
def agent_client(ui_client, open_drawer):
    login(ui_client)
    return ui_client


# -- login and session ------------------------------------------------------------------------------------
def test_login_screen_lists_agents_and_pin_pad(ui_client):
    page = ui_client.get("/login").get_data(as_text=True)
    assert "谁上班？请点您的名字。" in page and 'id="agent-A01"' in page and 'id="agent-S01"' in page
    page = ui_client.get("/login?agent_id=A01").get_data(as_text=True)
    assert 'type="password"' in page and 'data-key="0"' in page
    assert ui_client.get("/").location == "/login"
    assert ui_client.get("/home").location == "/login"


@pytest.mark.parametrize(
    ("agent_id", "pin", "zh", "en"),
    [
        ("A01", "0000", "密码错误。再错 4 次，该操作员将被锁定。",
         "Wrong PIN. Tries left before this agent is locked: 4."),
        ("ZZ9", "1357", "操作员编号不对或密码错误。", "Unknown agent ID or wrong PIN."),
    ],
)
def test_login_refusals_in_both_languages(ui_client, agent_id, pin, zh, en):
    assert error_of(login(ui_client, agent_id, pin).get_data(as_text=True)) == zh
    english(ui_client)
    Agent.update(failed_pins=0).execute()
    assert error_of(login(ui_client, agent_id, pin).get_data(as_text=True)) == en


def test_lockout_after_five_wrong_pins(ui_client):
    for _ in range(4):
        login(ui_client, "A01", "0000")
    page = login(ui_client, "A01", "0000").get_data(as_text=True)
    assert error_of(page) == "密码错误次数太多，该操作员已被锁定，请主管解锁。"
    page = login(ui_client, "A01", AGENT_PIN).get_data(as_text=True)
    assert error_of(page) == "密码错误次数太多，该操作员已被锁定，请主管解锁。"
    assert ui_client.get("/home").location == "/login"


def test_idle_logout_by_the_station_clock(agent_client, clock):
    assert agent_client.get("/home").status_code == 200
    clock.advance(seconds=590)
    assert agent_client.get("/home").status_code == 200  # each request restarts the idle period
    clock.advance(seconds=601)
    response = agent_client.get("/home")
    assert response.location == "/login?idle=1"
    assert error_of(agent_client.get(response.location).get_data(as_text=True)) == "超过 10 分钟没有操作，已自动退出。"
    assert agent_client.get("/home").location == "/login"


def test_idle_logout_drops_a_half_keyed_operation(agent_client, clock):
    agent_client.post("/op/withdrawal/start")
    clock.advance(seconds=700)
    agent_client.get("/home")
    login(agent_client)
    assert agent_client.get("/op/withdrawal/customer").status_code == 409


def test_pages_refresh_after_the_idle_period(agent_client):
    assert '<meta http-equiv="refresh" content="605">' in agent_client.get("/home").get_data(as_text=True)


def test_logout_keeps_the_language(agent_client):
    english(agent_client)
    agent_client.post("/logout")
    assert "Who is working? Tap your name." in agent_client.get("/login").get_data(as_text=True)


def test_language_toggle_only_redirects_to_local_paths(ui_client):
    assert ui_client.post("/lang", data={"lang": "en", "next": "/login"}).location == "/login"
    assert ui_client.post("/lang", data={"lang": "en", "next": "//evil.example/x"}).location == "/"
    assert ui_client.post("/lang", data={"lang": "en", "next": "https://evil.example/"}).location == "/"
    # A backslash: Chromium reads "/\\evil.example" as "//evil.example", another host.
    assert ui_client.post("/lang", data={"lang": "en", "next": "/\\evil.example/x"}).location == "/"
    assert ui_client.post("/lang", data={"lang": "en", "next": "/home\n/x"}).location == "/"
    ui_client.post("/lang", data={"lang": "xx", "next": "/login"})
    assert "Who is working?" in ui_client.get("/login").get_data(as_text=True)


# -- home and status bar ----------------------------------------------------------------------------------
def test_language_toggle_returns_to_the_same_screen_with_its_query(ui_client):
    # On the PIN pad of the chosen agent, the toggle must not drop back to the list of names.
    page = ui_client.get("/login?agent_id=A01").get_data(as_text=True)
    assert 'name="next" value="/login?agent_id=A01"' in page
    page = ui_client.get("/login").get_data(as_text=True)
    assert 'name="next" value="/login"' in page


def test_home_tiles_and_status_bar_in_both_languages(agent_client, station):
    page = agent_client.get("/home").get_data(as_text=True)
    for label in ("取款", "存款", "转账", "缴费", "余额", "凭证", "日终", "同步", "客户之声", "客流"):
        assert label in page
    assert "离线" in page and "从未同步" in page and "钱箱 ¥30,000.00" in page
    english(agent_client)
    page = agent_client.get("/home").get_data(as_text=True)
    for label in ("Withdraw", "Deposit", "Transfer", "Pay bill", "Balance", "Receipts", "Day close", "Sync",
                  "Customer voice", "Busy hours"):
        assert label in page
    assert "Drawer ¥30,000.00" in page


def test_status_bar_counts_entries_waiting_and_shows_the_measured_link(agent_client, station, clock):
    head = JournalEntry.select().count()
    page = agent_client.get("/home").get_data(as_text=True)
    assert f"待传 {head}" in page
    station.set_setting("acked_seq", head - 1)
    station.set_setting("last_sync_at", (clock.now - timedelta(minutes=2)).isoformat())
    page = agent_client.get("/home").get_data(as_text=True)
    # A recent sync is not a measurement of the link now: no request answered, so not "online".
    assert "待传 1" in page and 'data-link="offline">离线' in page and "offline-warning" not in page
    station.config["server"] = {"url": "http://127.0.0.1:9"}
    note_success(station, "probe", 40)
    page = agent_client.get("/home").get_data(as_text=True)
    assert 'data-link="online">在线' in page
    note_failure(station, "probe", "timeout")
    assert 'data-link="degraded">不稳定' in agent_client.get("/home").get_data(as_text=True)
    note_failure(station, "probe", "timeout")
    assert 'data-link="offline">离线' in agent_client.get("/home").get_data(as_text=True)


def test_status_bar_warns_near_and_past_the_offline_age_limit(agent_client, station, clock):
    station.set_setting("last_sync_at", (clock.now - timedelta(hours=60)).isoformat())
    page = agent_client.get("/home").get_data(as_text=True)
    assert "快到离线限额了，请尽快同步。" in page and 'id="offline-warning"' in page
    station.set_setting("last_sync_at", (clock.now - timedelta(hours=80)).isoformat())
    assert "太久没有同步：取款和转账已暂停，请马上同步。" in agent_client.get("/home").get_data(as_text=True)


def test_status_bar_warns_near_the_unsynced_amount_limit(agent_client, station):
    station.set_setting("policy", {"max_unsynced_fen": 60_000})
    withdraw(agent_client, card_customer(), "500")
    assert "快到离线限额了，请尽快同步。" in agent_client.get("/home").get_data(as_text=True)


# -- receipts, print, reversal ----------------------------------------------------------------------------
@pytest.fixture
def withdrawal_seq(agent_client):
    response = withdraw(agent_client, card_customer(), "500")
    return int(response.location.rsplit("/", 1)[1])


def test_receipt_shows_what_the_issue_lists(agent_client, withdrawal_seq, station):
    page = agent_client.get(f"/receipts/{withdrawal_seq}").get_data(as_text=True)
    customer = card_customer()
    for text in ("ST-0001", "田师傅 Tian", "2026年11月3日", "取款", receipts.mask_number(customer.card_number),
                 "¥500.00", "伍佰元整", "已离线记录，等待银行处理", f"流水号 {withdrawal_seq}", "<svg", "viewBox"):
        assert text in page, text
    assert customer.card_number not in page
    token = JournalEntry.get_by_id(withdrawal_seq).token
    assert verify_token(token, station.keyset())["amount"] == 50_000


def test_receipts_list_of_today(agent_client, withdrawal_seq):
    page = agent_client.get("/receipts/").get_data(as_text=True)
    assert f'id="open-{withdrawal_seq}"' in page and "¥500.00" in page and "07:40" in page
    english(agent_client)
    assert "Recorded offline, waiting for the bank" in agent_client.get("/receipts/").get_data(as_text=True)


def test_reverse_is_offered_only_while_the_core_would_allow_it(agent_client, withdrawal_seq, station, clock):
    assert 'id="reverse"' in agent_client.get(f"/receipts/{withdrawal_seq}").get_data(as_text=True)
    supervisor = agents.login_agent(station, "S01", "2468")
    business_day.close_day(station, supervisor, {"10000": 295})
    clock.advance(hours=10)
    supervisor = agents.login_agent(station, "S01", "2468")
    business_day.open_day(station, supervisor, {"10000": 295})
    login(agent_client)  # the ten hours logged the agent out
    # Yesterday's withdrawal: the core refuses it as too late, so the screen does not offer it.
    assert 'id="reverse"' not in agent_client.get(f"/receipts/{withdrawal_seq}").get_data(as_text=True)


def test_unknown_receipt_is_404(agent_client):
    assert agent_client.get("/receipts/999").status_code == 404


def test_print_then_reprint_is_marked_duplicate(agent_client, withdrawal_seq, printed):
    response = agent_client.post(f"/receipts/{withdrawal_seq}/print")
    assert response.location == f"/receipts/{withdrawal_seq}"
    page = agent_client.get(response.location).get_data(as_text=True)
    assert "已打印。" in page and ">重印<" in page
    agent_client.post(f"/receipts/{withdrawal_seq}/print")
    assert [(seq, duplicate) for seq, duplicate, _ in printed] == [(withdrawal_seq, False), (withdrawal_seq, True)]
    assert PrintedReceipt.get_by_id(withdrawal_seq).prints == 2


def test_printer_failure_keeps_the_operation_and_allows_retry(agent_client, station, withdrawal_seq, printed):
    station.config["printer"] = {"kind": "file", "path": "/dev/usb/lp9"}
    response = agent_client.post(f"/receipts/{withdrawal_seq}/print")
    assert response.status_code == 503
    assert error_of(response.get_data(as_text=True)) == (
        "打印机没有连接或没有开机。业务已经记录；打印机准备好后请重新打印。"
    )
    assert Operation.get(Operation.seq == withdrawal_seq).status == "recorded"
    assert PrintedReceipt.get_or_none(PrintedReceipt.seq == withdrawal_seq) is None
    english(agent_client)
    response = agent_client.post(f"/receipts/{withdrawal_seq}/print")
    assert error_of(response.get_data(as_text=True)) == (
        "The printer is not connected or switched off. The operation is recorded; print again when it is ready."
    )
    station.config["printer"] = {"kind": "dummy"}
    agent_client.post(f"/receipts/{withdrawal_seq}/print")
    assert [(seq, duplicate) for seq, duplicate, _ in printed] == [(withdrawal_seq, False)]


@pytest.mark.parametrize(
    ("supervisor_id", "pin", "message"),
    [
        ("S01", "0000", "密码错误。再错 4 次，须等待后才能再试。"),  # the last supervisor: a wait, never a lock
        ("A01", AGENT_PIN, "只有主管可以办理。"),
        ("S01", SUPERVISOR_PIN, "请用文字写明冲正原因（最多 200 个字）。"),  # a reason posted with ESC in it
    ],
)
def test_reversal_refusals(agent_client, withdrawal_seq, supervisor_id, pin, message):
    reason = "Wrong\x1b@ amount" if pin == SUPERVISOR_PIN else "Wrong amount"
    page = agent_client.post(f"/receipts/{withdrawal_seq}/reverse",
                             data={"supervisor_id": supervisor_id, "pin": pin, "reason": reason})
    assert error_of(page.get_data(as_text=True)) == message
    assert Operation.get(Operation.seq == withdrawal_seq).status == "recorded"


def test_supervisor_reversal(agent_client, withdrawal_seq, station):
    page = agent_client.get(f"/receipts/{withdrawal_seq}/reverse").get_data(as_text=True)
    assert "周主管 Zhou" in page and "金额错了" in page
    txn = receipts.new_txn_id()
    form = {"supervisor_id": "S01", "pin": SUPERVISOR_PIN, "reason": "Wrong amount", "txn": txn}
    response = agent_client.post(f"/receipts/{withdrawal_seq}/reverse", data=form)
    page = agent_client.get(response.location).get_data(as_text=True)
    assert "冲正" in page
    assert Operation.get(Operation.seq == withdrawal_seq).status == "reversed"
    assert business_day.drawer_cash(station) == 3_000_000
    again = agent_client.post(f"/receipts/{withdrawal_seq}/reverse", data={**form, "txn": receipts.new_txn_id()})
    assert error_of(again.get_data(as_text=True)) == "这张凭证已经冲正过了。"


# -- day open and close -----------------------------------------------------------------------------------
def test_day_open_with_a_count(ui_client, station):
    login(ui_client)
    assert ui_client.get("/day/").location == "/day/open"
    page = ui_client.post("/day/open", data={"n10000": "2x"}).get_data(as_text=True)
    assert error_of(page) == "点钞数不对：每种面额请填写整张（枚）数。" and 'value="2x"' in page
    page = ui_client.post("/day/open", data={"n10000": "1000000"}).get_data(as_text=True)
    assert error_of(page) == "清点的现金合计超过 10,000,000.00 元，请重新清点钱箱。"
    response = ui_client.post("/day/open", data={"n10000": "250", "n5000": "100"})
    page = ui_client.get(response.location).get_data(as_text=True)
    assert "开门营业" in page and "叁万元整" in page
    assert business_day.drawer_cash(station) == 3_000_000
    assert ui_client.get("/day/open").location == "/day/close"


def test_day_close_previews_then_records_the_variance(agent_client, ui_app, station):
    syncs = []
    ui_app.extensions["sync_now"] = lambda wait=0: syncs.append(wait)
    withdraw(agent_client, card_customer(), "500")
    counts = {"n10000": "294", "n1000": "9"}
    page = agent_client.post("/day/close", data={**counts, "confirm": "0"}).get_data(as_text=True)
    assert syncs == []
    assert "¥29,500.00" in page and "¥29,490.00" in page and 'id="close-day"' in page
    assert re.search(r'id="variance"[^>]*>短款 ¥10.00<', page), "a shortage in words, not a signed number"
    assert business_day.current_day(station) is not None
    response = agent_client.post("/day/close", data={**counts, "confirm": "1"})
    page = agent_client.get(response.location).get_data(as_text=True)
    assert "日终" in page and 'id="variance" data-fen="-1000">短款 ¥10.00<' in page
    assert business_day.current_day(station) is None
    body = unverified_payload(JournalEntry.select().order_by(JournalEntry.seq.desc()).first().token)
    assert body["type"] == "day_close" and body["variance"] == -1_000
    assert syncs == [0], "the day's close is sent to the bank at once (without waiting for the answer)"
    assert agent_client.get("/day/close").location == "/day/open"


def test_day_close_refused_while_an_operation_is_half_done(agent_client, station):
    agent_client.post("/op/withdrawal/start")
    page = agent_client.post("/day/close", data={"n10000": "300", "confirm": "1"}).get_data(as_text=True)
    assert error_of(page) == "还有一笔业务没办完，请办完或取消后再日终。"
    assert business_day.current_day(station) is not None
    agent_client.post("/op/cancel")
    assert agent_client.post("/day/close", data={"n10000": "300", "confirm": "1"}).status_code == 302


# -- customer voice, sync, chart --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("category", "text", "message"),
    [
        ("", "很好", "请选择表扬、投诉或建议。"),
        ("praise", "  ", "请写下客户的意见，1 到 200 个字。"),
        ("complaint", "长" * 201, "请写下客户的意见，1 到 200 个字。"),
    ],
)
def test_voice_refusals(agent_client, category, text, message):
    page = agent_client.post("/voice/", data={"category": category, "text": text}).get_data(as_text=True)
    assert error_of(page) == message


def test_voice_is_journaled(agent_client):
    response = agent_client.post("/voice/", data={"category": "praise", "text": "田师傅很耐心"})
    page = agent_client.get(response.location).get_data(as_text=True)
    assert "客户之声" in page and "田师傅很耐心" in page
    entry = JournalEntry.select().order_by(JournalEntry.seq.desc()).first()
    assert entry.type == "feedback"
    assert unverified_payload(entry.token)["text"] == "田师傅很耐心"


def test_a_double_tap_on_save_records_the_voice_once(agent_client):
    txn = txn_of(agent_client.get("/voice/").get_data(as_text=True))
    data = {"category": "complaint", "text": "排队太久了。", "txn": txn}
    first = agent_client.post("/voice/", data=data)
    second = agent_client.post("/voice/", data=data)
    assert first.status_code == second.status_code == 302
    assert second.location == first.location
    assert JournalEntry.select().where(JournalEntry.type == "feedback").count() == 1


def test_sync_not_configured_in_both_languages(agent_client):
    assert "本站还没有设置同步。" in agent_client.get("/sync").get_data(as_text=True)
    response = agent_client.post("/sync")
    assert response.status_code == 503
    english(agent_client)
    assert "Sync is not configured on this station yet." in agent_client.get("/sync").get_data(as_text=True)


@pytest.mark.parametrize(
    ("outcome", "zh", "en"),
    [
        # Babel's English time has a narrow no-break space before AM (CLDR).
        (SyncOutcome(ok=True, at="2026-11-02T23:41:00.000Z"), "已与银行同步（07:41）。",
         "Synced with the bank at 7:41\u202fAM."),
        (None, "还在同步：银行还没有答复，答复后状态栏会显示。",
         "Still syncing: the bank has not answered yet. The status bar shows when it has."),
    ],
)
def test_sync_now_reports_how_the_sync_ended(agent_client, ui_app, outcome, zh, en):
    calls = []

    def hook(wait=0):
        calls.append(wait)
        return outcome

    ui_app.extensions["sync_now"] = hook
    assert 'id="sync-now"' in agent_client.get("/sync").get_data(as_text=True)
    response = agent_client.post("/sync")
    assert calls == [SYNC_NOW_WAIT_SECONDS]
    assert zh in agent_client.get(response.location).get_data(as_text=True)
    english(agent_client)
    response = agent_client.post("/sync")
    assert en in agent_client.get(response.location).get_data(as_text=True)


@pytest.mark.parametrize(
    ("reason", "zh", "en"),
    [
        ("refused", "同步失败：连不上银行服务器。记录都保存在本机，网络恢复后会自动上传。",
         "Sync failed: cannot connect to the bank's server. Records stay on this device and go to the bank when "
         "the link is back."),
        ("timeout", "同步失败：网络超时。记录都保存在本机，网络恢复后会自动上传。",
         "Sync failed: the network timed out. Records stay on this device and go to the bank when the link is back."),
        ("http_5xx", "同步失败：银行服务器出错。记录都保存在本机，网络恢复后会自动上传。",
         "Sync failed: the bank's server had an error. Records stay on this device and go to the bank when the "
         "link is back."),
        ("busy", "同步失败：银行服务器繁忙。记录都保存在本机，网络恢复后会自动上传。",
         "Sync failed: the bank's server is busy. Records stay on this device and go to the bank when the link is "
         "back."),
        ("revoked", "同步失败：本站已被银行停用。请联系银行。",
         "Sync failed: the bank has revoked this station. Call the bank."),
        ("flagged", "同步失败：银行已暂停接收本站的记录。请联系银行。",
         "Sync failed: the bank has stopped taking this station's records. Call the bank."),
        ("local", "同步失败：本机出了问题。记录都保存在本机。请联系技术员。",
         "Sync failed: a problem on this device. Records stay on this device. Call the technician."),
    ],
)
def test_a_failed_sync_now_says_why(agent_client, ui_app, station, clock, reason, zh, en):
    def hook(wait=0):
        # What the sync job does when it fails: the failure is kept for the screens.
        station.set_setting("last_sync_failure", {"at": "2026-11-02T23:40:00.000Z", "reason": reason})
        return SyncOutcome(ok=False, at="2026-11-02T23:40:00.000Z", reason=reason, message="for the technician")

    ui_app.extensions["sync_now"] = hook
    response = agent_client.post("/sync")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and error_of(page) == zh
    assert 'id="last-sync">同步失败<' in page and "已开始同步" not in page
    english(agent_client)
    page = agent_client.post("/sync").get_data(as_text=True)
    assert error_of(page) == en.replace("'", "&#39;")


def test_busy_hours_chart(agent_client, clock):
    withdraw(agent_client, card_customer(0), "100")  # 07:40 local
    clock.advance(hours=1)
    login(agent_client)  # the idle period has passed
    withdraw(agent_client, card_customer(1), "100")
    withdraw(agent_client, card_customer(2), "100")
    page = agent_client.get("/chart").get_data(as_text=True)
    assert "最忙：08:00 到 09:00。" in page and "<svg" in page and page.count('class="barrect') == 13
    assert "今天各时段客流 · 3" in page


def test_busy_hours_chart_prints_for_the_wall(agent_client, station, printed):
    withdraw(agent_client, card_customer(0), "100")
    response = agent_client.post("/chart/print")
    assert response.location == "/chart"
    assert "已打印。" in agent_client.get("/chart").get_data(as_text=True)
    station.config["printer"] = {"kind": "file", "path": "/dev/usb/lp9"}
    response = agent_client.post("/chart/print")
    assert response.status_code == 503
    assert error_of(response.get_data(as_text=True)).startswith("打印机没有连接或没有开机。")
    assert 'id="chart"' in response.get_data(as_text=True)


def test_health_still_answers(ui_client, station):
    assert json.loads(ui_client.get("/health").data)["station"] == "ST-0001"


def test_chart_widens_to_hours_with_visits():
    from station.ui.home import chart_bars

    per_hour = [0] * 24
    per_hour[21] = 4
    per_hour[8] = 2
    bars = chart_bars(per_hour)
    assert [bar.hour for bar in bars] == list(range(7, 22))
    assert max(bars, key=lambda bar: bar.count).hour == 21
    assert bars[-1].height == 260 and bars[1].height == 130


def test_unknown_screen_is_a_plain_message(agent_client):
    response = agent_client.get("/nowhere")
    assert response.status_code == 404
    assert error_of(response.get_data(as_text=True)) == "没有这个页面。"
    assert agent_client.get("/logout").status_code == 404  # logging out is a form post only
