"""Each operation's refusals, in the documented check order, with the exact error each input gets."""

from __future__ import annotations

import re

import pytest
from ui_helpers import identity_present

from station import agents, business_day, errors, limits, operations, receipts
from station.db import Agent, Biller, BlockedPayee, BusinessDay, Customer, JournalEntry, Operation, Payee
from station.demo import DEMO_CUSTOMER_PIN
from station.journal import UnsignableEntry, append_entry, journal_head
from station.protocol.pins import check_pin
from station.protocol.times import utc_text
from station.protocol.tokens import unverified_payload

PIN = DEMO_CUSTOMER_PIN


def customer(number: int = 0) -> Customer:
    return Customer.select().where(Customer.card_number.is_null(False)).order_by(Customer.id)[number]


@pytest.fixture
def auth(open_drawer, agent):
    return agents.authenticate_customer(open_drawer, agent, customer(), PIN)


def entries() -> int:
    return JournalEntry.select().count()


# -- amounts ----------------------------------------------------------------------------------------------
BAD_AMOUNTS = [
    ("", errors.InvalidAmount, "amount_empty"),
    ("-5", errors.InvalidAmount, "amount_negative"),
    ("0", errors.InvalidAmount, "amount_zero"),
    ("10.005", errors.InvalidAmount, "amount_precision"),
    ("1e3", errors.InvalidAmount, "amount_format"),
    ("NaN", errors.InvalidAmount, "amount_format"),
    (10**15, errors.InvalidAmount, "amount_too_large"),
    (1.5, errors.InvalidAmount, "amount_type"),
]


@pytest.mark.parametrize(("amount", "error", "reason"), BAD_AMOUNTS)
@pytest.mark.parametrize("operation", ["withdrawal", "deposit", "transfer", "bill_cash", "bill_account"])
def test_bad_amounts_are_refused_and_record_nothing(open_drawer, agent, auth, operation, amount, error, reason):
    st = open_drawer
    before = entries()
    txn = receipts.new_txn_id()
    calls = {
        "withdrawal": lambda: operations.withdraw_cash(st, agent, auth, amount, txn),
        "deposit": lambda: operations.deposit_cash(st, agent, auth, amount, txn),
        "transfer": lambda: operations.transfer(st, agent, auth, "6222000000000000001", "王小明", amount, txn,
                                                fraud_warning_confirmed=True),
        "bill_cash": lambda: operations.pay_bill(st, agent, None, "ELEC-SGCC", "1234567890", amount, txn),
        "bill_account": lambda: operations.pay_bill(st, agent, auth, "ELEC-SGCC", "1234567890", amount, txn,
                                                    funding="account"),
    }
    with pytest.raises(error) as refused:
        calls[operation]()
    assert refused.value.reason == reason
    assert entries() == before


def test_full_width_amount_is_normalised(open_drawer, agent, auth):
    receipt = operations.withdraw_cash(open_drawer, agent, auth, "１００", receipts.new_txn_id())
    assert receipt.amount_fen == 10_000


@pytest.mark.parametrize(
    ("amount", "error", "message"),
    [
        ("5", errors.WithdrawalAmountRule, "Withdrawals are at least 10.00 yuan, in multiples of 10.00 yuan."),
        ("155", errors.WithdrawalAmountRule, "Withdrawals are at least 10.00 yuan, in multiples of 10.00 yuan."),
        ("100.50", errors.WithdrawalAmountRule, "Withdrawals are at least 10.00 yuan, in multiples of 10.00 yuan."),
        ("1200", errors.OverTransactionLimit, "The most for one withdrawal is 1,000.00 yuan."),
    ],
)
def test_withdrawal_amount_rules(open_drawer, agent, auth, amount, error, message):
    with pytest.raises(error) as refused:
        operations.withdraw_cash(open_drawer, agent, auth, amount, receipts.new_txn_id())
    assert refused.value.message == message


