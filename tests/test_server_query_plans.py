"""The ingest's lookups keep their index plans however old PostgreSQL's statistics are.

Autovacuum analyses a table only now and then; a table that grew since (a busy day, a bulk import, a test
server with autovacuum off) must not turn a batch's lookup into a scan of every row the bank holds. The
benchmark found exactly that: the batch's txns joined to ``seen_txn`` became a hash of the whole table, its cost
growing with every txn (tests/bench/server_ingest.py; docs/operations.md, "What a batch costs the database").
"""

from __future__ import annotations

import json
import os
import re
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



def _generic_plans_of(database, call) -> list[tuple[str, dict]]:
    """(SQL, plan) of each statement ``call`` runs, as PostgreSQL plans it once psycopg has prepared it (after five
    runs) and the server has settled on a generic plan, one that cannot see the parameters (a list's length)."""
    seen = []
    execute_sql = database.execute_sql

    def record(sql, params=None, *args, **kwargs):
        seen.append((sql, params or ()))
        return execute_sql(sql, params, *args, **kwargs)

    database.execute_sql = record
    try:
        call()
    finally:
        del database.execute_sql
    plans = []
    database.execute_sql("SET plan_cache_mode = force_generic_plan")
    try:
        for n, (sql, params) in enumerate(seen):
            parts = re.split(r"%[sb]", sql)  # psycopg's placeholders as PREPARE numbers them
            database.execute_sql(f"PREPARE generic_{n} AS " + "".join(
                part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts)))
            nulls = f"({', '.join(['NULL'] * len(params))})" if params else ""
            (plan,), = database.execute_sql(f"EXPLAIN (FORMAT JSON) EXECUTE generic_{n}{nulls}").fetchall()
            database.execute_sql(f"DEALLOCATE generic_{n}")
            plans.append((sql, plan if isinstance(plan, list) else json.loads(plan)))
    finally:
        database.execute_sql("RESET plan_cache_mode")
    return plans


def _scans_of(plans, table: str) -> list[dict]:
    """The plan nodes that read ``table``."""
    return [node for _, plan in plans for node in _nodes(plan) if node.get("Relation Name") == table]


def _grown(database, table: str, select: str) -> None:
    """``table`` analysed with 3 rows, then grown to 50,003 (``select`` makes row ``n``)."""
    database.execute_sql(f'INSERT INTO "{table}" {select.format(first=1, last=3)}')
    database.execute_sql(f'ANALYZE "{table}"')
    database.execute_sql(f'INSERT INTO "{table}" {select.format(first=4, last=50_003)}')


