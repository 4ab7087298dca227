"""Benchmark: durable ``withdraw_cash`` on a station, against a floor measured in the same run.

Not a test (pytest does not collect it). Prints one JSON object per line; the last line is the summary:
``ops_per_s``, ``p50_ms``, ``p99_ms`` for withdraw_cash once the customer is authenticated (the deliberately
slow PIN hash is reported apart as ``pin_check_ms``), ``floor_p50_ms`` (a bare durable SQLite insert in WAL
with synchronous=FULL plus one Ed25519 signature), ``ratio_p50`` and ``rss_mb`` after the run.

The station runs with its default policy; every 500 operations the benchmark advances ``acked_seq`` as a
sync would (outside the timed path), since the default policy allows at most 1,000 unsynced debits.

    python tests/bench/station_ops.py [--operations 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station import agents, business_day, operations, receipts
from station.db import Customer
from station.demo import DEMO_AGENTS, load_demo_customers
from station.journal import journal_head
from station.protocol.pins import check_pin, make_pin_verifier
from station.provision import init_station

#: Operations between two simulated acknowledgements (about five minutes of a busy station, generously).
ACK_EVERY = 500


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def floor_samples(folder: Path, count: int) -> list[float]:
    """A bare durable insert (WAL, synchronous=FULL) plus one Ed25519 signature, per sample."""
    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, token TEXT NOT NULL)")
    key = Ed25519PrivateKey.generate()
    payload = b'{"account":"AC000100000001","agent":"A01","amount":50000,"seq":1,"type":"withdrawal"}' * 2
    samples = []
    for seq in range(count):
        start = time.perf_counter()
        signature = key.sign(payload)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (seq, payload.hex() + signature.hex()))
        conn.execute("COMMIT")
        samples.append((time.perf_counter() - start) * 1000)
    conn.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=10_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-station-"))

    moment = {"now": datetime(2026, 11, 2, 0, 0, tzinfo=UTC)}
    st = init_station(folder / "station", "ST-BENCH", clock=lambda: moment["now"])
    customers = max(100, args.operations // 9)
    load_demo_customers(st, count=customers, allowance_fen=10**9)
    agent_id, _, _, pin = DEMO_AGENTS[0]
    session = agents.login_agent(st, agent_id, pin)
    business_day.open_day(st, session, {"10000": 10**5})  # the largest drawer an entry may carry

    verifier = make_pin_verifier("123456")
    pin_ms = []
    for _ in range(5):
        start = time.perf_counter()
        check_pin("123456", verifier)
        pin_ms.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"pin_check_ms": round(statistics.median(pin_ms), 2)}))

    floor = floor_samples(folder, 2000)
    print(json.dumps({"floor_p50_ms": round(statistics.median(floor), 3), "floor_samples": len(floor)}))

    with st.bound():
        identified = list(Customer.select().order_by(Customer.id))
    auths = [agents.authenticate_customer(st, session, c, "123456") for c in identified]
    samples = []
    started = time.perf_counter()
    for index in range(args.operations):
        auth = auths[index % len(auths)]
        moment["now"] += timedelta(milliseconds=10)
        start = time.perf_counter()
        operations.withdraw_cash(st, session, auth, 10_000, receipts.new_txn_id())
        samples.append((time.perf_counter() - start) * 1000)
        if (index + 1) % ACK_EVERY == 0:
            # A station syncs every few minutes; the default policy refuses debits past 1,000 unsynced ones.
            # Acknowledge as the sync would (outside the timed path) so the run stays within the real policy.
            st.set_setting("acked_seq", journal_head(st)[0])
        if (index + 1) % 2000 == 0:
            # Customer PIN checks are valid for minutes; re-authenticate outside the timed path.
            auths = [agents.CustomerAuth(a.customer_id, a.account_id, a.agent_id, moment["now"]) for a in auths]
            print(json.dumps({"done": index + 1, "p50_ms": round(statistics.median(samples), 3)}))
    elapsed = time.perf_counter() - started
    floor_p50 = statistics.median(floor)
    p50 = statistics.median(samples)
    print(
        json.dumps(
            {
                "operations": args.operations,
                "ops_per_s": round(args.operations / elapsed, 1),
                "p50_ms": round(p50, 3),
                "p99_ms": round(percentile(samples, 0.99), 3),
                "floor_p50_ms": round(floor_p50, 3),
                "ratio_p50": round(p50 / floor_p50, 2),
                "pin_check_ms": round(statistics.median(pin_ms), 2),
                "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
