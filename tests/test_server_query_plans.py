"""The ingest's lookups keep their index plans however old PostgreSQL's statistics are.

Autovacuum analyses a table only now and then; a table that grew since (a busy day, a bulk import, a test
server with autovacuum off) must not turn a batch's lookup into a scan of every row the bank holds. The
benchmark found exactly that: the batch's txns joined to ``seen_txn`` became a hash of the whole table, its cost
growing with every txn (tests/bench/server_ingest.py; docs/operations.md, "What a batch costs the database").
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from sync_server.book import present_values
from sync_server.db import SeenTxn, connect_url, db_proxy, migrate_database

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                                reason="PostgreSQL's planner (TEST_DATABASE_URL; .ci/run sets it)")


@pytest.fixture
def pg_bank(pg_database_url):
    """A migrated, emptied PostgreSQL schema bound to the server's models."""
    database = connect_url(pg_database_url)
    database.connect()
    database.execute_sql("DROP SCHEMA public CASCADE")
    database.execute_sql("CREATE SCHEMA public")
    migrate_database(database)
    db_proxy.initialize(database)
    yield database
    database.close()


def _plan_of(database, call) -> dict:
    """The plan PostgreSQL chooses for the one statement ``call`` runs (EXPLAIN of the same SQL and parameters)."""
    seen = []
    execute_sql = database.execute_sql

    def record(sql, params=None, *args, **kwargs):
        seen.append((sql, params))
        return execute_sql(sql, params, *args, **kwargs)

    database.execute_sql = record
    try:
        result = call()
    finally:
        del database.execute_sql
    assert len(seen) == 1
    sql, params = seen[0]
    (plan,), = database.execute_sql("EXPLAIN (FORMAT JSON) " + sql, params).fetchall()
    return result, plan if isinstance(plan, list) else json.loads(plan)


def _nodes(plan) -> list[dict]:
    found, stack = [], [plan[0]["Plan"]]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.get("Plans", []))
    return found


def test_seen_txn_lookup_probes_the_index_when_the_statistics_are_stale(pg_bank):
    """The statistics say ``seen_txn`` holds 3 rows (analysed then); it holds 50,000 now."""
    pg_bank.execute_sql("INSERT INTO seen_txn (txn, station_id, seq) "
                        "SELECT 'old-' || n, 'ST-0001', n FROM generate_series(1, 3) AS n")
    pg_bank.execute_sql("ANALYZE seen_txn")
    pg_bank.execute_sql("INSERT INTO seen_txn (txn, station_id, seq) "
                        "SELECT md5(n::text), 'ST-0002', n FROM generate_series(1, 50000) AS n")
    batch = [str(uuid.uuid4()) for _ in range(498)] + ["old-2", "c4ca4238a0b923820dcc509a6f75849b"]  # md5('1')
    found, plan = _plan_of(pg_bank, lambda: present_values(SeenTxn.txn, batch))
    assert found == {"old-2", "c4ca4238a0b923820dcc509a6f75849b"}
    scans = [node for node in _nodes(plan) if node.get("Relation Name") == "seen_txn"]
    assert scans and all(node["Node Type"] in ("Index Scan", "Index Only Scan") for node in scans), scans