# -- customers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "kind", "error"),
    [
        ("", "card", errors.InvalidCardNumber),
        ("6217000000000001", "card", errors.InvalidCardNumber),  # Luhn check digit wrong
        ("62170000000", "card", errors.InvalidCardNumber),  # too short for a card
        ("6217 0000 0000 000x", "card", errors.InvalidCardNumber),
        ("6217000000000999", "card", errors.InvalidCardNumber),
        ("4111111111111111", "card", errors.CustomerNotFound),  # valid Luhn, not a customer here
        ("1234567", "passbook", errors.InvalidPassbookNumber),
        ("88000000abc1", "passbook", errors.InvalidPassbookNumber),
        ("990000000000", "passbook", errors.CustomerNotFound),
    ],
)
def test_bad_customer_numbers(station, number, kind, error):
    with pytest.raises(error):
        agents.identify_customer(station, number, kind)


def test_card_and_passbook_find_the_same_kind_of_customer(station):
    first = customer()
    assert agents.identify_customer(station, first.card_number).id == first.id
    spaced = " ".join(first.card_number[i:i + 4] for i in range(0, len(first.card_number), 4))
    assert agents.identify_customer(station, spaced).id == first.id
    assert agents.identify_customer(station, first.passbook_number, "passbook").id == first.id


def test_three_wrong_pins_lock_the_customer_and_journal_each_try(open_drawer, agent):
    st = open_drawer
    li = customer(1)
    before = entries()
    for remaining in (2, 1):
        with pytest.raises(errors.WrongCustomerPin) as refused:
            agents.authenticate_customer(st, agent, li, "000000")
        assert refused.value.params == {"remaining": remaining}
    with pytest.raises(errors.CustomerLocked) as locked:
        agents.authenticate_customer(st, agent, li, "000000")
    assert "visit the bank branch" in locked.value.message
    assert entries() == before + 3
    assert [e.type for e in JournalEntry.select().where(JournalEntry.seq > before)] == ["customer_pin_failed"] * 3
    # Even the right PIN does not help now.
    with pytest.raises(errors.CustomerLocked):
        agents.authenticate_customer(st, agent, li, PIN)
    assert Operation.select().count() == 0


def test_a_right_pin_does_not_outrun_a_lock_set_while_it_was_checked(open_drawer, agent, monkeypatch):
    # Parallel guesses: another thread's third wrong PIN locks the customer while this one's slow hash runs.
    st = open_drawer
    li = customer(1)
    real_check_pin = check_pin

    def check_pin_racing_a_lockout(pin, verifier):
        Customer.update(status="locked", pin_failures=3).where(Customer.id == li.id).execute()
        return real_check_pin(pin, verifier)

    monkeypatch.setattr(agents, "check_pin", check_pin_racing_a_lockout)
    with pytest.raises(errors.CustomerLocked):
        agents.authenticate_customer(st, agent, li, PIN)
    assert Customer.get_by_id(li.id).pin_failures == 3


def test_a_locked_customer_cannot_use_an_earlier_pin_check(open_drawer, agent):
    st = open_drawer
    auth = agents.authenticate_customer(st, agent, customer(), PIN)
    Customer.update(status="closed").where(Customer.id == auth.customer_id).execute()
    with pytest.raises(errors.CustomerNotActive):
        operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())


def test_a_pin_check_expires(open_drawer, agent, clock, auth):
    clock.advance(minutes=6)
    with pytest.raises(errors.CustomerPinRequired):
        operations.withdraw_cash(open_drawer, agent, auth, "100", receipts.new_txn_id())


def test_pin_check_belongs_to_its_agent(open_drawer, agent, supervisor, auth):
    with pytest.raises(errors.CustomerPinRequired):
        operations.withdraw_cash(open_drawer, supervisor, auth, "100", receipts.new_txn_id())


# -- agents -----------------------------------------------------------------------------------------------
def test_five_wrong_agent_pins_lock_the_agent(station):
    for remaining in (4, 3, 2, 1):
        with pytest.raises(errors.WrongAgentPin) as refused:
            agents.login_agent(station, "A01", "0000")
        assert refused.value.params == {"remaining": remaining}
    with pytest.raises(errors.AgentLocked):
        agents.login_agent(station, "A01", "0000")
    with pytest.raises(errors.AgentLocked):
        agents.login_agent(station, "A01", "1357")


