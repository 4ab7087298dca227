"""SQL built once (``sync_server.db``: ``cached_rows``, ``cached_execute``, ``one_of``, ``locked``): the same rows and
changes as the queries peewee builds each time, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sync_server.db import (
    Account,
    Hold,
    Station,
    arg,
    cached_execute,
    cached_row,
    cached_rows,
    connect_url,
    db_proxy,
    is_postgres,
    locked,
    migrate_database,
    one_of,
)


@pytest.fixture
def bank(database_url):
    """An empty migrated bank on each backend, bound to the server's models, with a few accounts and holds."""
    database = connect_url(database_url)
    database.connect()
    migrate_database(database)
    db_proxy.initialize(database)
    for n, account_id in enumerate(["C-1", "C-2", "C-3", "C'4", "C\"5", "客户-6"]):
        Account.create(account_id=account_id, kind="customer", name=f"name {n}", balance_fen=100 * n)
        Hold.create(station_id="ST-0001", account_id=account_id, amount_fen=n, updated_at="2026-11-02T00:00:00Z")
    Station.create(station_id="ST-0001", name="One", created_at="2026-11-02T00:00:00Z", status="active",
                   signing_jwk={"kty": "OKP", "x": "abc"}, flagged=False)
    yield database
    database.close()


def accounts_of(ids):
    return cached_rows("test accounts", lambda: locked(
        Account.select().where(one_of(Account.account_id)).order_by(Account.account_id)), ids)


@pytest.mark.parametrize("ids", [[], ["C-2"], ["C-3", "C-1", "nobody"], ["C'4", "C\"5", "客户-6", "C-1"]])
def test_one_of_finds_what_in_finds(bank, ids):
    with bank.atomic():
        rows = accounts_of(ids)
        expected = list(Account.select().where(Account.account_id.in_(ids)).order_by(Account.account_id))
    assert [(a.account_id, a.kind, a.name, a.balance_fen) for a in rows] == \
        [(a.account_id, a.kind, a.name, a.balance_fen) for a in expected]
    assert all(not row.is_dirty() for row in rows)


def test_the_sql_is_built_once_whatever_the_list(bank):
    built = []

    def build():
        built.append(1)
        return Hold.select(Hold.account_id, Hold.amount_fen).where(
            (Hold.station_id == arg(0)) & one_of(Hold.account_id, 1)).order_by(Hold.account_id)

    assert cached_execute("test holds", build, "ST-0001", ["C-1", "C-3"]).fetchall() == [("C-1", 0), ("C-3", 2)]
    assert cached_execute("test holds", build, "ST-0001", ["C-2"]).fetchall() == [("C-2", 1)]
    assert cached_execute("test holds", build, "ST-0002", ["C-2"]).fetchall() == []
    assert built == [1]


def test_locked_reads_for_update_on_postgresql_only(bank):
    sql = locked(Account.select()).sql()[0]
    assert sql.endswith("FOR UPDATE") == is_postgres()


def test_rows_are_converted_as_peewee_converts_them(bank):
    station = cached_row("test station", lambda: Station.select().where(Station.station_id == arg()).limit(1),
                         "ST-0001")
    assert station.signing_jwk == {"kty": "OKP", "x": "abc"} and station.flagged is False
    assert station.acked_seq == 0 and station.head is None
    assert cached_row("test station", None, "ST-9999") is None


def test_an_update_reports_the_rows_it_changed(bank):
    def release():
        return Hold.update(amount_fen=0).where((Hold.station_id == arg(0)) & ~one_of(Hold.account_id, 1)
                                               & (Hold.amount_fen > 0))

    with bank.atomic():
        assert cached_execute("test release", release, "ST-0001", ["C-1", "C-2", "C-3"]).rowcount == 3
        assert cached_execute("test release", release, "ST-0001", []).rowcount == 2  # NOT IN () is every row
    assert dict(Hold.select(Hold.account_id, Hold.amount_fen).tuples()) == {
        "C-1": 0, "C-2": 0, "C-3": 0, "C'4": 0, "C\"5": 0, "客户-6": 0}
