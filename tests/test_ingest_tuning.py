"""What the ingest path does to save CPU keeps every value and every refusal as it was.

- Columns go to PostgreSQL as one joined text each (``book._column_arrays``), unless a value could be split or read
  as NULL: every value comes back exactly, on both backends.
- ``present_values`` finds exactly the values a column holds, however many are asked.
- A gunicorn worker freezes what it loaded before its first request (``gc.freeze`` in ``sync_server.wsgi``).
- Signatures are checked on ``SYNC_SERVER_VERIFY_THREADS`` threads (``sync-server serve`` sets the cores over the
  workers); a bad setting stops the server with the reason, and any thread count finds the first bad signature.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.protocol import envelope
from sync_server import create_app, verify_threads_setting
from sync_server.book import _column_arrays, insert_new_rows, present_values, update_rows
from sync_server.cli import cli, serve_verify_threads
from sync_server.db import (
    MODELS,
    Account,
    Entry,
    Posting,
    SeenTxn,
    connect_url,
    db_proxy,
    is_postgres,
    migrate_database,
)

AWKWARD_TEXTS = ["", " ", "a\x1fb", "\x1e", "\x1f", "x\x1ey", "NULL", "null", "{}", '"q"', "a,b", "\\", "名字",
                 "𝄞", "'", "%s", "%(x)s", "\t", "last"]


@pytest.fixture
def bank(database_url):
    database = connect_url(database_url)
    database.connect()
    migrate_database(database)
    db_proxy.initialize(database)
    with database.bind_ctx(MODELS):
        yield database
    database.close()


def _entries(texts: list[str | None], first_seq: int = 1) -> list[dict]:
    return [dict(station_id="ST-0001", seq=first_seq + i, type="deposit", txn=text, token=f"token-{i}",
                 received_at="2026-12-02T10:00:00.000Z", outcome="settled", reason=None if i % 2 else text)
            for i, text in enumerate(texts)]


def test_every_text_comes_back_exactly_whatever_it_holds(bank):
    texts = [*AWKWARD_TEXTS, None, None]
    assert insert_new_rows(Entry, _entries(texts)) == len(texts)
    stored = {e.seq: (e.txn, e.reason) for e in Entry.select()}
    assert stored == {row["seq"]: (row["txn"], row["reason"]) for row in _entries(texts)}


@pytest.mark.parametrize("texts", [[""], ["x"], [None], ["", ""], ["a", ""], ["", None], [None, None]])
def test_one_or_two_rows_of_empty_or_missing_text(bank, texts):
    """``string_to_array('')`` is an empty array: a column of one empty string must not become no value at all."""
    insert_new_rows(Entry, _entries(texts))
    assert [e.txn for e in Entry.select().order_by(Entry.seq)] == texts


def test_integers_come_back_exactly(bank):
    legs = [dict(station_id="ST-0001", seq=seq, leg=leg, account_id=f"acct-{leg}", amount_fen=amount, memo="")
            for seq, (leg, amount) in enumerate([(0, 2**53 - 1), (1, -(2**53 - 1)), (0, -1), (1, 1)], start=1)]
    with bank.atomic():
        # Two balanced entries (seq 1 and 2 have one leg each here: the check at COMMIT is for the pairs below).
        insert_new_rows(Posting, [dict(legs[0], seq=1), dict(legs[1], seq=1, leg=1),
                                  dict(legs[2], seq=2), dict(legs[3], seq=2, leg=1)])
    assert sorted((p.seq, p.leg, p.amount_fen, p.memo) for p in Posting.select()) == [
        (1, 0, 2**53 - 1, ""), (1, 1, -(2**53 - 1), ""), (2, 0, -1, ""), (2, 1, 1, "")]


def test_updates_by_primary_key_take_awkward_values_too(bank):
    ids = ["a\x1fb", "b", "c", "\x1e"]
    for account_id in ids:
        Account.create(account_id=account_id, kind="customer", name="old", balance_fen=0)
    balances = {account_id: i * 7 for i, account_id in enumerate(ids)}
    assert update_rows(Account, [dict(account_id=a, balance_fen=fen) for a, fen in balances.items()]) == 4
    assert {a.account_id: a.balance_fen for a in Account.select()} == balances
    assert update_rows(Account, [dict(account_id=account_id, balance_fen=1) for account_id in ids[1:3]]) == 2
    assert {a.account_id: a.balance_fen for a in Account.select()} == {"a\x1fb": 0, "b": 1, "c": 1, "\x1e": 21}


def test_present_values_finds_exactly_what_the_column_holds(bank):
    held = [f"txn-{n}" for n in range(0, 3000, 3)] + ["a\x1fb", ""]
    insert_new_rows(SeenTxn, [dict(txn=txn, station_id="ST-0001", seq=n) for n, txn in enumerate(held)])
    asked = [f"txn-{n}" for n in range(2500)] + ["a\x1fb", "", "\x1e", "missing"]
    assert present_values(SeenTxn.txn, asked) == {t for t in asked if t in set(held)}
    assert present_values(SeenTxn.txn, []) == set()
    assert present_values(SeenTxn.txn, ["txn-3", "txn-3"]) == {"txn-3"}


def test_missing_integers_come_back_as_null(bank):
    rows = [{"seq": value} for value in (None, 0, -5, 2**53 - 1, None)]
    sql, params = _column_arrays(Entry._meta, ["seq"], rows)
    assert params == [",0,-5,9007199254740991,"]
    if is_postgres(bank):
        back = [value for (value,) in bank.execute_sql(f"SELECT * FROM unnest({sql})", params).fetchall()]
        assert back == [None, 0, -5, 2**53 - 1, None]


def test_joined_columns_are_used_only_where_they_cannot_change_a_value():
    meta = Entry._meta
    rows = _entries(["a", "b"])
    sql, params = _column_arrays(meta, ["txn", "seq"], rows)
    assert sql.count("string_to_array") == 2 and params == ["a\x1fb", "1,2"]
    sql, params = _column_arrays(meta, ["txn"], _entries(["a\x1fb", "c"]))
    assert sql == "%b::text[]" and params == [["a\x1fb", "c"]]
    sql, params = _column_arrays(meta, ["txn"], _entries([""]))
    assert sql == "%b::text[]" and params == [[""]]
    # Only exact ints and strs are joined: a bool would be written True, a number in a text column 5.
    sql, params = _column_arrays(meta, ["seq"], [{"seq": 1}, {"seq": True}])
    assert sql == "%b::bigint[]" and params == [[1, True]]
    sql, params = _column_arrays(meta, ["txn"], [{"txn": "a"}, {"txn": 5}])
    assert sql == "%b::text[]" and params == [["a", 5]]
    sql, params = _column_arrays(meta, ["txn", "seq"], [{"txn": None, "seq": None}, {"txn": "b", "seq": 2}])
    assert sql.count("string_to_array") == 2 and params == ["\x1e\x1fb", ",2"]


# -- signature threads ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, threads", [(None, None), ("", None), ("  ", None), ("1", 1), ("4", 4), (" 2 ", 2)])
def test_verify_threads_setting(value, threads):
    assert verify_threads_setting(value) == threads


@pytest.mark.parametrize("value", ["0", "-1", "65", "two", "1.5", "²", "1e3"])
def test_a_bad_verify_threads_setting_is_refused_with_the_reason(value):
    with pytest.raises(ValueError, match="SYNC_SERVER_VERIFY_THREADS must be a whole number of 1 to 64"):
        verify_threads_setting(value)


@pytest.fixture
def sqlite_bank_env(tmp_path, monkeypatch) -> str:
    """A migrated SQLite bank with keys, named by DATABASE_URL and SYNC_SERVER_KEYS_DIR as a server reads them: its
    URL."""
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SYNC_SERVER_KEYS_DIR", str(tmp_path / "keys"))
    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    assert runner.invoke(cli, ["keys", "--create"]).exit_code == 0
    return url


def test_the_server_does_not_start_with_a_bad_verify_threads_setting(tmp_path, sqlite_bank_env):
    url = sqlite_bank_env
    with pytest.raises(ValueError, match="SYNC_SERVER_VERIFY_THREADS"):
        create_app({"DATABASE_URL": url, "SYNC_SERVER_KEYS_DIR": str(tmp_path / "keys"),
                    "SYNC_SERVER_VERIFY_THREADS": "zero"})
    create_app({"DATABASE_URL": url, "SYNC_SERVER_KEYS_DIR": str(tmp_path / "keys"), "SYNC_SERVER_VERIFY_THREADS": "3"})
    assert envelope.verify_threads() == 3
    envelope.configure_verify_threads(None)


def test_serve_refuses_a_bad_verify_threads_setting_in_words(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bank.db'}")
    monkeypatch.setenv("SYNC_SERVER_VERIFY_THREADS", "lots")
    assert CliRunner().invoke(cli, ["init-db"]).exit_code == 0
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "SYNC_SERVER_VERIFY_THREADS must be a whole number" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("workers, cores, threads", [(1, 2, 2), (2, 2, 1), (4, 2, 1), (1, 1, 1), (2, 8, 4),
                                                      (1, 16, 4), (3, 8, 2)])
def test_serve_gives_each_worker_the_cores_over_the_workers(workers, cores, threads):
    assert serve_verify_threads(workers, cores) == threads


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("bad", [[], [5], [200], [70, 71, 199], [1, 150]])
def test_any_thread_count_finds_the_first_bad_signature(threads, bad):
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    unsigned = []
    for seq in range(1, 201):
        message = f"entry {seq}".encode()
        signature = key.sign(message if seq not in bad else b"something else")
        unsigned.append((seq, public, signature, message))
    envelope.configure_verify_threads(threads)
    try:
        assert envelope.verify_threads() == threads
        assert envelope._first_bad_signature(unsigned) == (min(bad) if bad else None)
    finally:
        envelope.configure_verify_threads(None)


def test_a_gunicorn_worker_freezes_what_it_loaded_before_its_first_request(sqlite_bank_env):
    """``sync_server.wsgi`` (what each gunicorn worker imports) leaves the modules and the app to the permanent
    generation (``gc.freeze``): the full collections a worker runs between batches walk only what came later."""
    import subprocess
    import sys

    frozen = subprocess.run([sys.executable, "-c", "import gc, sync_server.wsgi; print(gc.get_freeze_count())"],
                            capture_output=True, text=True, check=True, timeout=120).stdout
    assert int(frozen) > 10_000
