"""Many stations and one bank, for the load test (tests/test_many_stations.py) and its benchmark
(tests/bench/many_stations.py); not collected by pytest (no test_ prefix).

The bank is built once per run: keys, migrations, the default policy and billers, and for each station a few
customers whose only home it is (so that two stations' batches never wait for each other's customer rows, as at a
real bank, where a customer calls one or two stations home). Stations enroll concurrently, each with the real
``enroll_station``, and record deposits for their own customers offline (signed as the services sign them).
"""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from station.journal import append_entry
from station.sync import enroll_station
from sync_server.admin import add_station, demo_customer_rows, import_customers, load_demo_data
from sync_server.db import connect_url, db_proxy, migrate_database
from sync_server.keys import create_keys

CUSTOMERS_PER_STATION = 2


def build_bank(database_url: str, keys_dir: Path, station_ids: list[str], *,
               customers: int = CUSTOMERS_PER_STATION) -> dict[str, str]:
    """Keys, schema, policy and billers, and the stations with ``customers`` customers each whose only home it is;
    the enrollment codes."""
    create_keys(keys_dir)
    database = connect_url(database_url)
    db_proxy.initialize(database)
    database.connect()
    try:
        migrate_database(database)
        load_demo_data([])  # the default policy and the billers
        rows, payees = demo_customer_rows(station_ids, per_station=customers)
        for row in rows:
            # The demo makes the first station's first customers home everywhere: here each has its own only.
            row["home_stations"] = row["home_stations"][:1]
        import_customers(rows, payees)
        return {station_id: add_station(station_id, f"Load station {station_id}") for station_id in station_ids}
    finally:
        database.close()


def own_accounts(station_id: str, customers: int = CUSTOMERS_PER_STATION) -> list[str]:
    """The account ids ``demo_customer_rows`` gives the customers of ``station_id`` (``ST-`` and four digits)."""
    digits = re.sub(r"\D", "", station_id)[-4:].rjust(4, "0")
    return [f"DM{digits}{index:04d}" for index in range(customers)]


def enroll_all(folder: Path, base_url: str, codes: dict[str, str], *, threads: int = 8, clock=None) -> list:
    """Enroll every station (``station_id -> code``) in ``folder``, ``threads`` at a time; the stations, in order."""
    def enroll(station_id: str):
        return enroll_station(folder / station_id, base_url, codes[station_id], clock=clock)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(enroll, codes))


def record_deposits(st, accounts: list[str], count: int, start: datetime | None = None) -> None:
    """``count`` deposits of 100 yuan into ``accounts`` in turn, a minute apart from ``start``."""
    moment = start or datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    with st.bound(), st.db.atomic():
        for index in range(count):
            moment += timedelta(seconds=61)
            append_entry(st, "deposit", moment, {"agent": "A01", "account": accounts[index % len(accounts)],
                                                 "amount": 10_000}, txn=str(uuid.uuid4()))