def test_a_right_agent_pin_does_not_outrun_a_lock_set_while_it_was_checked(station, monkeypatch):
    real_check_pin = check_pin

    def check_pin_racing_a_lockout(pin, verifier):
        Agent.update(failed_pins=5, locked=True).where(Agent.agent_id == "A01").execute()
        return real_check_pin(pin, verifier)

    monkeypatch.setattr(agents, "check_pin", check_pin_racing_a_lockout)
    with pytest.raises(errors.AgentLocked):
        agents.login_agent(station, "A01", "1357")
    assert Agent.get_by_id("A01").failed_pins == 5


@pytest.mark.parametrize("pin", ["2580\n", "١٢٣٤", "12a4", "123", "1234567"])
def test_an_agent_pin_is_four_to_six_ascii_digits(station, pin):
    with pytest.raises(errors.AgentPinRule, match="A PIN is 4 to 6 digits"):
        agents.add_agent(station, "A03", "小刘 Liu", "agent", pin)
    assert Agent.get_or_none(Agent.agent_id == "A03") is None


def test_a_supervisor_unlocks_a_locked_agent(station, supervisor):
    for _ in range(5):
        with pytest.raises((errors.WrongAgentPin, errors.AgentLocked)):
            agents.login_agent(station, "A01", "0000")
    agents.add_agent(station, "A02", "小刘 Liu", "agent", "8642")
    colleague = agents.login_agent(station, "A02", "8642")
    with pytest.raises(errors.SupervisorRequired):
        agents.unlock_agent(station, colleague, "A01")
    receipt = agents.unlock_agent(station, supervisor, "A01")
    assert receipt.type == "agent_unlocked"
    assert agents.login_agent(station, "A01", "1357").agent_id == "A01"


def test_unknown_agent(station):
    with pytest.raises(errors.AgentUnknown):
        agents.login_agent(station, "NOBODY", "1357")


def test_expired_agent_session_is_refused_first(open_drawer, agent, auth, clock):
    clock.advance(hours=13)
    # Even with an invalid amount, the session is checked first.
    with pytest.raises(errors.AgentSessionInvalid):
        operations.withdraw_cash(open_drawer, agent, auth, "-5", receipts.new_txn_id())
    # And with a malformed transaction number.
    with pytest.raises(errors.AgentSessionInvalid):
        operations.withdraw_cash(open_drawer, agent, auth, "100", "not-a-uuid")


def test_operations_need_an_open_day(station, agent):
    auth = agents.authenticate_customer(station, agent, customer(), PIN)
    with pytest.raises(errors.DayNotOpen):
        operations.withdraw_cash(station, agent, auth, "100", receipts.new_txn_id())


# -- limits in order --------------------------------------------------------------------------------------
def test_daily_limit(open_drawer, agent, auth):
    st = open_drawer
    operations.withdraw_cash(st, agent, auth, "600", receipts.new_txn_id(), identity=identity_present(st))
    with pytest.raises(errors.OverDailyLimit) as refused:
        operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    assert refused.value.message == "Daily limit reached: at most 1,000.00 yuan a day; 400.00 yuan left today."
    operations.withdraw_cash(st, agent, auth, "400", receipts.new_txn_id())


def test_daily_limit_resets_the_next_day(open_drawer, agent, auth, clock):
    st = open_drawer
    operations.withdraw_cash(st, agent, auth, "1000", receipts.new_txn_id(), identity=identity_present(st))
    clock.advance(days=1)
    session = agents.login_agent(st, "A01", "1357")
    fresh = agents.authenticate_customer(st, session, customer(), PIN)
    operations.withdraw_cash(st, session, fresh, "1000", receipts.new_txn_id(), identity=identity_present(st))


def test_offline_allowance(open_drawer, agent):
    st = open_drawer
    Customer.update(allowance_fen=50_000).where(Customer.id == customer().id).execute()
    auth = agents.authenticate_customer(st, agent, customer(), PIN)
    operations.withdraw_cash(st, agent, auth, "300", receipts.new_txn_id())
    with pytest.raises(errors.OverOfflineAllowance) as refused:
        operations.withdraw_cash(st, agent, auth, "300", receipts.new_txn_id())
    assert refused.value.params == {"left": "200.00"}
    # A deposit is a credit: it never needs the allowance.
    operations.deposit_cash(st, agent, auth, "5000", receipts.new_txn_id())


