"""No signed input can wedge a station: each malformed shape the review found, signed with a real station key.

Each entry below is what a tampered device signs with the key taken from its SD card: the journal's own format
(seq, prev, ts, the station's signature) around a payload the station would never write. For each the sync answers
(never a 500), the entry is settled as rejected with its reason in the signed ack, nothing is posted for it, the
ledger's invariants hold, the station marks its operation rejected and never sends the entry again, and an honest
deposit recorded after it settles in the next sync.
"""

from __future__ import annotations

import pytest
from sync_support import append_forged_entry, enrolled_station, server_db

from station import agents, business_day, operations, receipts
from station.db import Customer, JournalEntry, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.journal import entry_payload
from station.protocol.entry_types import MAX_ID, MAX_TEXT
from station.sync import pending_entries, sync_once
from sync_server.checks import check_ledger
from sync_server.db import Entry, Posting, Transfer

ACCOUNT = "DM00010001"
AGENT = DEMO_AGENTS[0][0]


def transfer_body(**changes) -> dict:
    """A well-formed transfer's fields (besides the chain's, with the policy's 2-yuan fee; past the fraud warning, as
    a new payee's), with ``changes`` applied."""
    return {"agent": AGENT, "account": ACCOUNT, "amount": 10_000, "fee": 200, "payee_account": "6222020200112233445",
            "payee_name": "Li Wei", "warned": True, **changes}


def open_counter(st):
    """The station's agents added and its day opened (a customer visit can follow); synced."""
    with st.bound():
        for agent_id, name, role, pin in DEMO_AGENTS:
            agents.add_agent(st, agent_id, name, role, pin)
        session = agents.login_agent(st, AGENT, DEMO_AGENTS[0][3])
        business_day.open_day(st, session, {"10000": 300})
    assert sync_once(st, attempts=1).rejected == {}
    return session


def forge(st, entry_type: str, body: dict, txn: str | None = None, operation: bool = True):
    """Sign ``body`` as the station's next entry of ``entry_type``; with ``operation``, the station's operation row
    for it too (as a tampered station's UI would have written), so the station's view of the outcome is checked."""
    with st.write():
        entry = append_forged_entry(st, entry_type, st.now(), body, txn=txn)
        if operation and txn is not None:
            Operation.create(txn=txn, seq=entry.seq, type=entry_type, request_hash="-", agent_id=AGENT,
                             business_date=st.local_date().isoformat(), amount_fen=10_000, created_at=st.now())
    return entry


def postings_of(seq: int) -> int:
    server_db()
    return Posting.select().where((Posting.station_id == "ST-0001") & (Posting.seq == seq)).count()


def stored_outcome(seq: int) -> tuple[str, str | None]:
    server_db()
    entry = Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == seq))
    return entry.outcome, entry.reason


def assert_station_moves_on(st, session) -> None:
    """The outbox is empty, the ledger holds, and an honest deposit recorded now is the only entry of the next
    sync (the rejected one is not sent again) and settles."""
    assert pending_entries(st) == 0
    server_db()
    assert check_ledger() == []
    with st.bound():
        customer = Customer.get(Customer.account_id == ACCOUNT)
        auth = agents.authenticate_customer(st, session, customer, DEMO_CUSTOMER_PIN)
        honest = operations.deposit_cash(st, session, auth, 5_000, receipts.new_txn_id())
    result = sync_once(st, attempts=1)
    assert (result.entries, result.rejected, result.pending) == (1, {}, 0)
    assert stored_outcome(honest.seq) == ("settled", None)
    assert postings_of(honest.seq) > 0
    with st.bound():
        assert Operation.get(Operation.txn == honest.txn).status == "settled"
    server_db()
    assert check_ledger() == []


