"""What the ingest path does to save CPU keeps every value and every refusal as it was.

- Columns go to PostgreSQL as one joined text each (``book._column_arrays``), unless a value could be split or read
  as NULL: every value comes back exactly, on both backends.
- ``present_values`` finds exactly the values a column holds, however many are asked.
- Signatures are checked on ``SYNC_SERVER_VERIFY_THREADS`` threads (``sync-server serve`` sets the cores over the
  workers); a bad setting stops the server with the reason, and any thread count finds the first bad signature.
- A large batch's entry signatures may still be running when ``open_batch(defer_entry_signatures=True)`` returns;
  ``Batch.confirm`` gives the refusal checking them first would have given, and any other refusal of the batch
  waits for them, so a bad signature is always the answer (the server's side: tests/test_server_ingest.py).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.protocol import envelope
from station.protocol.envelope_errors import BadEntry
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


# -- signature threads ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, threads", [(None, None), ("", None), ("  ", None), ("1", 1), ("4", 4), (" 2 ", 2)])
def test_verify_threads_setting(value, threads):
    assert verify_threads_setting(value) == threads


@pytest.mark.parametrize("value", ["0", "-1", "65", "two", "1.5", "²", "1e3"])
def test_a_bad_verify_threads_setting_is_refused_with_the_reason(value):
    with pytest.raises(ValueError, match="SYNC_SERVER_VERIFY_THREADS must be a whole number of 1 to 64"):
        verify_threads_setting(value)


def test_the_server_does_not_start_with_a_bad_verify_threads_setting(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SYNC_SERVER_KEYS_DIR", str(tmp_path / "keys"))
    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    assert runner.invoke(cli, ["keys", "--create"]).exit_code == 0
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
        pending = envelope._submit_signature_checks(unsigned)
        if bad:
            with pytest.raises(BadEntry) as refused:
                pending.confirm()
            assert refused.value.seq == min(bad)
        else:
            pending.confirm()
    finally:
        envelope.configure_verify_threads(None)


# -- entry signatures checked while the batch is applied ---------------------------------------------------------
def _chain(count: int, signer, bad: set[int] = frozenset()) -> list[tuple[int, str]]:
    """``count`` chained deposits of ST-0001; the entries in ``bad`` carry another entry's signature."""
    from station.protocol.tokens import b64url, canonical_json, chain_hash, genesis_prev

    prev, entries = genesis_prev("ST-0001"), []
    for seq in range(1, count + 1):
        payload = {"v": 1, "station": "ST-0001", "seq": seq, "type": "start" if seq == 1 else "deposit",
                   "ts": f"2026-11-02T10:00:{seq % 60:02d}.{seq:03d}Z", "prev": prev, "txn": f"txn-{seq}",
                   "agent": "A01", "account": "4000-0001", "amount": seq * 100}
        token = signer.sign(payload)
        if seq in bad:
            header, _, signature = token.split(".")
            token = f"{header}.{b64url(canonical_json({**payload, 'amount': 1}))}.{signature}"
        entries.append((seq, token))
        prev = chain_hash(token)
    return entries


@pytest.fixture
def sealed_keys():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from station.protocol.tokens import Signer, generate_signing_key

    return Signer(generate_signing_key()), X25519PrivateKey.generate()


def _open(sealed, signer, server_key, **options):
    from station.protocol.tokens import public_jwk

    return envelope.open_batch(sealed.body, station_id="ST-0001", first=sealed.first, last=sealed.last,
                               server_encryption_key=server_key, station_signing_jwk=public_jwk(signer.key),
                               **options)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_deferred_bad_signature_is_refused_by_confirm_as_it_is_at_once(sealed_keys, threads):
    from station.protocol.tokens import genesis_prev

    signer, server_key = sealed_keys
    entries = _chain(envelope._PARALLEL_FROM + 36, signer, bad={70, 90})
    sealed = envelope.seal_batch(entries, station_id="ST-0001", prev=genesis_prev("ST-0001"), signer=signer,
                                 server_encryption_key=server_key.public_key())
    envelope.configure_verify_threads(threads)
    try:
        with pytest.raises(BadEntry) as at_once:
            _open(sealed, signer, server_key)
        batch = _open(sealed, signer, server_key, defer_entry_signatures=True)
        assert batch.pending is not None and len(batch.entries) == len(entries)
        for _ in range(2):  # asked again (the server's retry after a conflict), the answer is the same
            with pytest.raises(BadEntry) as deferred:
                batch.confirm()
            assert (deferred.value.seq, str(deferred.value)) == (at_once.value.seq, str(at_once.value)) \
                == (70, "entry 70: signature does not verify")
    finally:
        envelope.configure_verify_threads(None)


def test_a_deferred_batch_that_verifies_confirms_and_small_ones_are_checked_at_once(sealed_keys):
    from station.protocol.tokens import genesis_prev

    signer, server_key = sealed_keys
    for count, deferred in ((envelope._PARALLEL_FROM, True), (envelope._PARALLEL_FROM - 1, False)):
        entries = _chain(count, signer)
        sealed = envelope.seal_batch(entries, station_id="ST-0001", prev=genesis_prev("ST-0001"), signer=signer,
                                     server_encryption_key=server_key.public_key())
        batch = _open(sealed, signer, server_key, defer_entry_signatures=True)
        batch.confirm()
        assert [(entry.seq, entry.token) for entry in batch.entries] == entries
        small = _chain(count, signer, bad={count})
        sealed = envelope.seal_batch(small, station_id="ST-0001", prev=genesis_prev("ST-0001"), signer=signer,
                                     server_encryption_key=server_key.public_key())
        if deferred:
            with pytest.raises(BadEntry, match=f"entry {count}: signature"):
                _open(sealed, signer, server_key, defer_entry_signatures=True).confirm()
        else:
            with pytest.raises(BadEntry, match=f"entry {count}: signature"):
                _open(sealed, signer, server_key, defer_entry_signatures=True)


def test_another_refusal_of_a_deferred_batch_waits_for_the_signatures(sealed_keys):
    """The batch signed by another key and an entry's bad signature: the entry is the answer, as when checked
    first (open_batch checks the batch signature after the entries')."""
    from station.protocol.tokens import Signer, generate_signing_key, genesis_prev

    signer, server_key = sealed_keys
    entries = _chain(envelope._PARALLEL_FROM + 10, signer, bad={66})
    sealed = envelope.seal_batch(entries, station_id="ST-0001", prev=genesis_prev("ST-0001"),
                                 signer=Signer(generate_signing_key()), server_encryption_key=server_key.public_key())
    with pytest.raises(BadEntry, match="entry 66: signature does not verify"):
        _open(sealed, signer, server_key, defer_entry_signatures=True)