def test_list_lookups_use_their_index_in_a_generic_plan_with_stale_statistics(pg_bank):
    """The batch's lookups of a list of keys (``db.one_of``: ``= ANY`` of one array parameter, its SQL built once)
    read by index even in the generic plan PostgreSQL may settle on, which cannot see the list's length, with
    statistics from when each table was small (3 rows analysed, 50,003 held). The book's read of every station's
    holds on its customers has its own index (``hold_account_id``, server migration 17): the table's key leads with
    the station, and before it each batch scanned every hold of the bank."""
    from sync_server.book import Book
    from sync_server.downlink_versions import versioned_downlink
    from sync_server.policy import server_policy, station_policy
    from sync_server.posting_rules import Applier

    _grown(pg_bank, "account", "SELECT 'acct-' || n, 'customer', '', 100 FROM generate_series({first}, {last}) AS n")
    _grown(pg_bank, "customer", "(account_id, name, status, pin_verifier) SELECT 'acct-' || n, 'name', 'active', "
                                "'pin' FROM generate_series({first}, {last}) AS n")
    _grown(pg_bank, "authorization",
           "(auth_id, station_id, txn, kind, account_id, amount_fen, fee_fen, hold_fen, request_hash, status, "
           "created_at, expires_at) SELECT 'auth-' || n, 'ST-000' || mod(n, 2), 'txn-' || n, 'withdrawal', "
           "'acct-' || n, 100, 0, 100, 'hash', 'active', '2026-11-02T00:00:00Z', '2026-11-02T00:05:00Z' "
           "FROM generate_series({first}, {last}) AS n")
    _grown(pg_bank, "hold", "SELECT 'ST-000' || mod(n, 2), 'acct-' || n, 100, '2026-11-02T00:00:00Z' "
                            "FROM generate_series({first}, {last}) AS n")
    _grown(pg_bank, "daily_total", "SELECT 'ST-0001', 'day-' || n, 'deposit', 'acct-' || n, 100 "
                                   "FROM generate_series({first}, {last}) AS n")
    _grown(pg_bank, "downlink_item", "SELECT 'ST-0001', 'customer:acct-' || n, 'digest', 1 "
                                     "FROM generate_series({first}, {last}) AS n")
    pg_bank.execute_sql("INSERT INTO downlink_state (station_id, version, complete_since, refreshed_seq) "
                        "VALUES ('ST-0001', 1, 1, 0)")
    now = "2026-11-02T00:01:00Z"
    with pg_bank.atomic():
        plans = _generic_plans_of(pg_bank, lambda: Book("ST-0001", {"acct-7", "acct-9"}, now,
                                                         station_accounts=True))
        book = Book("ST-0001", {"acct-7", "acct-9"}, now)
        assert set(book.accounts) == set(book.customers) == {"acct-7", "acct-9"}
        assert book.authorizations == {"auth-7": ("acct-7", 100), "auth-9": ("acct-9", 100)}
        policy = server_policy()
        applier = Applier(book, policy, station_policy(policy), set(), (0, 0))
        payloads = [{"auth": "auth-7", "ts": "2026-11-02T00:00:00Z"}]
        plans += _generic_plans_of(pg_bank, lambda: (applier.load_authorizations(payloads),
                                                      applier.load_daily_totals(payloads)))
        assert set(applier.authorizations) == {"auth-7"}
        plans += _generic_plans_of(pg_bank, lambda: versioned_downlink(
            "ST-0001", {"v": 1, "acked_seq": 1, "server_time": now, "policy": {}}, 1, 1))
        assert book.holds == {("ST-0001", "acct-7"): 100, ("ST-0001", "acct-9"): 100}
    for table in ("account", "customer", "hold", "authorization", "daily_total", "downlink_item"):
        scans = _scans_of(plans, table)
        assert scans and all(node["Node Type"] != "Seq Scan" for node in scans), (table, scans)


def test_the_legs_check_probes_the_index_whatever_the_session_planned_on(pg_bank, pg_database_url):
    """The check of an entry's legs after each INSERT is planned once per session (PL/pgSQL keeps the plan): a
    session that first wrote postings when ``posting`` held four rows still sums each entry through the primary
    key after another session has written 50,000 (server migration 18; without its ``enable_seqscan = off`` this
    session scanned the whole table once per entry)."""
    import psycopg

    def legs(station: str, first: int, entries: int) -> str:
        return ("INSERT INTO posting (station_id, seq, leg, account_id, amount_fen, memo) "
                f"SELECT '{station}', s, l, 'acct', CASE l WHEN 0 THEN 100 ELSE -100 END, '' "
                f"FROM generate_series({first}, {first + entries - 1}) AS s, generate_series(0, 1) AS l")

    with psycopg.connect(pg_database_url, autocommit=True) as young, \
            psycopg.connect(pg_database_url, autocommit=True) as other:
        young.execute(legs("ST-0001", 1, 2))
        young.execute("ANALYZE posting")
        young.execute(legs("ST-0001", 3, 1))  # planned now, on statistics of a table of 4 rows
        other.execute(legs("ST-0002", 1, 25_000))
        with young.transaction():
            young.execute(legs("ST-0001", 10, 5))
            (seq_scans, index_scans), = young.execute(
                "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'posting'").fetchall()
    assert seq_scans == 0 and index_scans >= 5
    assert pg_bank.execute_sql("SELECT COUNT(*) FROM posting_legs_unbalanced").fetchone() == (0,)