def assert_rejected(st, session, entry, reason: str) -> None:
    """One sync: ``entry`` alone is rejected with ``reason``, acknowledged, unposted; then the station moves on."""
    result = sync_once(st, attempts=1)
    assert result.rejected == {entry.seq: reason}
    assert result.acked_seq == entry.seq
    assert stored_outcome(entry.seq) == ("rejected", reason)
    assert postings_of(entry.seq) == 0
    if entry.txn is not None:
        with st.bound():
            op = Operation.get_or_none(Operation.seq == entry.seq)
        if op is not None:
            assert (op.status, op.outcome_reason) == ("rejected", reason)
    assert_station_moves_on(st, session)


@pytest.fixture
def counter(server, tmp_path, clock):
    """ST-0001 enrolled, synced, its counter open: (station, agent session)."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    return st, open_counter(st)


SHAPES = [
    # (test id, entry type, body, reason)
    ("payee name with NUL", "transfer", transfer_body(payee_name="Li\x00Wei"), "malformed_entry"),
    ("transfer of amount 0", "transfer", transfer_body(amount=0), "invalid_amount"),
    ("withdrawal of amount 0", "withdrawal", {"agent": AGENT, "account": ACCOUNT, "amount": 0}, "invalid_amount"),
    ("bill payment of amount 0", "bill_payment",
     {"agent": AGENT, "amount": 0, "biller": "ELEC-SGCC", "ref": "1234567890", "funding": "cash"}, "invalid_amount"),
    ("account as a list", "transfer", transfer_body(account=[ACCOUNT]), "malformed_entry"),
    ("account as a dict", "transfer", transfer_body(account={"id": ACCOUNT}), "malformed_entry"),
    ("payee name null", "transfer", transfer_body(payee_name=None), "malformed_entry"),
    ("payee name a dict", "transfer", transfer_body(payee_name={"zh": "李伟"}), "malformed_entry"),
    ("type customer", "customer", {"agent": AGENT, "account": ACCOUNT}, "unknown_type"),
    ("type _init__", "_init__", {"agent": AGENT, "account": ACCOUNT}, "unknown_type"),
    ("type __init__", "__init__", {"agent": AGENT}, "unknown_type"),
    ("type billers", "billers", {"agent": AGENT, "amount": 10_000}, "unknown_type"),
    ("bidi override in a payee name", "transfer", transfer_body(payee_name="\u202eieW iL"), "malformed_entry"),
    ("bidi isolate in an account", "transfer", transfer_body(account="\u2066" + ACCOUNT), "malformed_entry"),
    ("ESC p (drawer kick) in a payee name", "transfer", transfer_body(payee_name="Li\x1bp\x00\x19\xfaWei"),
     "malformed_entry"),
    ("GS V (cut) in a bill reference", "bill_payment",
     {"agent": AGENT, "amount": 10_000, "biller": "ELEC-SGCC", "ref": "123\x1dV\x00", "funding": "cash"},
     "malformed_entry"),
    ("ESC @ (reset) in feedback", "feedback", {"agent": AGENT, "category": "praise", "text": "good\x1b@"},
     "malformed_entry"),
    ("line separator in a reversal reason", "reversal",
     {"agent": AGENT, "ref_txn": receipts.new_txn_id(), "reason": "typo\u2028again"}, "malformed_entry"),
    ("payee name too long", "transfer", transfer_body(payee_name="李" * (MAX_TEXT + 1)), "malformed_entry"),
    ("account too long", "transfer", transfer_body(account="D" * (MAX_ID + 1)), "malformed_entry"),
    ("agent empty", "transfer", transfer_body(agent=""), "malformed_entry"),
    ("feedback of 100,000 characters", "feedback", {"agent": AGENT, "category": "complaint", "text": "x" * 100_000},
     "malformed_entry"),
    ("amount 10**30", "transfer", transfer_body(amount=10**30), "invalid_amount"),
    ("amount 2**63", "withdrawal", {"agent": AGENT, "account": ACCOUNT, "amount": 2**63}, "invalid_amount"),
    ("fee 2**64", "transfer", transfer_body(fee=2**64), "invalid_amount"),
    ("count of pieces 10**30", "day_close",
     {"agent": AGENT, "amount": 3_000_000, "expected": 3_000_000, "variance": 0, "counts": {"10000": 10**30},
      "operations": 0, "business_date": "2026-11-03"}, "malformed_entry"),
    ("negative amount", "transfer", transfer_body(amount=-10_000), "invalid_amount"),
    ("negative deposit", "deposit", {"agent": AGENT, "account": ACCOUNT, "amount": -1}, "invalid_amount"),
    ("negative fee", "withdrawal", {"agent": AGENT, "account": ACCOUNT, "amount": 10_000, "fee": -500},
     "invalid_amount"),
    ("nested object as amount", "transfer", transfer_body(amount={"fen": {"value": [10_000]}}), "invalid_amount"),
    ("nested objects in a payee name", "transfer", transfer_body(payee_name=[{"a": [{"b": {}}]}]), "malformed_entry"),
    ("deeply nested payee name", "transfer", transfer_body(payee_name=[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]),
     "malformed_entry"),
    ("float amount", "transfer", transfer_body(amount=10_000.0), "invalid_amount"),
    ("boolean amount", "transfer", transfer_body(amount=True), "invalid_amount"),
    ("an extra nested field", "transfer", transfer_body(extra={"nested": {"deeper": [1, 2, 3]}}), "malformed_entry"),
]


@pytest.mark.parametrize("entry_type, body, reason", [shape[1:] for shape in SHAPES],
                         ids=[shape[0] for shape in SHAPES])
def test_a_hostile_shape_is_rejected_and_the_station_moves_on(counter, entry_type, body, reason):
    st, session = counter
    entry = forge(st, entry_type, body, txn=receipts.new_txn_id() if entry_type != "day_close" else None)
    assert_rejected(st, session, entry, reason)


def test_a_transfer_of_amount_zero_makes_no_transfer_to_execute(counter):
    """The bank's transfer table refuses an amount of 0 (a CHECK): the entry must be rejected before it gets there."""
    st, session = counter
    entry = forge(st, "transfer", transfer_body(amount=0), txn=receipts.new_txn_id())
    assert_rejected(st, session, entry, "invalid_amount")
    server_db()
    assert Transfer.select().where(Transfer.station_id == "ST-0001").count() == 0



