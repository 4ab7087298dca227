"""Online operations (station.online): the bank asked in real time, operations recorded under its grant, the
offline rules whenever the grant is missing, expired or not this operation's, refusals in words, live balances.

The bank here is tests/bank_stub.py (the authorization contract with test keys); tests/test_online_e2e.py runs the
same story against the real sync server.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from bank_stub import StubBank, running
from ui_helpers import identity_present

from station import agents, errors, limits, online, operations, receipts
from station.db import BankAuthorization, Customer, Operation
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN
from station.journal import journal_head
from station.link import link_status, note_failure
from station.protocol.authorizations import REFUSALS
from station.protocol.times import utc_text
from station.protocol.tokens import unverified_payload
from station.sync import apply_downlink, pending_entries

PAYEE = ("6222000000000000001", "王小明")


@pytest.fixture
def bank(open_drawer, clock):
    with running(StubBank(clock)) as stub:
        stub.attach(open_drawer)
        yield stub


def customer(index: int = 0) -> Customer:
    return Customer.select().order_by(Customer.id)[index]


def pin(st, agent, who: Customer):
    return agents.authenticate_customer(st, agent, who, DEMO_CUSTOMER_PIN)


def ask(st, agent, kind, who: Customer, amount=0, fee=0, txn=None, **extra):
    """Ask the bank for ``kind``; returns (txn, answer)."""
    txn = txn or receipts.new_txn_id()
    return txn, online.authorize(st, kind, txn=txn, agent=agent.agent_id, account=who.account_id, amount=amount,
                                 fee=fee, **extra)


def ask_transfer(st, agent, who, yuan, txn=None):
    return ask(st, agent, "transfer", who, yuan * 100, 200, txn, payee_account=PAYEE[0])


def send(st, agent, who, yuan, txn, authorization=None):
    """A transfer to the new payee past the fraud warning (from 10,000 yuan with the supervisor's approval)."""
    supervisor_id, _, _, supervisor_pin = DEMO_AGENTS[1]
    approval = (operations.approve_past_warning(st, agent, supervisor_id, supervisor_pin)
                if yuan * 100 >= st.policy["fraud_supervisor_fen"] else None)
    return operations.transfer(st, agent, pin(st, agent, who), *PAYEE, str(yuan), txn,
                               fraud_warning_confirmed=True, approval=approval, authorization=authorization)


def entry_of(receipt) -> dict:
    return unverified_payload(receipt.token)


# -- granted: the offline rules give way, the limits and the drawer do not ---------------------------------
def test_grant_is_recorded_and_skips_the_offline_rules(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    assert limits.offline_available(st, mother) == 300_000
    with pytest.raises(errors.OverOfflineAllowance):
        send(st, agent, mother, 20_000, receipts.new_txn_id())
    txn, grant = ask_transfer(st, agent, mother, 20_000)
    assert grant.granted and grant.auth_id == "AUTH-0001"
    receipt = send(st, agent, mother, 20_000, txn, authorization=grant)
    assert entry_of(receipt)["auth"] == "AUTH-0001"
    assert Operation.get_by_id(txn).auth_id == "AUTH-0001"
    # The bank holds it: neither the allowance nor the unsynced exposure counts it.
    assert limits.offline_available(st, mother) == 300_000
    assert limits.unsynced_exposure(st) == (0, 0)
    request = bank.requests[-1]
    assert (request["kind"], request["amount"], request["fee"], request["payee_account"], request["agent"]) == (
        "transfer", 2_000_000, 200, PAYEE[0], agent.agent_id)


def test_the_stored_row_serves_as_well_as_the_answer(open_drawer, bank, agent):
    st, mother = open_drawer, customer(1)
    txn, _ = ask(st, agent, "withdrawal", mother, 100_000)
    row = BankAuthorization.get(BankAuthorization.txn == txn)
    receipt = operations.withdraw_cash(st, agent, pin(st, agent, mother), "1000", txn, authorization=row,
                                       identity=identity_present(st))
    assert entry_of(receipt)["auth"] == row.auth_id


def test_the_per_transaction_and_daily_limits_and_the_drawer_still_apply(open_drawer, bank, agent):
    st, mother = open_drawer, customer(2)
    auth = pin(st, agent, mother)
    txn, grant = ask(st, agent, "withdrawal", mother, 100_000)
    operations.withdraw_cash(st, agent, auth, "1000", txn, authorization=grant, identity=identity_present(st))
    txn, grant = ask(st, agent, "withdrawal", mother, 10_000)
    with pytest.raises(errors.OverDailyLimit):
        operations.withdraw_cash(st, agent, auth, "100", txn, authorization=grant)
    txn, grant = ask_transfer(st, agent, mother, 20_001)
    with pytest.raises(errors.OverTransactionLimit):
        send(st, agent, mother, 20_001, txn, authorization=grant)
    # A drawer of 30,000 yuan less 1,000: a granted withdrawal still needs the cash (here over it, by policy).
    st.set_setting("policy", {"limits": {"withdrawal": {"per_txn": 5_000_000, "daily": 5_000_000}}})
    other = customer(3)
    txn, grant = ask(st, agent, "withdrawal", other, 3_000_000)
    with pytest.raises(errors.InsufficientCash):
        operations.withdraw_cash(st, agent, pin(st, agent, other), "30000", txn, authorization=grant)


def test_a_bill_from_the_account_and_a_balance_enquiry_under_grants(open_drawer, bank, agent):
    st, mother = open_drawer, customer(4)
    txn, grant = ask(st, agent, "bill_payment", mother, 10_000, 0, biller="ELEC-SGCC")
    receipt = operations.pay_bill(st, agent, pin(st, agent, mother), "ELEC-SGCC", "0012345678", "100", txn,
                                  funding="account", authorization=grant)
    assert entry_of(receipt)["auth"] == grant.auth_id
    assert limits.offline_available(st, mother) == 300_000


# -- no grant: the offline rules, never silently authorized --------------------------------------------------
def test_an_expired_grant_falls_back_to_the_offline_rules(open_drawer, bank, agent, clock):
    st, mother = open_drawer, customer(0)
    txn, grant = ask_transfer(st, agent, mother, 20_000)
    clock.advance(minutes=3)
    with pytest.raises(errors.OverOfflineAllowance):
        send(st, agent, mother, 20_000, txn, authorization=grant)
    txn, grant = ask(st, agent, "withdrawal", mother, 50_000)
    clock.advance(minutes=3)
    receipt = operations.withdraw_cash(st, agent, pin(st, agent, mother), "500", txn, authorization=grant)
    assert "auth" not in entry_of(receipt) and Operation.get_by_id(txn).auth_id is None
    assert limits.offline_available(st, mother) == 250_000


def test_the_bank_clock_decides_expiry(open_drawer, bank, agent, clock):
    """The station's clock runs 5 minutes slow: the bank's clock (the last ack's offset) says the grant expired."""
    st, mother = open_drawer, customer(0)
    txn, grant = ask(st, agent, "withdrawal", mother, 50_000)
    st.set_setting("server_time_offset_ms", 5 * 60 * 1000)
    receipt = operations.withdraw_cash(st, agent, pin(st, agent, mother), "500", txn, authorization=grant)
    assert "auth" not in entry_of(receipt)


@pytest.mark.parametrize("change", ["amount", "txn", "kind", "account"])
def test_a_grant_for_something_else_falls_back(open_drawer, bank, agent, change):
    st, mother = open_drawer, customer(0)
    txn, grant = ask(st, agent, "withdrawal", mother, 50_000)
    amount, record_txn, who = "500", txn, mother
    if change == "amount":
        amount = "400"
    elif change == "txn":
        record_txn = receipts.new_txn_id()
    elif change == "account":
        who = customer(1)
    if change == "kind":
        receipt = send(st, agent, who, 500, txn, authorization=grant)
    else:
        receipt = operations.withdraw_cash(st, agent, pin(st, agent, who), amount, record_txn, authorization=grant)
    assert "auth" not in entry_of(receipt)
    assert Operation.get(Operation.seq == receipt.seq).auth_id is None


def test_a_grant_never_stored_is_not_used(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    txn, grant = ask(st, agent, "withdrawal", mother, 50_000)
    BankAuthorization.delete().execute()
    receipt = operations.withdraw_cash(st, agent, pin(st, agent, mother), "500", txn, authorization=grant)
    assert "auth" not in entry_of(receipt)


def test_no_answer_in_time_is_none_and_the_link_notes_it(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    st.update_config("link", {"auth_timeout_seconds": 0.3})
    bank.hold = threading.Event()
    assert ask(st, agent, "withdrawal", mother, 50_000)[1] is None
    assert link_status(st)["last_failure_reason"] == "timeout"
    assert BankAuthorization.select().count() == 0


def test_an_answer_that_does_not_verify_is_none_and_a_bad_answer(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    bank.tamper = True
    assert ask(st, agent, "withdrawal", mother, 50_000)[1] is None
    assert link_status(st)["last_failure_reason"] == "bad_answer"
    assert BankAuthorization.select().count() == 0


def test_an_unreachable_bank_is_none(open_drawer, agent):
    st, mother = open_drawer, customer(0)
    StubBank(lambda: st.now()).attach(st)  # enrolled with a bank at no address: url ""
    st.update_config("server", {**st.config["server"], "url": "http://127.0.0.1:9"})
    assert ask(st, agent, "withdrawal", mother, 50_000)[1] is None
    assert link_status(st)["last_failure_reason"] == "refused"


def test_a_link_known_down_is_not_asked(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    note_failure(st, "probe", "refused")
    assert ask(st, agent, "withdrawal", mother, 50_000)[1] is None
    assert bank.requests == []


def test_a_station_not_enrolled_is_not_asked(open_drawer, agent):
    assert ask(open_drawer, agent, "withdrawal", customer(0), 50_000)[1] is None


# -- refusals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", REFUSALS)
def test_each_refusal_is_its_own_error_and_records_nothing(open_drawer, bank, agent, reason):
    st, mother = open_drawer, customer(0)
    bank.decide = lambda request: {"granted": False, "reason": reason}
    head = journal_head(st)[0]
    with pytest.raises(errors.BankRefused) as refused:
        ask(st, agent, "withdrawal", mother, 50_000)
    assert refused.value.reason == reason and type(refused.value) is errors.BANK_REFUSALS[reason]
    assert refused.value.code == f"bank_{reason}"
    assert journal_head(st)[0] == head
    row = BankAuthorization.get()
    assert (row.reason, row.auth_id) == (reason, None)
    # A refusal is never usable as a grant.
    assert online.usable_grant(st, row, kind="withdrawal", txn=row.txn, account=mother.account_id,
                               amount=50_000, fee=0) is None


def test_every_refusal_reason_has_its_words():
    assert set(errors.BANK_REFUSALS) == set(REFUSALS)


@pytest.mark.parametrize(("reason", "status"), [("account_locked", "locked"), ("account_closed", "closed")])
def test_a_locked_or_closed_account_is_marked_so(open_drawer, bank, agent, reason, status):
    st, mother = open_drawer, customer(0)
    bank.decide = lambda request: {"granted": False, "reason": reason}
    with pytest.raises(errors.BankRefused):
        ask(st, agent, "withdrawal", mother, 50_000)
    assert Customer.get_by_id(mother.id).status == status


# -- idempotency ---------------------------------------------------------------------------------------------
def test_the_same_txn_asked_again_gets_the_same_grant_and_records_once(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    txn, first = ask_transfer(st, agent, mother, 20_000)
    _, again = ask_transfer(st, agent, mother, 20_000, txn)
    assert (again.auth_id, again.expires_at) == (first.auth_id, first.expires_at)
    assert BankAuthorization.select().count() == 1
    receipt = send(st, agent, mother, 20_000, txn, authorization=first)
    assert send(st, agent, mother, 20_000, txn, authorization=again) == receipt
    assert Operation.select().where(Operation.type == "transfer").count() == 1


# -- balances -----------------------------------------------------------------------------------------------
def test_offline_balance_is_the_snapshot_less_this_stations_debits_since(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    note_failure(st, "probe", "refused")  # offline: nobody is asked
    snapshot = Customer.get_by_id(mother.id).balance_fen
    auth = pin(st, agent, mother)
    operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    operations.deposit_cash(st, agent, auth, "200", receipts.new_txn_id())
    balance = operations.balance_enquiry(st, agent, auth, receipts.new_txn_id())
    assert balance.balance_fen == snapshot - 50_000 and not balance.online
    assert balance.offline_available_fen == 250_000
    entry = entry_of(balance.receipt)
    assert (entry["balance"], entry["offline_available"], entry["as_of"]) == (
        snapshot - 50_000, 250_000, utc_text(mother.balance_as_of))
    assert "auth" not in entry


def test_online_balance_is_the_banks_live_figure(open_drawer, bank, agent, clock):
    st, mother = open_drawer, customer(0)
    auth = pin(st, agent, mother)
    operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    acked = journal_head(st)[0]
    operations.withdraw_cash(st, agent, auth, "300", receipts.new_txn_id())
    clock.advance(minutes=1)
    # The bank has the first withdrawal (through seq ``acked``), not the second.
    bank.decide = lambda request: {"balance": 1_234_500, "acked_seq": acked}
    txn, grant = ask(st, agent, "balance_enquiry", mother)
    fresh = Customer.get_by_id(mother.id)
    assert (fresh.balance_fen, fresh.balance_seq, fresh.balance_as_of) == (1_234_500, acked, clock.now)
    balance = operations.balance_enquiry(st, agent, auth, txn, authorization=grant)
    assert balance.online and balance.balance_fen == 1_234_500 - 30_000
    assert balance.balance_as_of == clock.now
    assert entry_of(balance.receipt)["auth"] == grant.auth_id


def test_an_older_balance_never_replaces_a_newer_one(open_drawer, bank, agent, clock):
    st, mother = open_drawer, customer(0)
    Customer.update(balance_as_of=clock.now + timedelta(minutes=5)).where(Customer.id == mother.id).execute()
    bank.decide = lambda request: {"balance": 1, "acked_seq": 1}
    ask(st, agent, "balance_enquiry", mother)
    assert Customer.get_by_id(mother.id).balance_fen == mother.balance_fen


def test_the_downlink_snapshot_counts_through_the_acked_seq(open_drawer, clock):
    st, mother = open_drawer, customer(0)
    item = {"account_id": mother.account_id, "name": mother.name, "card_number": mother.card_number,
            "passbook_number": mother.passbook_number, "pin_verifier": mother.pin_verifier, "allowance_fen": 100_000,
            "balance_fen": 777_700}
    apply_downlink(st, {"customers": [item]}, 7, clock.now)
    fresh = Customer.get_by_id(mother.id)
    assert (fresh.balance_fen, fresh.balance_seq) == (777_700, 7)


# -- cancelling a transfer -----------------------------------------------------------------------------------
def test_a_settled_transfer_is_cancelled_with_the_banks_grant_only(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    auth = pin(st, agent, mother)
    sent = send(st, agent, mother, 800, receipts.new_txn_id())
    Operation.update(status="settled").where(Operation.txn == sent.txn).execute()
    bank.decide = lambda request: {"granted": False, "reason": "not_cancellable"}
    with pytest.raises(errors.BankNotCancellable):
        ask(st, agent, "transfer_cancel", mother, 80_000, ref_txn=sent.txn)
    with pytest.raises(errors.NotCancellable):
        operations.cancel_transfer(st, agent, auth, sent.txn, receipts.new_txn_id())
    bank.decide = lambda request: {}
    txn, grant = ask(st, agent, "transfer_cancel", mother, 80_000, ref_txn=sent.txn)
    cancel = operations.cancel_transfer(st, agent, auth, sent.txn, txn, authorization=grant)
    assert entry_of(cancel)["auth"] == grant.auth_id
    assert Operation.get_by_id(sent.txn).status == "cancelled"


# -- pushing at once -----------------------------------------------------------------------------------------
def test_a_failed_push_loses_nothing(open_drawer, bank, agent):
    st, mother = open_drawer, customer(0)
    operations.withdraw_cash(st, agent, pin(st, agent, mother), "500", receipts.new_txn_id())
    waiting = pending_entries(st)
    assert online.push_now(st) is False
    assert pending_entries(st) == waiting


def test_the_push_does_not_wait_for_a_running_sync(open_drawer, bank, agent):
    st = open_drawer
    operations.withdraw_cash(st, agent, pin(st, agent, customer(0)), "500", receipts.new_txn_id())
    taken, release = threading.Event(), threading.Event()

    def long_sync():
        with st.sync_lock:
            taken.set()
            release.wait(timeout=10)

    worker = threading.Thread(target=long_sync)
    worker.start()
    taken.wait(timeout=5)
    try:
        assert online.push_now(st) is False
    finally:
        release.set()
        worker.join()


def test_every_reason_the_bank_rejects_an_entry_with_has_words_on_the_receipt():
    """The receipt words the bank's rejection (``errors.REJECTION_REASONS``) instead of showing its code: every
    reason the posting rules can give has an entry, found by reading the rules' source."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source = (root / "sync_server/posting_rules.py").read_text(encoding="utf-8")
    given = set(re.findall(r'Outcome\("rejected", "([a-z_]+)"\)', source))
    given |= set(re.findall(r'(?:return|refusal =) "([a-z_]+)"', source))
    given.discard("malformed")  # _stored_type's name for a type that is not text: not a reason
    given |= {"malformed_entry", "invalid_amount", "unknown_type"}  # entry_problem's, from the registry
    assert len(given) > 15
    assert sorted(given - set(errors.REJECTION_REASONS)) == []
