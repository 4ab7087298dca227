"""The ledger's invariants held by the database itself: append-only ``posting`` and ``entry`` on both backends,
and on PostgreSQL an entry's legs that must balance when the transaction commits (not per statement)."""

from __future__ import annotations

import pytest
from peewee import IntegrityError
from sync_support import TEST_DATABASE_URL

from sync_server import db as server_db_module
from sync_server.checks import CheckFailure, legs_balance
from sync_server.db import MODELS, Entry, Posting, connect_url, is_postgres, migrate_database


def _legs(seq: int, *amounts: int, first_leg: int = 0) -> list[dict]:
    return [dict(station_id="ST-0001", seq=seq, leg=leg, account_id=f"acct-{leg}", amount_fen=amount)
            for leg, amount in enumerate(amounts, start=first_leg)]


@pytest.fixture
def ledger(database_url):
    """A migrated database holding one settled entry (seq 1) with two balanced legs."""
    database = connect_url(database_url)
    database.connect()
    migrate_database(database)
    with database.bind_ctx(MODELS):
        with database.atomic():
            Entry.create(station_id="ST-0001", seq=1, type="deposit", txn="t-1", token="jws", received_at="now",
                         outcome="settled")
            Posting.insert_many(_legs(1, 100, -100)).execute()
        yield database
    database.close()


@pytest.mark.parametrize("statement", [
    "UPDATE posting SET amount_fen = 5 WHERE seq = 1 AND leg = 0",
    "UPDATE posting SET memo = 'edited'",
    "DELETE FROM posting WHERE seq = 1 AND leg = 1",
    "DELETE FROM posting",
    "UPDATE entry SET outcome = 'rejected', reason = 'edited' WHERE seq = 1",
    "DELETE FROM entry WHERE seq = 1",
])
def test_postings_and_entries_are_append_only(ledger, statement):
    with pytest.raises(IntegrityError, match="append-only"):
        with ledger.atomic():
            ledger.execute_sql(statement)
    assert ledger.execute_sql("SELECT leg, amount_fen, memo FROM posting ORDER BY leg").fetchall() == [
        (0, 100, ""), (1, -100, "")]
    assert ledger.execute_sql("SELECT outcome, reason FROM entry").fetchall() == [("settled", None)]


def test_the_models_cannot_edit_the_ledger_either(ledger):
    with pytest.raises(IntegrityError, match="append-only"):
        with ledger.atomic():
            Posting.update(account_id="elsewhere").where(Posting.seq == 1).execute()
    with pytest.raises(IntegrityError, match="append-only"):
        with ledger.atomic():
            Entry.delete().execute()
    assert Posting.select().where(Posting.account_id == "elsewhere").count() == 0
    assert Entry.select().count() == 1


@pytest.mark.parametrize("table", ["posting", "entry"])
def test_emptying_a_table_at_once_is_refused(ledger, table):
    """PostgreSQL's TRUNCATE skips row triggers, so it has its own; SQLite's truncation is an unqualified DELETE."""
    statement = f"TRUNCATE {table} CASCADE" if is_postgres(ledger) else f"DELETE FROM {table}"
    with pytest.raises(IntegrityError, match="append-only"):
        with ledger.atomic():
            ledger.execute_sql(statement)
    assert ledger.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0] >= 1


def test_unbalanced_legs_written_by_several_statements_are_refused_at_commit(ledger):
    """Each statement passes; PostgreSQL refuses the entry as a whole at COMMIT. SQLite has no deferred trigger:
    there ``Book.post`` refuses before writing, and ``sync-server check`` finds what got around it."""
    def write_unbalanced():
        with ledger.atomic():
            Posting.insert_many(_legs(2, 100)).execute()
            Posting.insert_many(_legs(2, -50, first_leg=1)).execute()
            # Both statements ran: only the commit checks the entry as a whole.
            assert Posting.select().where(Posting.seq == 2).count() == 2

    if is_postgres(ledger):
        with pytest.raises(IntegrityError, match="postings of ST-0001 seq 2 sum to 50, not zero"):
            write_unbalanced()
        assert Posting.select().where(Posting.seq == 2).count() == 0
        assert legs_balance() == []
    else:
        write_unbalanced()
        assert legs_balance() == [CheckFailure("legs_balance", "postings sum to 50 fen, not zero",
                                               station_id="ST-0001", seq=2, expected_fen=0, actual_fen=50)]


def test_balanced_legs_written_by_several_statements_pass(ledger):
    with ledger.atomic():
        Posting.insert_many(_legs(2, 100)).execute()
        Posting.insert_many(_legs(2, -70, first_leg=1)).execute()
        Posting.insert_many(_legs(2, -30, first_leg=2)).execute()
    assert [p.amount_fen for p in Posting.select().where(Posting.seq == 2).order_by(Posting.leg)] == [100, -70, -30]
    assert legs_balance() == []
    if is_postgres(ledger):
        # The entry did not balance after its first two statements: checked again at COMMIT, and its marks gone.
        assert ledger.execute_sql("SELECT COUNT(*) FROM posting_legs_unbalanced").fetchone() == (0,)