def test_station_exposure_limit(open_drawer, agent):
    st = open_drawer
    st.set_setting("policy", {"max_unsynced_count": 2})
    for index in range(2):
        auth = agents.authenticate_customer(st, agent, customer(index), PIN)
        operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())
    auth = agents.authenticate_customer(st, agent, customer(2), PIN)
    with pytest.raises(errors.StationExposureLimit):
        operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())
    # Once the bank acknowledged them, the station may go on.
    st.set_setting("acked_seq", journal_head(st)[0])
    operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())


def test_offline_too_long_refuses_debits_but_not_credits(open_drawer, agent, clock):
    st = open_drawer
    clock.advance(hours=73)
    session = agents.login_agent(st, "A01", "1357")
    auth = agents.authenticate_customer(st, session, customer(), PIN)
    with pytest.raises(errors.OfflineTooLong) as refused:
        operations.withdraw_cash(st, session, auth, "100", receipts.new_txn_id())
    assert "72 hours" in refused.value.message
    with pytest.raises(errors.OfflineTooLong):
        operations.pay_bill(st, session, auth, "ELEC-SGCC", "1234567890", "50", receipts.new_txn_id(),
                            funding="account")
    operations.deposit_cash(st, session, auth, "100", receipts.new_txn_id())
    operations.pay_bill(st, session, None, "ELEC-SGCC", "1234567890", "50", receipts.new_txn_id())


def test_drawer_never_goes_negative(station, agent):
    business_day.open_day(station, agent, {"10000": 3})
    auth = agents.authenticate_customer(station, agent, customer(), PIN)
    with pytest.raises(errors.InsufficientCash) as refused:
        operations.withdraw_cash(station, agent, auth, "400", receipts.new_txn_id())
    assert refused.value.message == "Not enough cash in the drawer: 300.00 yuan left."
    operations.withdraw_cash(station, agent, auth, "300", receipts.new_txn_id())
    assert business_day.drawer_cash(station) == 0


def test_limits_are_checked_in_the_documented_order(station, agent):
    """Over the per-transaction limit AND over the drawer: the limit is reported, not the cash."""
    business_day.open_day(station, agent, {"10000": 1})
    auth = agents.authenticate_customer(station, agent, customer(), PIN)
    with pytest.raises(errors.OverTransactionLimit):
        operations.withdraw_cash(station, agent, auth, "1100", receipts.new_txn_id())
    with pytest.raises(errors.InsufficientCash):
        operations.withdraw_cash(station, agent, auth, "1000", receipts.new_txn_id())


# -- idempotency ------------------------------------------------------------------------------------------
def test_same_txn_same_request_returns_the_original_receipt(open_drawer, agent, auth):
    st = open_drawer
    txn = receipts.new_txn_id()
    first = operations.withdraw_cash(st, agent, auth, "500", txn)
    before = entries()
    again = operations.withdraw_cash(st, agent, auth, "500.00", txn)
    assert again.token == first.token and again.seq == first.seq
    assert entries() == before
    assert business_day.drawer_cash(st) == 30_000_00 - 500_00


@pytest.mark.parametrize("other", ["600", "-5"])
def test_same_txn_different_request_is_refused(open_drawer, agent, auth, other):
    st = open_drawer
    txn = receipts.new_txn_id()
    operations.withdraw_cash(st, agent, auth, "500", txn)
    with pytest.raises(errors.TxnConflict):
        operations.withdraw_cash(st, agent, auth, other, txn)
    with pytest.raises(errors.TxnConflict):
        operations.deposit_cash(st, agent, auth, "500", txn)


@pytest.mark.parametrize("txn", ["", "not-a-uuid", "12345678-1234-1234-1234-1234567890ZZ"])
def test_bad_txn_ids(open_drawer, agent, auth, txn):
    with pytest.raises(errors.InvalidTxnId):
        operations.withdraw_cash(open_drawer, agent, auth, "100", txn)


# -- transfers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("account", "name", "error"),
    [
        ("", "王小明", errors.InvalidPayeeAccount),
        ("12345", "王小明", errors.InvalidPayeeAccount),
        ("6222abc000000001", "王小明", errors.InvalidPayeeAccount),
        ("6222000000000000001", "", errors.InvalidPayeeName),
        ("6222000000000000001", "王" * 31, errors.InvalidPayeeName),
        ("6222000000000000001", "王\x1b@小明", errors.InvalidPayeeName),  # ESC @ would reset the printer
        ("6222000000000000001", "\u202e明小王", errors.InvalidPayeeName),  # a bidi override prints reversed
    ],
)
def test_bad_payees(open_drawer, agent, auth, account, name, error):
    with pytest.raises(error):
        operations.transfer(open_drawer, agent, auth, account, name, "100", receipts.new_txn_id(),
                            fraud_warning_confirmed=True)


