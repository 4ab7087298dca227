"""The fraud warning at the station: scam markers in the payee's name, the supervisor's PIN past it, the stopped
transfer journaled, the elderly customer (``station.protocol.scams``, ``station.operations``)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from ui_helpers import error_of, identify, login, start, txn_of

from station import agents, errors, operations, receipts
from station.db import Customer, JournalEntry, Operation, Payee
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.printing import receipt_sheet
from station.protocol.policy import DEFAULT_POLICY, merged_policy, policy_problems
from station.protocol.scams import (
    DEFAULT_SCAM_MARKERS,
    MAX_MARKERS,
    FraudWarning,
    fold,
    is_elderly,
    matched_markers,
    valid_markers,
    warning_for,
)
from station.protocol.tokens import unverified_payload
from station.receipt_layout import receipt_lines
from station.sync import apply_downlink

SUPERVISOR_ID, _, _, SUPERVISOR_PIN = DEMO_AGENTS[1]
AGENT_ID, _, _, AGENT_PIN = DEMO_AGENTS[0]
SCAM = ("6222000000000000077", "公安局安全账户")


def customer(number: int = 0) -> Customer:
    return Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id)[number]


def pin(st, agent, who: Customer):
    return agents.authenticate_customer(st, agent, who, DEMO_CUSTOMER_PIN)


# -- the rule ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, found", [
    ("公安局安全账户", ("安全账户", "公安")),
    ("公 安 局　安全 账户", ("安全账户", "公安")),  # spaces, the full-width one too
    ("王秀英", ()),
    ("最高人民法院专案组", ("法院", "专案")),
])
def test_markers_are_found_whatever_the_spaces(name, found):
    assert matched_markers(DEFAULT_SCAM_MARKERS, name) == found


def test_full_width_and_case_do_not_hide_a_marker():
    assert fold("ＳＡＦＥ  Account") == "safeaccount"
    assert matched_markers(["safe account", "ＰＯＬＩＣＥ"], "Police Safe-Account", "SAFE ACCOUNT") == (
        "safe account", "ＰＯＬＩＣＥ")


@pytest.mark.parametrize("value", [
    "安全账户",  # not a list
    ["安全账户", 7],
    [""],
    ["   "],
    ["安全\n账户"],
    ["x" * 17],
    ["词"] * (MAX_MARKERS + 1),
])
def test_a_marker_list_that_is_not_valid_is_never_used(value):
    assert valid_markers(value) is None
    assert policy_problems({"scam_markers": value}) == ["scam_markers"]
    assert merged_policy({"scam_markers": value})["scam_markers"] == list(DEFAULT_SCAM_MARKERS)


def test_the_banks_markers_replace_the_default_and_bad_thresholds_keep_theirs():
    policy = merged_policy({"scam_markers": ["刷单"], "fraud_supervisor_fen": True, "elderly_age": 200})
    assert policy["scam_markers"] == ["刷单"]
    assert policy["fraud_supervisor_fen"] == DEFAULT_POLICY["fraud_supervisor_fen"]
    assert policy["elderly_age"] == 60


def test_why_the_warning_shows():
    policy = merged_policy(None)
    assert not warning_for(policy, known_payee=True, amount_fen=10_000, payee_name="王秀英")
    assert warning_for(policy, known_payee=True, amount_fen=10_000, payee_name="公安局") == FraudWarning(
        new_payee=False, over_threshold=False, markers=("公安",), needs_supervisor=False)
    assert warning_for(policy, known_payee=False, amount_fen=1_000_000, payee_name="王秀英") == FraudWarning(
        new_payee=True, over_threshold=True, markers=(), needs_supervisor=True)


def test_elderly_is_the_policy_age_or_more():
    assert is_elderly(1966, 2026, 60) and not is_elderly(1967, 2026, 60)
    assert not is_elderly(None, 2026, 60)


# -- the station --------------------------------------------------------------------------------------------
def test_a_scam_marker_shows_the_warning_below_the_threshold_even_to_a_known_payee(open_drawer, agent):
    st, mother = open_drawer, customer(0)
    Payee.create(customer=mother, account=SCAM[0], name=SCAM[1])
    auth = pin(st, agent, mother)
    with pytest.raises(errors.FraudWarningRequired):
        operations.transfer(st, agent, auth, *SCAM, "100", receipts.new_txn_id())
    receipt = operations.transfer(st, agent, auth, *SCAM, "100", receipts.new_txn_id(), fraud_warning_confirmed=True)
    assert unverified_payload(receipt.token)["warned"] is True


@pytest.fixture
def supervised(open_drawer):
    """A station whose policy asks the supervisor from 1,000 yuan (within the demo customers' allowance)."""
    open_drawer.set_setting("policy", {"fraud_supervisor_fen": 100_000})
    return open_drawer


def test_past_the_supervisor_threshold_only_a_supervisors_pin_lets_it_through(supervised, agent):
    st, mother = supervised, customer(0)
    auth = pin(st, agent, mother)
    send = "6222000000000000001", "王小明", "1500"
    with pytest.raises(errors.FraudSupervisorRequired, match="1,000.00"):
        operations.transfer(st, agent, auth, *send, receipts.new_txn_id(), fraud_warning_confirmed=True)
    with pytest.raises(errors.SupervisorRequired):
        operations.approve_past_warning(st, agent, AGENT_ID, AGENT_PIN)  # the agent is no supervisor
    with pytest.raises(errors.WrongAgentPin):
        operations.approve_past_warning(st, agent, SUPERVISOR_ID, "000000")
    approval = operations.approve_past_warning(st, agent, SUPERVISOR_ID, SUPERVISOR_PIN)
    receipt = operations.transfer(st, agent, auth, *send, receipts.new_txn_id(), fraud_warning_confirmed=True,
                                  approval=approval)
    assert {k: v for k, v in unverified_payload(receipt.token).items() if k in ("warned", "approved_by")} == {
        "warned": True, "approved_by": SUPERVISOR_ID}
    # The wrong PIN counts towards the supervisor's lock, like a login, and is journaled.
    assert JournalEntry.select().where(JournalEntry.type == "agent_pin_failed").count() == 1


def test_a_stale_or_someone_elses_approval_is_refused(supervised, agent, clock):
    st, mother = supervised, customer(0)
    approval = operations.approve_past_warning(st, agent, SUPERVISOR_ID, SUPERVISOR_PIN)
    other = operations.SupervisorApproval(SUPERVISOR_ID, "A02", approval.approved_at)
    clock.advance(seconds=st.policy["customer_auth_seconds"] + 1)
    auth = pin(st, agent, mother)
    for given in (approval, other):
        with pytest.raises(errors.FraudSupervisorRequired):
            operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "1500", receipts.new_txn_id(),
                                fraud_warning_confirmed=True, approval=given)
    assert Operation.select().count() == 0


