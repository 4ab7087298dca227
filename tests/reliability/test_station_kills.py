"""Crash safety: kill -9 a station process at a random moment of a burst of operations, trial after trial.

After each kill: the station opens again (its database checked at start), the journal verifies, every operation
row matches its journal entry and every operation entry has its row, and every receipt the process had handed out
(written to its stdout, read here) is in the journal byte for byte. The next trial's process is the restart: it
logs in and records on the same data folder. A handful of trials by default, 200 with ``RELIABILITY_FULL=1``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from reliability import counts
from station.context import Station
from station.db import JournalEntry, Operation
from station.demo import load_demo_customers
from station.journal import audit_journal
from station.protocol.tokens import unverified_payload
from station.provision import init_station

TRIALS = counts(quick=5, full=200)
#: Trials on one data folder before a fresh one: the checks after each trial read the whole journal.
TRIALS_PER_STATION = 25
#: The operations the burst records: each has an operation row and a journal entry.
OPERATION_TYPES = ("deposit", "bill_payment")

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


def kill_during_burst(script: Path, folder: Path, rng: random.Random) -> dict[int, str]:
    """One trial: start the burst on ``folder``, wait for its first receipt, kill -9 it at a random moment; the
    receipts it handed out, seq -> token."""
    handed_out: dict[int, str] = {}
    with subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True) as child:
        # Wait until the burst is under way (a restart that cannot record fails here), then pull the plug.
        first = child.stdout.readline()
        assert first, "the station process died before its first receipt: it did not restart"
        seq, token = first.split()
        handed_out[int(seq)] = token
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        for line in child.stdout:
            if line.endswith("\n"):  # a line cut by the kill was never handed out
                seq, token = line.split()
                handed_out[int(seq)] = token
    assert child.returncode == -signal.SIGKILL
    return handed_out


def check_after_crash(folder: Path, handed_out: dict[int, str]) -> None:
    """The station opens, its journal verifies, operation rows and entries agree, no handed-out receipt is lost."""
    st = Station(folder)
    try:
        audit = audit_journal(st)
        assert audit.problems == [] and audit.chain_verified
        with st.bound():
            stored = dict(JournalEntry.select(JournalEntry.seq, JournalEntry.token).tuples())
            rows = {op.seq: op for op in Operation.select()}
        entries = {seq: unverified_payload(token) for seq, token in stored.items()}
        operation_entries = {seq for seq, payload in entries.items() if payload["type"] in OPERATION_TYPES}
        assert set(rows) == operation_entries
        for seq, op in rows.items():
            payload = entries[seq]
            assert (op.type, op.txn, op.amount_fen) == (payload["type"], payload["txn"], payload["amount"])
        lost = {seq for seq, token in handed_out.items() if stored.get(seq) != token}
        assert not lost, f"receipts handed out but not in the journal: {sorted(lost)}"
        assert audit.entries == max(stored)
    finally:
        st.close()


def test_kill_minus_nine_never_loses_a_receipt(tmp_path, reliability_report):
    script = tmp_path / "burst.py"
    script.write_text(BURST)
    rng = random.Random(9)
    survived = receipts = 0
    folder = None
    for trial in range(TRIALS):
        if trial % TRIALS_PER_STATION == 0:
            folder = tmp_path / f"crashy-{trial}"
            st = init_station(folder, "ST-CRASH")
            load_demo_customers(st, count=3)
            st.close()
        handed_out = kill_during_burst(script, folder, rng)
        check_after_crash(folder, handed_out)
        survived += 1
        receipts += len(handed_out)
    assert survived == TRIALS and receipts > TRIALS
    reliability_report(fault="station process killed (kill -9) during a burst of operations", trials=TRIALS,
                       survived=survived, receipts_handed_out=receipts, lost_entries=0)