def test_transfer_to_own_account_is_refused(open_drawer, agent, auth):
    own = Customer.get_by_id(auth.customer_id).card_number
    with pytest.raises(errors.OwnAccountTransfer):
        operations.transfer(open_drawer, agent, auth, own, "自己", "100", receipts.new_txn_id(),
                            fraud_warning_confirmed=True)


def test_blocked_payee_is_refused_even_after_the_warning(open_drawer, agent, auth):
    BlockedPayee.create(account="6222000000000009999", reason="reported scam")
    with pytest.raises(errors.PayeeBlocked):
        operations.transfer(open_drawer, agent, auth, "6222000000000009999", "安全账户", "8000",
                            receipts.new_txn_id(), fraud_warning_confirmed=True)


def test_new_payee_needs_the_fraud_warning(open_drawer, agent, auth):
    st = open_drawer
    with pytest.raises(errors.FraudWarningRequired):
        operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "800", receipts.new_txn_id())
    receipt = operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "800", receipts.new_txn_id(),
                                  fraud_warning_confirmed=True)
    assert receipt.status == "recorded"
    assert receipt.fee_fen == 200
    assert receipt.details == {"payee_account": "6222000000000000001", "payee_name": "王小明", "warned": True}


def test_known_payee_small_amount_needs_no_warning_but_large_does(open_drawer, agent):
    st = open_drawer
    mother = customer(0)  # index 0: the demo gives every third customer a known payee
    payee = Payee.get(Payee.customer == mother.id)
    auth = agents.authenticate_customer(st, agent, mother, PIN)
    operations.transfer(st, agent, auth, payee.account, payee.name, "500", receipts.new_txn_id())
    assert operations.needs_fraud_warning(st, mother, payee.account, 500_000)


def test_cancel_a_pending_transfer_restores_the_allowance(open_drawer, agent, auth):
    st = open_drawer
    mother = Customer.get_by_id(auth.customer_id)
    before = limits.offline_available(st, mother)
    sent = operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "800", receipts.new_txn_id(),
                               fraud_warning_confirmed=True)
    assert limits.offline_available(st, mother) == before - 800_00 - 200
    cancel = operations.cancel_transfer(st, agent, auth, sent.txn, receipts.new_txn_id())
    assert cancel.type == "transfer_cancel" and cancel.details["ref_seq"] == sent.seq
    assert Operation.get_by_id(sent.txn).status == "cancelled"
    assert limits.offline_available(st, mother) == before
    with pytest.raises(errors.NotCancellable):
        operations.cancel_transfer(st, agent, auth, sent.txn, receipts.new_txn_id())


def test_a_settled_transfer_cannot_be_cancelled(open_drawer, agent, auth):
    st = open_drawer
    sent = operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "800", receipts.new_txn_id(),
                               fraud_warning_confirmed=True)
    Operation.update(status="settled").where(Operation.txn == sent.txn).execute()
    with pytest.raises(errors.NotCancellable):
        operations.cancel_transfer(st, agent, auth, sent.txn, receipts.new_txn_id())


def test_only_the_sender_can_cancel(open_drawer, agent, auth):
    st = open_drawer
    sent = operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "800", receipts.new_txn_id(),
                               fraud_warning_confirmed=True)
    stranger = agents.authenticate_customer(st, agent, customer(3), PIN)
    with pytest.raises(errors.NoSuchReceipt):
        operations.cancel_transfer(st, agent, stranger, sent.txn, receipts.new_txn_id())