def test_an_entry_whose_ts_is_a_number_is_sent_whole_and_rejected(counter):
    """The compact batch form cannot carry a ts that is a number: the station sends that entry whole (it once raised
    while building the batch, wedging the outbox) and the bank rejects it."""
    st, session = counter
    with st.write():
        payload = entry_payload(st, "deposit", st.now(), {"agent": AGENT, "account": ACCOUNT, "amount": 5_000},
                                txn=receipts.new_txn_id())
        payload["ts"] = 10**15
        entry = JournalEntry.create(seq=payload["seq"], type="deposit", txn=payload["txn"],
                                    token=st.signer.sign(payload), recorded_at=st.now())
    assert_rejected(st, session, entry, "malformed_entry")


def test_two_transfers_sharing_a_txn_settle_once(counter):
    """The second transfer with a txn already seen is rejected (``duplicate_txn``), in the same batch or later."""
    st, session = counter
    txn = receipts.new_txn_id()
    first = forge(st, "transfer", transfer_body(amount=10_000), txn=txn)
    second = forge(st, "transfer", transfer_body(amount=20_000), txn=txn, operation=False)
    result = sync_once(st, attempts=1)
    assert result.rejected == {second.seq: "duplicate_txn"}
    assert stored_outcome(first.seq) == ("settled", None)
    assert postings_of(second.seq) == 0
    server_db()
    assert [t.amount_fen for t in Transfer.select().where(Transfer.txn == txn)] == [10_000]
    third = forge(st, "transfer", transfer_body(amount=30_000), txn=txn, operation=False)
    assert_rejected(st, session, third, "duplicate_txn")