def test_one_unbalanced_entry_among_many_in_one_statement_is_refused_at_commit(ledger):
    """The ingest writes a batch's legs in one statement: the statement passes, the COMMIT names the entry."""
    legs = [*_legs(2, 100, -100), *_legs(3, 300, -250), *_legs(4, 5, -5)]

    def write():
        with ledger.atomic():
            Posting.insert_many(legs).execute()
            assert Posting.select().where(Posting.seq > 1).count() == 6

    if not is_postgres(ledger):
        write()
        assert [(f.seq, f.actual_fen) for f in legs_balance()] == [(3, 50)]
        return
    with pytest.raises(IntegrityError, match="postings of ST-0001 seq 3 sum to 50, not zero"):
        write()
    assert Posting.select().count() == 2
    assert ledger.execute_sql("SELECT COUNT(*) FROM posting_legs_unbalanced").fetchone() == (0,)


def test_a_later_statement_cannot_unbalance_an_entry(ledger):
    """Release 1's per-statement trigger let both through: each statement was balanced or added to another's."""
    def one_statement_per_leg(legs):
        with ledger.atomic():
            for leg in legs:
                Posting.insert_many([leg]).execute()

    balanced_then_more = [*_legs(2, 100, -100), *_legs(2, 25, first_leg=2)]
    committed_then_more = _legs(1, 25, first_leg=2)
    if not is_postgres(ledger):
        one_statement_per_leg(balanced_then_more)
        one_statement_per_leg(committed_then_more)
        assert [(f.seq, f.actual_fen) for f in legs_balance()] == [(1, 25), (2, 25)]
        return
    with pytest.raises(IntegrityError, match="seq 2 sum to 25, not zero"):
        one_statement_per_leg(balanced_then_more)
    with pytest.raises(IntegrityError, match="seq 1 sum to 25, not zero"):
        one_statement_per_leg(committed_then_more)
    assert Posting.select().count() == 2


def test_release_1_database_is_upgraded_in_place(database_url, monkeypatch):
    """A release-1 database keeps its rows and gains the triggers; PostgreSQL loses the statement trigger."""
    database = connect_url(database_url)
    database.connect()
    try:
        release_1 = server_db_module.MIGRATIONS[:1]
        monkeypatch.setattr(server_db_module, "MIGRATIONS", release_1)
        assert migrate_database(database) == [1]
        with database.bind_ctx(MODELS):
            Posting.insert_many(_legs(1, 100, -100)).execute()
            monkeypatch.undo()
            assert migrate_database(database) == list(range(2, len(server_db_module.MIGRATIONS) + 1))
            assert Posting.select().count() == 2
            with pytest.raises(IntegrityError, match="append-only"):
                with database.atomic():
                    Posting.delete().execute()
            if is_postgres(database):
                triggers = {name for (name,) in database.execute_sql(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'posting'::regclass AND NOT tgisinternal")}
                assert triggers == {"posting_legs_after_insert", "posting_append_only"}
                functions = {name for (name,) in database.execute_sql(
                    "SELECT proname FROM pg_proc WHERE proname LIKE '%%legs%%'")}
                assert functions == {"posting_legs_after_insert", "unbalanced_legs_at_commit"}
    finally:
        database.close()


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="PostgreSQL's triggers (TEST_DATABASE_URL; .ci/run sets it)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("how", ["insert", "insert_select", "copy", "merge"])
def test_every_way_of_adding_postings_is_checked_at_commit(ledger, how):
    """The legs check runs at the end of every statement that adds postings: INSERT, INSERT ... SELECT, COPY and
    MERGE (server migration 18); an unbalanced leg is refused at COMMIT whichever wrote it. (On SQLite the ingest
    checks the legs before writing, and `sync-server check` finds what got around it: the tests above.)"""
    statements = {
        "insert": "INSERT INTO posting VALUES ('ST-0001', 2, 0, 'acct-0', 5, '')",
        "insert_select": "INSERT INTO posting SELECT station_id, 2, leg, account_id, amount_fen, memo FROM posting "
                         "WHERE amount_fen > 0",
        "merge": "MERGE INTO posting AS p USING (SELECT 'ST-0001' AS s, 2 AS q, 0 AS l) AS v "
                 "ON p.station_id = v.s AND p.seq = v.q AND p.leg = v.l "
                 "WHEN NOT MATCHED THEN INSERT VALUES (v.s, v.q, v.l, 'acct-0', 5, '')",
    }
    with pytest.raises(IntegrityError, match="postings of ST-0001 seq (1|2) sum to"):
        with ledger.atomic():
            if how == "copy":
                with ledger.connection().cursor().copy("COPY posting FROM STDIN") as copy:
                    copy.write_row(("ST-0001", 1, 2, "acct-2", 5, ""))
            else:
                ledger.execute_sql(statements[how])
    assert ledger.execute_sql("SELECT seq, leg, amount_fen FROM posting ORDER BY seq, leg").fetchall() == [
        (1, 0, 100), (1, 1, -100)]