# -- bills ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("biller", "reference", "amount", "error"),
    [
        ("NO-SUCH", "1234567890", "50", errors.UnknownBiller),
        ("ELEC-SGCC", "12345", "50", errors.InvalidBillReference),
        ("ELEC-SGCC", "12345678901", "50", errors.InvalidBillReference),
        ("WATER-COUNTY", "1234567a", "50", errors.InvalidBillReference),
        ("GAS-COUNTY", "123", "50", errors.InvalidBillReference),
        ("MOBILE-CMCC", "1380013800", "50", errors.InvalidBillReference),
        ("MOBILE-CMCC", "13300138000", "50", errors.WrongCarrier),  # 133 is China Telecom
        ("MOBILE-CMCC", "13800138000", "45", errors.TopUpDenominationRule),
        ("ELEC-SGCC", "1234567890", "6000", errors.BillAmountRule),
        ("ELEC-SGCC", "1234567890", "", errors.InvalidAmount),
    ],
)
def test_bad_bills(open_drawer, agent, biller, reference, amount, error):
    before = entries()
    with pytest.raises(error):
        operations.pay_bill(open_drawer, agent, None, biller, reference, amount, receipts.new_txn_id())
    assert entries() == before


@pytest.mark.parametrize("reference", ["12\x1b@34", "12\x1dV\x0034", "\u202e4321", "1\x00", "9" * 65])
def test_a_bill_reference_is_printable_and_short_whatever_the_billers_pattern(open_drawer, agent, reference):
    """A loose pattern from the bank still lets no control character or overlong reference into a signed entry."""
    Biller.update(ref_pattern=r".+").where(Biller.code == "ELEC-SGCC").execute()
    before = entries()
    with pytest.raises(errors.InvalidBillReference):
        operations.pay_bill(open_drawer, agent, None, "ELEC-SGCC", reference, "50", receipts.new_txn_id())
    assert entries() == before


def test_bill_paid_in_cash_and_from_account(open_drawer, agent, auth):
    st = open_drawer
    cash = operations.pay_bill(st, agent, None, "MOBILE-CMCC", "138 0013 8000", "50", receipts.new_txn_id())
    assert cash.details == {"biller": "MOBILE-CMCC", "ref": "13800138000", "funding": "cash"}
    assert cash.account_masked is None
    assert business_day.drawer_cash(st) == 30_000_00 + 50_00
    account = operations.pay_bill(st, agent, auth, "WATER-COUNTY", "12345678", "35.60", receipts.new_txn_id(),
                                  funding="account")
    assert account.account_masked.endswith(Customer.get_by_id(auth.customer_id).card_number[-4:])
    assert business_day.drawer_cash(st) == 30_000_00 + 50_00


def test_paying_from_an_account_needs_the_customer_pin(open_drawer, agent):
    with pytest.raises(errors.CustomerPinRequired):
        operations.pay_bill(open_drawer, agent, None, "ELEC-SGCC", "1234567890", "50", receipts.new_txn_id(),
                            funding="account")


# -- reversal ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["keyed\x1b[2J wrong", "wrong\namount", "原" * 201])
def test_a_reversal_reason_is_plain_text_or_refused(open_drawer, agent, supervisor, auth, reason):
    paid = operations.withdraw_cash(open_drawer, agent, auth, "500", receipts.new_txn_id())
    head = journal_head(open_drawer)
    with pytest.raises(errors.InvalidReversalReason):
        operations.reverse(open_drawer, supervisor, paid.txn, receipts.new_txn_id(), reason)
    assert journal_head(open_drawer) == head
    assert Operation.get_by_id(paid.txn).status == "recorded"


def test_the_station_never_signs_an_entry_its_type_does_not_allow(station):
    """The writers refuse bad input first; the journal refuses what slips past them, before signing."""
    head = journal_head(station)
    with pytest.raises(UnsignableEntry, match="amount is '100', not an integer"), station.write():
        append_entry(station, "deposit", station.now(), {"agent": "A01", "account": "DM1", "amount": "100"},
                     txn=receipts.new_txn_id())
    with pytest.raises(UnsignableEntry, match="not a known entry type"), station.write():
        append_entry(station, "insurance_order", station.now(), {"agent": "A01"})
    assert journal_head(station) == head


