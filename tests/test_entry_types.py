"""The entry-type registry: payload checks, and "adding a type" as a checklist that names what is missing."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from pathlib import Path

import pytest
from test_ui_catalogue import zh_catalogue
from ui_helpers import login

from station import agents, business_day, complaints, errors, feedback, operations, receipts, wmp
from station.clock import accept_clock
from station.db import Customer, JournalEntry, Payee, WmpProduct
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.link import note_failure
from station.protocol.entry_types import (
    INVALID_AMOUNT,
    LIVE_STATES,
    MALFORMED_ENTRY,
    SPECS,
    STATE_LABELS,
    UNKNOWN_TYPE,
    EntryType,
    OperationState,
    entry_problem,
    markdown_table,
    printable,
    types_where,
)
from station.protocol.tokens import unverified_payload
from station.rotation import rotate_key
from station.ui.operations import FLOWS
from sync_server.posting_rules import Applier

ROOT = Path(__file__).resolve().parents[1]
TXN = "0b7e2d62-3c5f-4c4e-9a53-7f1d1e6f3a10"


def deposit(**changes):
    payload = {"v": 1, "station": "ST-0001", "seq": 7, "type": "deposit", "ts": "2026-11-02T23:40:00.000Z",
               "prev": "x" * 43, "txn": TXN, "agent": "A01", "account": "DM00010001", "amount": 10_000}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


def test_a_station_deposit_is_well_formed():
    assert entry_problem(deposit()) is None


@pytest.mark.parametrize("changes, reason", [
    ({"type": "insurance_order"}, UNKNOWN_TYPE),
    ({"type": "customer"}, UNKNOWN_TYPE),
    ({"type": 7}, MALFORMED_ENTRY),
    ({"amount": 10.0}, INVALID_AMOUNT),
    ({"amount": 21.5}, INVALID_AMOUNT),
    ({"amount": "100"}, INVALID_AMOUNT),
    ({"amount": True}, INVALID_AMOUNT),
    ({"amount": -1}, INVALID_AMOUNT),
    ({"amount": ...}, MALFORMED_ENTRY),
    ({"seq": 21.0}, MALFORMED_ENTRY),
    ({"seq": True}, MALFORMED_ENTRY),
    ({"v": "1"}, MALFORMED_ENTRY),
    ({"account": ""}, MALFORMED_ENTRY),
    ({"account": "DM0001\n0001"}, MALFORMED_ENTRY),
    ({"account": "DM0001\x000001"}, MALFORMED_ENTRY),
    ({"account": "\u202eDM00010001"}, MALFORMED_ENTRY),
    ({"account": "D" * 65}, MALFORMED_ENTRY),
    ({"txn": TXN.upper()}, MALFORMED_ENTRY),
    ({"txn": ...}, MALFORMED_ENTRY),
    ({"fee": 100}, MALFORMED_ENTRY),  # deposits carry no fee
    ({"note": "x"}, MALFORMED_ENTRY),
])
def test_payload_problems(changes, reason):
    assert entry_problem(deposit(**changes)) == reason


def test_payload_that_is_not_an_object_is_malformed():
    assert entry_problem(["deposit"]) == MALFORMED_ENTRY


def test_operation_states():
    assert set(LIVE_STATES) == {OperationState.RECORDED, OperationState.SETTLED}
    assert types_where(reversible=True) == (EntryType.WITHDRAWAL, EntryType.DEPOSIT, EntryType.BILL_PAYMENT)


def test_every_state_has_its_labels_on_screen_and_paper_translated():
    """One label per state drives the receipt screens and the paper: none missing, each msgid translated."""
    assert set(STATE_LABELS) == set(OperationState)
    catalogue = zh_catalogue()
    for state, label in STATE_LABELS.items():
        assert catalogue.get(label.label) is not None and catalogue.get(label.label).string, state
        chinese, english = label.printed
        assert chinese and english == label.label, state


def test_every_entry_type_has_a_server_handler_and_every_handler_a_registered_type():
    assert set(Applier.HANDLERS) == set(EntryType)
    assert set(SPECS) == set(EntryType)


def test_the_docs_table_is_the_registry():
    text = (ROOT / "docs/protocol.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- entry-types:begin -->\n(.*?)<!-- entry-types:end -->", text, re.S)
    assert block is not None, "docs/protocol.md lost its entry-types markers"
    assert block.group(1) == markdown_table(), "run: python -m station.protocol.entry_types"


def written_by_the_station(st) -> dict[str, dict]:
    """One of every entry the station's own writers produce, from a scripted day: type -> payload."""
    with st.bound():
        agent_id, _, _, agent_pin = DEMO_AGENTS[0]
        supervisor_id, _, _, supervisor_pin = DEMO_AGENTS[1]
        for _ in range(st.policy["agent_pin_tries"]):
            with pytest.raises((errors.WrongAgentPin, errors.AgentLocked)):
                agents.login_agent(st, agent_id, "000000")
        supervisor = agents.login_agent(st, supervisor_id, supervisor_pin)
        agents.unlock_agent(st, supervisor, agent_id)
        session = agents.login_agent(st, agent_id, agent_pin)
        business_day.open_day(st, session, {"10000": 300})
        customer = Customer.select().where(Customer.card_number.is_null(False)).first()
        with pytest.raises(errors.WrongCustomerPin):
            agents.authenticate_customer(st, session, customer, "000000")
        auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
        new = receipts.new_txn_id
        paid = operations.withdraw_cash(st, session, auth, 10_000, new())
        operations.deposit_cash(st, session, auth, 5_000, new())
        payee = Payee.select().where(Payee.customer == customer.id).first()
        sent = operations.transfer(st, session, auth, payee.account if payee else "6222001234567890123",
                                   payee.name if payee else "王小明", 10_000, new(), fraud_warning_confirmed=True)
        operations.cancel_transfer(st, session, auth, sent.txn, new())
        operations.stop_transfer(st, session, customer, "6222001234567890123", "公安局安全账户", 20_000, new())
        operations.pay_bill(st, session, None, "ELEC-SGCC", "3300112233", 8_640, new())
        operations.balance_enquiry(st, session, auth, new())
        # A wealth-product order: the catalogue and the customer's risk level as a downlink would leave them.
        today = st.local_date().isoformat()
        WmpProduct.create(code="WM-TEST", name_zh="稳健理财", name_en="Steady", risk_level=2, min_fen=10_000,
                          step_fen=1_000, opens_on=today, closes_on=today, description_zh="可能亏损本金。",
                          description_en="The capital can be lost.")
        Customer.update(risk_level=3).where(Customer.id == customer.id).execute()
        wmp.place_order(st, session, auth, "WM-TEST", 10_000, new(), risk_statement_read=True)
        operations.reverse(st, supervisor, paid.txn, new(), "Wrong amount")
        feedback.record_feedback(st, session, "praise", "服务很好\n谢谢", new())
        complaints.record_complaint(st, session, "13812345678", "好又多超市", "price", "", True, new())
        # The drawer is out beyond the tolerance: the close carries the reason and the approving supervisor.
        business_day.close_day(st, session, {"10000": 300}, reason="Miscount", supervisor=supervisor)
        rotate_key(st, "technician")
        # The clock runs a day ahead while the station tries to reach the bank, then is set right: the technician
        # accepts it.
        real_time = st.clock.now
        st.clock.now = real_time + timedelta(days=1)
        note_failure(st, "probe", "unreachable")
        st.clock.now = real_time
        accept_clock(st, "fake-hwclock restored a later time")
        payloads = {}
        for entry in JournalEntry.select().order_by(JournalEntry.seq):
            payloads.setdefault(entry.type, unverified_payload(entry.token))
        return payloads


