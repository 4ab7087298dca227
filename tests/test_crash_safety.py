"""Crash safety: kill -9 a station process in the middle of a burst of operations, again and again.

Afterwards the journal verifies and every receipt the process had handed out is in it, byte for byte.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from station.context import Station
from station.db import JournalEntry, Operation
from station.demo import load_demo_customers
from station.journal import audit_journal
from station.provision import init_station

BURST = textwrap.dedent(
    """
    import sys
    from station import agents, business_day, operations, receipts
    from station.context import Station
    from station.db import Customer

    st = Station(sys.argv[1])
    agent = agents.login_agent(st, "A01", "1357")
    if business_day.current_day(st) is None:
        business_day.open_day(st, agent, {"10000": 100})
    with st.bound():
        people = list(Customer.select().order_by(Customer.id))
    auths = [agents.authenticate_customer(st, agent, c, "123456") for c in people]
    n = 0
    while True:
        n += 1
        auth = auths[n % len(auths)]
        if n % 3:
            receipt = operations.deposit_cash(st, agent, auth, "10", receipts.new_txn_id())
        else:
            receipt = operations.pay_bill(st, agent, None, "ELEC-SGCC", "1234567890", "5", receipts.new_txn_id())
        # Handing the receipt to the customer: once this line is out, it must survive any crash.
        sys.stdout.write(f"{receipt.seq} {receipt.token}\\n")
        sys.stdout.flush()
    """
)


def test_kill_minus_nine_never_loses_a_receipt(tmp_path):
    folder = tmp_path / "crashy"
    st = init_station(folder, "ST-CRASH")
    load_demo_customers(st, count=10)
    st.close()
    script = tmp_path / "burst.py"
    script.write_text(BURST)
    rng = random.Random(9)
    handed_out: dict[int, str] = {}
    for _round in range(6):
        with subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True) as child:
            # Wait until the burst is under way, then pull the plug at a random moment.
            first = child.stdout.readline()
            assert first, "the burst process died before its first receipt"
            seq, token = first.split()
            handed_out[int(seq)] = token
            time.sleep(rng.uniform(0.05, 0.4))
            os.kill(child.pid, signal.SIGKILL)
            for line in child.stdout:
                if line.endswith("\n"):
                    seq, token = line.split()
                    handed_out[int(seq)] = token
        assert child.returncode == -signal.SIGKILL

    st = Station(folder)
    audit = audit_journal(st)
    assert audit.problems == []
    with st.bound():
        stored = dict(JournalEntry.select(JournalEntry.seq, JournalEntry.token).tuples())
        # Every stored customer operation has its business row, and every row its entry.
        operations = {op.seq for op in Operation.select()}
        customer_entries = {seq for seq, entry_type in JournalEntry.select(JournalEntry.seq, JournalEntry.type)
                            .tuples() if entry_type in ("deposit", "bill_payment")}
    assert len(handed_out) > 30
    for seq, token in handed_out.items():
        assert stored.get(seq) == token
    assert operations == customer_entries
    assert audit.entries == max(stored)
    st.close()