def test_supervisor_reverses_a_withdrawal(open_drawer, agent, supervisor, auth):
    st = open_drawer
    paid = operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    with pytest.raises(errors.SupervisorRequired):
        operations.reverse(st, agent, paid.txn, receipts.new_txn_id(), "wrong amount")
    reversal = operations.reverse(st, supervisor, paid.txn, receipts.new_txn_id(), "wrong amount")
    assert reversal.details["ref_seq"] == paid.seq
    assert Operation.get_by_id(paid.txn).status == "reversed"
    assert business_day.drawer_cash(st) == 30_000_00
    with pytest.raises(errors.AlreadyReversed):
        operations.reverse(st, supervisor, paid.txn, receipts.new_txn_id(), "again")
    # The reversed withdrawal no longer counts against the daily limit.
    operations.withdraw_cash(st, agent, auth, "1000", receipts.new_txn_id(), identity=identity_present(st))


def test_reversing_a_deposit_needs_the_cash(station, agent, supervisor):
    business_day.open_day(station, agent, {"10000": 1})
    auth = agents.authenticate_customer(station, agent, customer(), PIN)
    deposit = operations.deposit_cash(station, agent, auth, "500", receipts.new_txn_id())
    operations.withdraw_cash(station, agent, auth, "600", receipts.new_txn_id(), identity=identity_present(station))
    with pytest.raises(errors.InsufficientCash):
        operations.reverse(station, supervisor, deposit.txn, receipts.new_txn_id(), "")


def test_reversal_only_the_same_day(open_drawer, agent, supervisor, auth, clock):
    st = open_drawer
    paid = operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    business_day.close_day(st, agent, {"10000": 295})
    clock.advance(hours=10)
    session = agents.login_agent(st, "S01", "2468")
    business_day.open_day(st, session, {"10000": 295})
    with pytest.raises(errors.ReversalTooLate):
        operations.reverse(st, session, paid.txn, receipts.new_txn_id(), "")


@pytest.mark.parametrize("kind", ["transfer", "balance_enquiry"])
def test_not_reversible(open_drawer, agent, supervisor, auth, kind):
    st = open_drawer
    if kind == "transfer":
        receipt = operations.transfer(st, agent, auth, "6222000000000000001", "王小明", "100",
                                      receipts.new_txn_id(), fraud_warning_confirmed=True)
    else:
        receipt = operations.balance_enquiry(st, agent, auth, receipts.new_txn_id()).receipt
    with pytest.raises(errors.NotReversible):
        operations.reverse(st, supervisor, receipt.txn, receipts.new_txn_id(), "")


def test_a_plain_agent_is_refused_a_reversal_before_anything_else(station, agent):
    """No open day, unknown receipt, replayed txn: the agent hears only that a supervisor is needed."""
    with pytest.raises(errors.SupervisorRequired):
        operations.reverse(station, agent, receipts.new_txn_id(), receipts.new_txn_id(), "")


def test_reverse_unknown_receipt(open_drawer, supervisor):
    with pytest.raises(errors.NoSuchReceipt):
        operations.reverse(open_drawer, supervisor, receipts.new_txn_id(), receipts.new_txn_id(), "")


# -- day and drawer ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "counts",
    [{"3000": 1}, {"10000": -1}, {"10000": "x"}, {"abc": 1}, {"10000": 1.5}, {"10000": True}, {"10000": "²"}],
)
def test_bad_cash_counts(station, agent, counts):
    with pytest.raises(errors.InvalidCashCount):
        business_day.open_day(station, agent, counts)
    assert BusinessDay.select().count() == 0


def test_a_count_beyond_any_drawer_is_refused(station, agent):
    with pytest.raises(errors.CashCountTooLarge, match="10,000,000.00"):
        business_day.open_day(station, agent, {"10000": 100_000, "100": 1})
    assert BusinessDay.select().count() == 0


def test_open_twice_is_refused(open_drawer, agent):
    with pytest.raises(errors.DayAlreadyOpen):
        business_day.open_day(open_drawer, agent, {"10000": 1})


def test_close_records_the_variance(open_drawer, agent, auth):
    st = open_drawer
    operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    closed = business_day.close_day(st, agent, {"10000": 294, "5000": 1, "2000": 2, "500": 1})
    assert (closed.expected_fen, closed.counted_fen, closed.variance_fen) == (29_500_00, 29_495_00, -5_00)
    assert business_day.current_day(st) is None
    with pytest.raises(errors.DayNotOpen):
        business_day.close_day(st, agent, {})