def test_an_approval_run_out_before_the_pin_goes_back_to_the_supervisor_not_a_dead_end(supervised, ui_client, clock):
    """On the touchscreen: the customer reached the PIN after the approval ran out (``customer_auth_seconds``). The
    PIN screen does not repeat the refusal forever: the warning's supervisor PIN pad comes back, saying why, and a
    fresh approval sends the transfer."""
    login(ui_client)
    mother = customer(0)
    start(ui_client, "transfer")
    identify(ui_client, "transfer", mother)
    ui_client.post("/op/transfer/payee", data={"payee_account": "6222000000000000001", "payee_name": "王小明"})
    ui_client.post("/op/transfer/amount", data={"amount": "1500"})
    page = ui_client.get("/op/transfer/warning").get_data(as_text=True)
    approve = {"decision": "approve", "supervisor_id": SUPERVISOR_ID, "pin": SUPERVISOR_PIN,
               "stop_txn": re.search(r'name="stop_txn" value="([^"]+)"', page).group(1)}
    assert ui_client.post("/op/transfer/warning", data=approve).location.endswith("/confirm")
    ui_client.post("/op/transfer/confirm")
    clock.advance(seconds=supervised.policy["customer_auth_seconds"] + 1)
    page = ui_client.get("/op/transfer/pin").get_data(as_text=True)
    answer = ui_client.post("/op/transfer/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(page)})
    assert answer.status_code == 302 and answer.location.endswith("/op/transfer/warning")
    page = ui_client.get("/op/transfer/warning").get_data(as_text=True)
    assert error_of(page) == "主管批准已过时效：请主管重新输入密码。" and 'id="approve-warning"' in page
    assert error_of(ui_client.get("/op/transfer/warning").get_data(as_text=True)) is None  # said once
    assert ui_client.get("/op/transfer/pin").location.endswith("/op/transfer/warning")
    assert ui_client.post("/op/transfer/warning", data=approve).location.endswith("/pin")
    page = ui_client.get("/op/transfer/pin").get_data(as_text=True)
    assert ui_client.post("/op/transfer/pin", data={"pin": DEMO_CUSTOMER_PIN, "txn": txn_of(page)}).status_code == 302
    assert unverified_payload(JournalEntry.get_by_id(Operation.get().seq).token)["approved_by"] == SUPERVISOR_ID


def test_a_supervisor_approves_only_the_transfer_the_screen_shows(supervised, ui_client):
    """A second tab: the supervisor's PIN typed on the warning of a 1,500 yuan transfer, while the operation being
    keyed in is now another one (20,000 yuan to someone else). The PIN pad comes back with this transfer's figures;
    nothing is approved, and no PIN try is spent."""
    login(ui_client)
    mother = customer(0)
    start(ui_client, "transfer")
    identify(ui_client, "transfer", mother)
    ui_client.post("/op/transfer/payee", data={"payee_account": "6222000000000000001", "payee_name": "王小明"})
    ui_client.post("/op/transfer/amount", data={"amount": "1500"})
    shown = ui_client.get("/op/transfer/warning").get_data(as_text=True)
    old_screen = re.search(r'name="stop_txn" value="([^"]+)"', shown).group(1)
    ui_client.post("/op/cancel")  # the other tab: a new transfer
    start(ui_client, "transfer")
    identify(ui_client, "transfer", mother)
    ui_client.post("/op/transfer/payee", data={"payee_account": "6222000000000000002", "payee_name": "李四"})
    ui_client.post("/op/transfer/amount", data={"amount": "20000"})
    answer = ui_client.post("/op/transfer/warning", data={"decision": "approve", "supervisor_id": SUPERVISOR_ID,
                                                          "pin": SUPERVISOR_PIN, "stop_txn": old_screen})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and 'id="approve-warning"' in page and "20,000.00" in page and "李四" in page
    with ui_client.session_transaction() as cookie:
        assert "approval" not in cookie["op"] and "warning_done" not in cookie["op"]


def test_a_stopped_transfer_is_journaled_once_without_a_pin(open_drawer, agent):
    st, mother = open_drawer, customer(0)
    txn = receipts.new_txn_id()
    receipt = operations.stop_transfer(st, agent, mother, *SCAM, "8000", txn)
    again = operations.stop_transfer(st, agent, mother, *SCAM, "8000", txn)  # a double tap
    assert again.seq == receipt.seq
    assert JournalEntry.select().where(JournalEntry.type == "transfer_stopped").count() == 1
    payload = unverified_payload(receipt.token)
    assert {k: payload[k] for k in ("type", "agent", "account", "amount", "payee_account", "payee_name", "new_payee",
                                    "over_threshold", "markers")} == {
        "type": "transfer_stopped", "agent": agent.agent_id, "account": mother.account_id, "amount": 800_000,
        "payee_account": SCAM[0], "payee_name": SCAM[1], "new_payee": True, "over_threshold": True,
        "markers": ["安全账户", "公安"]}
    assert not any("pin" in key for key in payload)
    assert receipt.account_masked.endswith(mother.card_number[-4:]) and Operation.select().count() == 0
    # On paper: not sent, to whom (the account masked), never "waiting for the bank".
    lines = receipt_lines(receipt_sheet(st, receipt))
    assert "  未汇出：客户在防诈提示后终止" in lines and "收款人 Payee: 公安局安全账户" in lines
    assert "  6222 **** 0077" in lines and not any("等待" in line for line in lines)


def test_a_stop_with_a_bad_payee_or_txn_records_nothing(open_drawer, agent):
    st, mother = open_drawer, customer(0)
    before = JournalEntry.select().count()
    with pytest.raises(errors.InvalidPayeeName):
        operations.stop_transfer(st, agent, mother, SCAM[0], "公安\x1b[2J", "8000", receipts.new_txn_id())
    with pytest.raises(errors.InvalidTxnId):
        operations.stop_transfer(st, agent, mother, *SCAM, "8000", "not-a-uuid")
    assert JournalEntry.select().count() == before


def test_the_birth_year_comes_down_with_the_customer(station):
    mother = customer(0)
    item = {"account_id": mother.account_id, "name": mother.name, "card_number": mother.card_number,
            "pin_verifier": mother.pin_verifier, "allowance_fen": 0}
    now = station.now()
    for sent, kept in ((1948, 1948), ("1948", None), (True, None), (1800, None), (None, None)):
        apply_downlink(station, {"customers": [{**item, "birth_year": sent}]}, 0, now)
        assert Customer.get_by_id(mother.id).birth_year == kept, sent
    apply_downlink(station, {"customers": [{**item, "birth_year": now.year - 60}]}, 0, now)
    assert operations.customer_is_elderly(station, Customer.get_by_id(mother.id))
    apply_downlink(station, {"customers": [{**item, "birth_year": now.year - 59}]}, 0, now + timedelta(seconds=1))
    assert not operations.customer_is_elderly(station, Customer.get_by_id(mother.id))
