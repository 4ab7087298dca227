"""Benchmark: bytes per sync for a station with 2,000 home customers, when nothing changed at the bank.

Prints JSON lines; the last is the summary. For each sync: the sealed request (``request_bytes``: a heartbeat, the
last acknowledged entry again), the whole HTTP answer body (``answer_bytes``: the signed ack and the sealed
downlink, base64url, in JSON) and the sealed downlink alone (``downlink_bytes``), and how many customers the
downlink carried. The first sync after enrollment carries every customer (``full``); the unchanged ones carry none
(``unchanged``); ``one_change`` follows the bank closing one customer. ``full_answer_bytes_if_unversioned`` is what
every sync cost before downlink versions (an older station still gets that). Goal: unchanged answer_bytes < 1024.

Run: .venv/bin/python tests/bench/downlink_size.py [--customers 2000] [--database-url sqlite:///...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import emit, enrolled_bench_station  # noqa: E402

import station.sync as sync_module  # noqa: E402
from station.protocol.tokens import b64url_decode  # noqa: E402
from sync_server.admin import demo_customer_rows, import_customers  # noqa: E402
from sync_server.db import Customer, connect_url, db_proxy  # noqa: E402

GOAL_ANSWER_BYTES = 1024


class CountingSession(requests.Session):
    """Keeps the size of every batch sent and of every answer."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[int, int, int]] = []

    def post(self, url, data=None, **kwargs):
        response = super().post(url, data=data, **kwargs)
        if url.endswith("/batches") and response.status_code == 200:
            sealed = b64url_decode(response.json()["downlink"])
            self.sizes.append((len(data), len(response.content), len(sealed)))
        return response


def one_sync(st, label: str) -> dict:
    session, seen = CountingSession(), []
    real_open = sync_module.open_answer

    def keep(station, answer):
        ack = real_open(station, answer)
        seen.append(ack.downlink)
        return ack

    sync_module.open_answer = keep
    started = time.perf_counter()
    try:
        sync_module.sync_once(st, http=session)
    finally:
        sync_module.open_answer = real_open
    seconds = time.perf_counter() - started
    request_bytes, answer_bytes, downlink_bytes = session.sizes[-1]
    record = {"sync": label, "request_bytes": request_bytes, "answer_bytes": answer_bytes,
              "downlink_bytes": downlink_bytes, "customers": len(seen[-1].get("customers", [])),
              "delta": "since" in seen[-1], "seconds": round(seconds, 3)}
    emit(record)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--unchanged", type=int, default=3, help="unchanged syncs measured")
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        st, url = enrolled_bench_station(Path(tmp), args.database_url)
        database = connect_url(url)
        db_proxy.initialize(database)
        rows, payees = demo_customer_rows(["ST-0001"], per_station=args.customers)
        import_customers(rows, payees)
        full = one_sync(st, "full")
        unchanged = [one_sync(st, "unchanged") for _ in range(args.unchanged)]
        Customer.update(status="closed").where(Customer.account_id == rows[7]["account_id"]).execute()
        changed = one_sync(st, "one_change")
        st.delete_setting("downlink_version")  # as after `station restore`: the station asks for everything
        resync = one_sync(st, "full_resync")
        worst = max(unchanged, key=lambda record: record["answer_bytes"])
        emit({
            "summary": True,
            "customers": args.customers,
            "full_answer_bytes": full["answer_bytes"],
            "full_answer_bytes_if_unversioned": resync["answer_bytes"],
            "unchanged_request_bytes": worst["request_bytes"],
            "unchanged_answer_bytes": worst["answer_bytes"],
            "unchanged_downlink_bytes": worst["downlink_bytes"],
            "unchanged_customers": worst["customers"],
            "one_change_answer_bytes": changed["answer_bytes"],
            "one_change_customers": changed["customers"],
            "ratio_full_to_unchanged": round(resync["answer_bytes"] / worst["answer_bytes"], 1),
            "goal_unchanged_answer_bytes": GOAL_ANSWER_BYTES,
            "goal_met": worst["answer_bytes"] < GOAL_ANSWER_BYTES,
        })


if __name__ == "__main__":
    main()