def test_balance_enquiry_is_as_of_the_snapshot(open_drawer, agent, auth):
    balance = operations.balance_enquiry(open_drawer, agent, auth, receipts.new_txn_id())
    mother = Customer.get_by_id(auth.customer_id)
    assert balance.balance_fen == mother.balance_fen
    assert balance.balance_as_of == mother.balance_as_of
    assert balance.offline_available_fen == mother.allowance_fen
    assert balance.receipt.type == "balance_enquiry"
    # The snapshot's time rides in the token in the journal's ts form.
    assert unverified_payload(balance.receipt.token)["as_of"] == utc_text(mother.balance_as_of)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", utc_text(mother.balance_as_of))


def test_a_database_held_by_another_writer_is_a_busy_refusal_and_records_nothing(open_drawer, agent, auth):
    import sqlite3

    st = open_drawer
    st.db.execute_sql("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(st.data_dir / "station.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. a long `station sync` in another process
    before = entries()
    try:
        with pytest.raises(errors.StationBusy):
            operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert entries() == before
    operations.withdraw_cash(st, agent, auth, "100", receipts.new_txn_id())


@pytest.mark.parametrize(
    ("op_type", "amount", "error"),
    [
        ("withdrawal", "1200", errors.OverTransactionLimit),
        ("withdrawal", "15", errors.WithdrawalAmountRule),
        ("deposit", "60000", errors.OverTransactionLimit),
        ("transfer", "2000", errors.OverOfflineAllowance),  # allowance 2,000 yuan, and the fee is 2
        ("transfer", "x", errors.InvalidAmount),
    ],
)
def test_check_amount_refuses_before_the_pin_and_records_nothing(open_drawer, agent, op_type, amount, error):
    st = open_drawer
    Customer.update(allowance_fen=2_000_00).where(Customer.id == customer().id).execute()
    before = entries()
    with pytest.raises(error):
        operations.check_amount(st, agent, customer(), op_type, amount)
    assert entries() == before


def test_check_amount_passes_what_the_operation_would_take(open_drawer, agent):
    assert operations.check_amount(open_drawer, agent, customer(), "transfer", "500") == 500_00
    assert operations.check_amount(open_drawer, agent, customer(), "deposit", "12.50") == 12_50


def test_may_reverse_says_what_reverse_does(open_drawer, agent, supervisor, auth, clock):
    """The receipt screen offers Reverse only where the core's ``reverse`` would pass: a rule of the core."""
    st = open_drawer
    paid = operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    balance = operations.balance_enquiry(st, agent, auth, receipts.new_txn_id()).receipt
    assert operations.may_reverse(st, Operation.get_by_id(paid.txn))
    assert not operations.may_reverse(st, Operation.get_by_id(balance.txn))
    business_day.close_day(st, agent, {"10000": 295})
    clock.advance(hours=10)
    session = agents.login_agent(st, "S01", "2468")
    business_day.open_day(st, session, {"10000": 295})
    yesterday = Operation.get_by_id(paid.txn)
    assert not operations.may_reverse(st, yesterday)
    with pytest.raises(errors.ReversalTooLate):
        operations.reverse(st, session, paid.txn, receipts.new_txn_id(), "")


def test_the_fee_quoted_is_the_fee_charged(open_drawer, agent, auth):
    st = open_drawer
    st.set_setting("policy", {"fees": {"withdrawal": 300}})
    assert operations.quote_fee(st, "withdrawal") == 300
    paid = operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    assert paid.fee_fen == operations.quote_fee(st, "withdrawal")


def test_the_close_preview_is_what_the_close_records(open_drawer, agent, supervisor, auth):
    st = open_drawer
    operations.withdraw_cash(st, agent, auth, "500", receipts.new_txn_id())
    counts = {"10000": 294, "5000": 1}
    preview = business_day.close_preview(st, counts)
    assert (preview.expected_fen, preview.counted_fen, preview.variance_fen) == (29_500_00, 29_450_00, -50_00)
    assert preview.needs_approval  # beyond the default tolerance of 10 yuan
    closed = business_day.close_day(st, agent, counts, reason="Miscount", supervisor=supervisor)
    assert (closed.expected_fen, closed.counted_fen, closed.variance_fen) == (
        preview.expected_fen, preview.counted_fen, preview.variance_fen)
    with pytest.raises(errors.DayNotOpen):
        business_day.close_preview(st, counts)
