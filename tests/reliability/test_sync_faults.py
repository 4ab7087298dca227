"""A station syncs through a proxy that drops, delays, truncates, resets and duplicates requests at random.

The station records while it syncs (a chunk of operations, a sync that may fail, again), then syncs until its
outbox is empty. At the end the bank's entries are the station's journal byte for byte, the ledger checks pass
(postings balance) and the customers' postings are exactly the deposits (nothing applied twice). 300 entries by
default, 10,000 with ``RELIABILITY_FULL=1``; the proxy's random faults are seeded, so a run can be repeated.
"""

from __future__ import annotations

import pytest
from fault_proxy import FAULTS, FaultProxy
from sync_support import enrolled_station

from reliability import counts
from reliability.convergence import (
    ShopCounter,
    assert_bank_holds_the_journal,
    retryable_failure,
    sync_until_converged,
)
from station.sync import SyncError, sync_once

ENTRIES = counts(quick=300, full=10_000)
#: Operations recorded between two syncs, and the most entries in one batch: many batches, so many faults.
CHUNK = counts(quick=60, full=1_000)
BATCH_ENTRIES = counts(quick=8, full=50)
FAULT_RATE = 0.4


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_entries_sync_through_random_faults_exactly_once(server, tmp_path, clock, reliability_report):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    st.config["sync"] = {"max_entries": BATCH_ENTRIES, "attempts": 2}
    counter = ShopCounter(st)
    failed = 0
    with FaultProxy.to_url(server.url) as proxy:
        st.config["server"]["url"] = proxy.url
        proxy.set_random_faults(seed=13, rate=FAULT_RATE, max_delay_ms=100)
        while counter.recorded < ENTRIES:
            counter.record(min(CHUNK, ENTRIES - counter.recorded))
            try:
                sync_once(st, sleep=lambda seconds: None)
            except SyncError as exc:
                retryable_failure(exc)
                failed += 1
        failed += sync_until_converged(st)
        faults = dict(proxy.faults_seen)
    entries = assert_bank_holds_the_journal(st)
    assert entries > ENTRIES
    assert set(FAULTS) <= set(faults), f"not every fault was dealt: {faults}"
    dealt = sum(count for fault, count in faults.items() if fault != "pass")
    reliability_report(fault="sync through a proxy dropping, delaying, truncating, resetting, duplicating",
                       trials=dealt, survived=dealt, entries=entries, failed_syncs=failed,
                       faults=dict(sorted(faults.items())), lost_entries=0)
    st.close()
