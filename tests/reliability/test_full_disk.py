"""Reliability trial: the disk fills up at a random point of a burst of operations, again and again.

Each trial records a random number of operations (deposits, cash bill payments, customer voice), then lets the
database grow by a random few pages (SQLite's ``max_page_count``: the disk is full from then on) and goes on until
the station refuses with "storage full". Afterwards: the journal verifies, operation rows match entries one to one,
the drawer adds up, every receipt handed out is in the journal byte for byte (no entry lost), the station refuses
new operations while full, and works again once the limit is lifted, without a restart.

Quick by default; ``RELIABILITY_FULL=1`` makes the full count. With ``RELIABILITY_REPORT_DIR`` set, the figures go to
``test_full_disk.json`` there: ``{"fault": "disk full", "trials": N, "survived": N, "lost_entries": 0}``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from storage_support import lift_database_limit, limit_database

from station import agents, business_day, errors, operations, receipts
from station.db import Customer, JournalEntry, Operation
from station.demo import DEMO_CUSTOMER_PIN
from station.device_state import DeviceState, device_state, refuse_new_operations
from station.feedback import CATEGORIES, record_feedback
from station.journal import audit_journal

pytestmark = pytest.mark.reliability

TRIALS = 100 if os.environ.get("RELIABILITY_FULL") == "1" else 4
FLOAT_FEN = 30_000_00
#: The journal entry types of customer operations the trial records (each has its operation row).
OPERATION_TYPES = ("deposit", "bill_payment")


def one_operation(st, agent, auths, rng) -> receipts.Receipt:
    """A random write that journals one entry: a deposit, a cash bill payment or a customer's voice."""
    kind = rng.random()
    if kind < 0.5:
        return operations.deposit_cash(st, agent, rng.choice(auths), str(rng.randrange(10, 30)),
                                       receipts.new_txn_id())
    if kind < 0.85:
        return operations.pay_bill(st, agent, None, "ELEC-SGCC", "1234567890", str(rng.randrange(5, 300)),
                                   receipts.new_txn_id())
    return record_feedback(st, agent, rng.choice(CATEGORIES), "服务好" * rng.randrange(1, 40))


def check_nothing_lost(st, handed_out: dict[int, str]) -> int:
    """The trial's checks; returns how many receipts handed out are missing or differ in the journal."""
    assert audit_journal(st).problems == []
    stored = dict(JournalEntry.select(JournalEntry.seq, JournalEntry.token).tuples())
    lost = sum(1 for seq, token in handed_out.items() if stored.get(seq) != token)
    rows = {op.seq for op in Operation.select()}
    entries = {seq for seq, kind in JournalEntry.select(JournalEntry.seq, JournalEntry.type).tuples()
               if kind in OPERATION_TYPES}
    assert rows == entries
    cash = sum(op.cash_fen for op in Operation.select())
    assert business_day.drawer_cash(st) == FLOAT_FEN + cash
    return lost


def report(figures: dict) -> None:
    folder = os.environ.get("RELIABILITY_REPORT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{Path(__file__).stem}.json").write_text(json.dumps([figures], indent=2), encoding="utf-8")


def test_a_disk_that_fills_up_at_random_points_loses_nothing(open_drawer, agent):
    st = open_drawer
    rng = random.Random(13)
    customers = list(Customer.select().where(Customer.status == "active").order_by(Customer.id))[:10]
    auths = [agents.authenticate_customer(st, agent, customer, DEMO_CUSTOMER_PIN) for customer in customers]
    handed_out: dict[int, str] = {}
    survived = lost_entries = 0
    for _trial in range(TRIALS):
        for _ in range(rng.randrange(0, 15)):
            receipt = one_operation(st, agent, auths, rng)
            handed_out[receipt.seq] = receipt.token
        limit_database(st, extra_pages=rng.randrange(0, 6))
        for _ in range(1000):
            try:
                receipt = one_operation(st, agent, auths, rng)
            except errors.StorageFull:
                break
            handed_out[receipt.seq] = receipt.token
        else:
            pytest.fail("the database never filled up")
        assert device_state(st) is DeviceState.STORAGE_FULL
        with pytest.raises(errors.StorageFull):
            refuse_new_operations(st)
        lost_entries += check_nothing_lost(st, handed_out)
        lift_database_limit(st)
        assert device_state(st) is DeviceState.READY
        receipt = one_operation(st, agent, auths, rng)
        handed_out[receipt.seq] = receipt.token
        trial_lost = check_nothing_lost(st, handed_out)
        lost_entries += trial_lost
        survived += trial_lost == 0
    report({"fault": "disk full", "trials": TRIALS, "survived": survived, "lost_entries": lost_entries})
    assert (survived, lost_entries) == (TRIALS, 0)