def test_adding_a_type_is_a_checklist(station):
    """For each registered type: a spec, a station writer whose entries fit it, a server handler, a UI flow (home
    tiles), labels in the catalogue and on paper, a docs row. The failure names every missing piece."""
    written = written_by_the_station(station)
    catalogue = zh_catalogue()
    docs = (ROOT / "docs/protocol.md").read_text(encoding="utf-8")
    missing = []
    for entry_type in EntryType:
        spec = SPECS.get(entry_type)
        if spec is None:
            missing.append(f"{entry_type}: no spec row in SPECS")
            continue
        if entry_type not in written:
            missing.append(f"{entry_type}: no station writer (the scripted day in this test wrote none)")
        elif entry_problem(written[entry_type]) is not None:
            missing.append(f"{entry_type}: the station writes {written[entry_type]}, which its spec refuses "
                           f"({entry_problem(written[entry_type])})")
        if entry_type not in Applier.HANDLERS:
            missing.append(f"{entry_type}: no server handler in Applier.HANDLERS")
        if spec.home_tile and entry_type not in FLOWS:
            missing.append(f"{entry_type}: no UI flow in station.ui.operations.FLOWS")
        if spec.label and not (catalogue.get(spec.label) and catalogue.get(spec.label).string):
            missing.append(f"{entry_type}: label {spec.label!r} not translated in the zh catalogue")
        if (spec.customer_operation or spec.label) and not (spec.label and spec.printed):
            missing.append(f"{entry_type}: a receipt needs both a screen label and a printed label")
        if f"| `{entry_type}` |" not in docs:
            missing.append(f"{entry_type}: no row in docs/protocol.md's entry types table")
    assert set(FLOWS) <= set(types_where(home_tile=True)), "a UI flow for a type the registry has no tile for"
    assert missing == []


def test_home_tiles_are_the_registry_flows(ui_client, open_drawer):
    login(ui_client)
    page = ui_client.get("/home").get_data(as_text=True)
    tiles = set(re.findall(r'id="tile-([a-z_]+)"', page)) & {str(t) for t in EntryType}
    assert tiles == set(types_where(home_tile=True))


def test_printable_refuses_exactly_controls_format_characters_surrogates_and_line_breaks():
    """Over every code point: the fast path (``str.isprintable``) never lets through what the categories refuse."""
    refused = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    wrong = [hex(point) for point in range(0x110000)
             if printable(chr(point)) == (unicodedata.category(chr(point)) in refused)]
    assert wrong == []
    assert printable("李伟\u3000DM00010001 ") and not printable("payee\u202eevil")
