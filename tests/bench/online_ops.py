"""Benchmark: one online operation on loopback (authorize + record + push + ack), against the same operation offline.

Not a test (pytest does not collect it). A sync server (SQLite in a temporary folder by default, or
``--database-url``) served by waitress on 127.0.0.1 and an enrolled station, as in the field. Each online sample is
what the counter does for a 10-yuan withdrawal once the customer's PIN is checked: ask the bank
(``station.online.authorize``), record under its grant (``operations.withdraw_cash``), push the outbox at once
(``station.online.push_now``) and see the bank's ack settle it. Each offline sample is the same withdrawal with the
link down (the bank's address refuses connections; the link is known down, so the station does not ask): recorded
under the offline allowance, nothing sent.

Prints one JSON object per line; the last is the summary: ``p50_ms``, ``p95_ms`` (online), ``offline_p50_ms``,
``offline_p95_ms``, ``ratio_to_offline`` (online p95 over offline p95) and ``settled`` (how many online samples the
bank's ack settled: all of them, or the run is broken). Goal: p95_ms <= 150.

Run: .venv/bin/python tests/bench/online_ops.py [--operations 300] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import emit, enrolled_bench_station  # noqa: E402

from station import agents, business_day, online, operations, receipts  # noqa: E402
from station.db import Customer, Operation  # noqa: E402
from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN  # noqa: E402
from station.link import note_failure, should_ask_bank  # noqa: E402
from station.protocol.entry_types import EntryType, OperationState  # noqa: E402
from station.sync import sync_once  # noqa: E402

AMOUNT_FEN = 1_000


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def withdrawal(st, session, auth, *, ask_bank: bool) -> tuple[float, str]:
    """One withdrawal as the counter records it; (milliseconds, status once done)."""
    txn = receipts.new_txn_id()
    fee = operations.quote_fee(st, EntryType.WITHDRAWAL)
    start = time.perf_counter()
    grant = None
    if ask_bank:
        grant = online.authorize(st, "withdrawal", txn=txn, agent=session.agent_id, account=auth.account_id,
                                 amount=AMOUNT_FEN, fee=fee)
    receipt = operations.withdraw_cash(st, session, auth, str(AMOUNT_FEN // 100), txn, authorization=grant)
    if ask_bank:
        online.push_now(st)
    elapsed = (time.perf_counter() - start) * 1000
    with st.bound():
        status = Operation.get_by_id(receipt.txn).status
    return elapsed, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        st, url = enrolled_bench_station(Path(tmp), args.database_url)
        sync_once(st)  # customers, PIN verifiers and allowances come down
        agent_id, name, role, agent_pin = DEMO_AGENTS[0]
        agents.add_agent(st, agent_id, name, role, agent_pin)
        session = agents.login_agent(st, agent_id, agent_pin)
        business_day.open_day(st, session, {"10000": 10**5})
        with st.bound():
            customers = list(Customer.select().where(Customer.status == "active").order_by(Customer.id))
        auths = [agents.authenticate_customer(st, session, c, DEMO_CUSTOMER_PIN) for c in customers]

        for _ in range(5):  # warm-up: connections, caches (not counted)
            withdrawal(st, session, auths[0], ask_bank=True)
        online_ms, settled = [], 0
        for index in range(args.operations):
            elapsed, status = withdrawal(st, session, auths[index % len(auths)], ask_bank=True)
            online_ms.append(elapsed)
            settled += status == OperationState.SETTLED
            if (index + 1) % 100 == 0:
                emit({"online_done": index + 1, "p50_ms": round(statistics.median(online_ms), 2)})

        # The link goes down: the bank's address refuses connections and the station knows it.
        st.config["server"] = {**st.config["server"], "url": "http://127.0.0.1:9"}
        note_failure(st, "probe", "refused", "ConnectionError")
        offline_ms = []
        for index in range(args.operations):
            elapsed, status = withdrawal(st, session, auths[index % len(auths)], ask_bank=should_ask_bank(st))
            offline_ms.append(elapsed)
            if status != OperationState.RECORDED:
                raise SystemExit(f"an offline withdrawal ended {status}, not recorded")
        p95, offline_p95 = percentile(online_ms, 0.95), percentile(offline_ms, 0.95)
        emit({
            "summary": True,
            "operations": args.operations,
            "database": "postgresql" if url.startswith("postgresql") else "sqlite",
            "p50_ms": round(statistics.median(online_ms), 2),
            "p95_ms": round(p95, 2),
            "offline_p50_ms": round(statistics.median(offline_ms), 2),
            "offline_p95_ms": round(offline_p95, 2),
            "ratio_to_offline": round(p95 / offline_p95, 2),
            "settled": settled,
            "goal_p95_ms": 150,
        })
        st.close()


if __name__ == "__main__":
    main()
