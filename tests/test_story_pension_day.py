"""Pension day at a village shop (../shared/STORIES.md), told as a test, with the balances asserted at the end.

07:40 Agent Tian opens the day with 30,000 yuan counted by denomination. The link is down all morning.
Elderly customers withdraw their pensions until the drawer runs low; Mrs. Li locks herself out; Mr. Wang asks
for more than the daily cap; a man nearly sends 8,000 yuan to a "police" scammer; a daughter sends 500 to her
son; bills and a top-up are paid in cash; a double tap records once. 17:30: the count is 10 yuan short.
"""

from __future__ import annotations

from collections import Counter

import pytest
from ui_helpers import identity_present

from station import agents, business_day, errors, limits, operations, receipts
from station.db import Customer, JournalEntry, Operation, Payee
from station.demo import DEMO_CUSTOMER_PIN
from station.journal import audit_journal

PIN = DEMO_CUSTOMER_PIN
PENSIONS_YUAN = [1000, 800, 600, 500, 1000, 700, 900, 1000, 600, 800] * 4  # forty pensioners: 31,600 yuan


def test_pension_day(make_station, clock):
    st = make_station("ST-0042", customers=60)
    with st.bound():
        people = list(Customer.select().order_by(Customer.id))
        # 07:40 Tian logs in and opens the day: 30,000 yuan counted by denomination.
        tian = agents.login_agent(st, "A01", "1357")
        opened = business_day.open_day(
            st, tian, {"10000": 250, "5000": 60, "2000": 50, "1000": 50, "500": 40, "100": 300})
        assert opened.amount_fen == 30_000_00
        start_seq = opened.seq

        # Mrs. Li types her PIN wrong three times: locked, told to visit the branch; only the tries are recorded.
        mrs_li = people[40]
        for _ in range(2):
            with pytest.raises(errors.WrongCustomerPin):
                agents.authenticate_customer(st, tian, mrs_li, "111111")
        with pytest.raises(errors.CustomerLocked, match="branch"):
            agents.authenticate_customer(st, tian, mrs_li, "111111")

        # Mr. Wang asks for 1,200: refused (the cap is 1,000), he takes 1,000.
        mr_wang = people[41]
        clock.advance(minutes=30)
        wang = agents.authenticate_customer(st, tian, mr_wang, PIN)
        with pytest.raises(errors.OverTransactionLimit, match="1,000.00"):
            operations.withdraw_cash(st, tian, wang, "1200", receipts.new_txn_id())
        operations.withdraw_cash(st, tian, wang, "1000", receipts.new_txn_id(), identity=identity_present(st))
        paid_out = 1000_00

        # Forty pensioners, card or passbook, until the drawer runs low: then refused before the PIN is typed.
        refused_for_cash = 0
        passbook_customers = 0
        for person, pension in zip(people[:40], PENSIONS_YUAN, strict=True):
            clock.advance(minutes=5)
            number, kind = (person.card_number, "card") if person.card_number else (person.passbook_number, "passbook")
            passbook_customers += kind == "passbook"
            found = agents.identify_customer(st, number, kind)
            try:
                operations.check_amount(st, tian, found, "withdrawal", str(pension))
            except errors.InsufficientCash:
                refused_for_cash += 1
                continue
            auth = agents.authenticate_customer(st, tian, found, PIN)
            txn = receipts.new_txn_id()
            # Above 500 yuan the agent records the ID card of the person present.
            shown = identity_present(st) if pension > 500 else None
            first = operations.withdraw_cash(st, tian, auth, str(pension), txn, identity=shown)
            # A double tap on "confirm" sends the same transaction again: recorded once.
            assert operations.withdraw_cash(st, tian, auth, str(pension), txn, identity=shown).seq == first.seq
            paid_out += pension * 100
        assert passbook_customers == 8
        assert refused_for_cash >= 1
        assert business_day.drawer_cash(st) == 30_000_00 - paid_out < 1000_00

        # The "police" call: 8,000 yuan to a new payee. The fraud warning stops them; he decides not to send.
        scared = people[42]
        auth = agents.authenticate_customer(st, tian, scared, PIN)
        assert operations.needs_fraud_warning(st, scared, "6222020000000000007", 8000_00)
        with pytest.raises(errors.FraudWarningRequired):
            operations.transfer(st, tian, auth, "6222020000000000007", "安全账户", "8000", receipts.new_txn_id())
        # The attempt is journaled for the bank's anti-fraud team (and, say, "安全账户" is a scam word).
        stopped = operations.stop_transfer(st, tian, scared, "6222020000000000007", "安全账户", "8000",
                                           receipts.new_txn_id())
        assert stopped.details["markers"] == ["安全账户"] and stopped.amount_fen == 8000_00

        # A daughter sends 500 to her son (a known payee): waiting for the bank.
        daughter = people[45]
        son = Payee.get(Payee.customer == daughter.id)
        auth = agents.authenticate_customer(st, tian, daughter, PIN)
        assert not operations.needs_fraud_warning(st, daughter, son.account, 500_00)
        sent = operations.transfer(st, tian, auth, son.account, son.name, "500", receipts.new_txn_id())
        assert sent.status == "recorded"

        # Three electricity bills and a mobile top-up, in cash.
        for ref, amount in (("3100000001", "86.40"), ("3100000002", "132.00"), ("3100000003", "58.70")):
            operations.pay_bill(st, tian, None, "ELEC-SGCC", ref, amount, receipts.new_txn_id())
        operations.pay_bill(st, tian, None, "MOBILE-CMCC", "13912345678", "50", receipts.new_txn_id())
        bills_in = 86_40 + 132_00 + 58_70 + 50_00

        # 17:30 day close: the count is 10 yuan short; the variance is recorded and signed.
        expected = 30_000_00 - paid_out + bills_in
        assert business_day.drawer_cash(st) == expected
        counted = expected - 10_00
        counts = {"10000": counted // 10000, "100": (counted % 10000) // 100, "10": (counted % 100) // 10}
        closed = business_day.close_day(st, tian, counts)
        assert (closed.expected_fen, closed.counted_fen, closed.variance_fen) == (expected, counted, -10_00)

        # The journal: everything signed and chained; nothing for Mrs. Li but her three failed tries.
        assert audit_journal(st).problems == []
        kinds = Counter(e.type for e in JournalEntry.select().where(JournalEntry.seq >= start_seq))
        withdrawals = 1 + 40 - refused_for_cash
        assert kinds == Counter(
            day_open=1, customer_pin_failed=3, withdrawal=withdrawals, transfer=1, transfer_stopped=1, bill_payment=4,
            day_close=1,
        )
        assert not Operation.select().where(Operation.customer == mrs_li.id).exists()
        assert Customer.get_by_id(mrs_li.id).status == "locked"

        # Allowances: Mr. Wang has 2,000 of his 3,000 left offline; the daughter 2,500 less the fee.
        assert limits.offline_available(st, Customer.get_by_id(mr_wang.id)) == 3000_00 - 1000_00
        assert limits.offline_available(st, Customer.get_by_id(daughter.id)) == 3000_00 - 500_00 - 2_00
        # Unsynced exposure counts every debit since the (never) last sync.
        assert limits.unsynced_exposure(st) == (paid_out + 500_00 + 2_00, withdrawals + 1)
