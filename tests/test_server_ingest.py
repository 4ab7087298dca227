"""The sync server's refusals and exactly-once ingest, over real HTTP on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import threading

import jsonschema
import pytest
import requests
from sync_support import enrolled_station, forked_devices, record_some, serve_in_thread, server_db, stop_server

from station.db import JournalEntry
from station.journal import iter_entries, journal_head
from station.protocol import acks, envelope, key_codecs
from station.protocol.tokens import Signer, b64url, canonical_json, chain_hash, generate_signing_key, unverified_payload
from station.sync import SyncRefused, build_batch, sync_once
from sync_server import create_app
from sync_server.admin import revoke_station
from sync_server.db import Entry, Posting
from sync_server.db import Station as ServerStation
from sync_server.openapi import openapi_document

PROBLEM = "urn:station-kit:problem:"


def post(server, station_id, sealed_or_body, headers=None):
    body = sealed_or_body.body if isinstance(sealed_or_body, envelope.SealedBatch) else sealed_or_body
    hdrs = dict(sealed_or_body.headers) if isinstance(sealed_or_body, envelope.SealedBatch) else {}
    hdrs.update(headers or {})
    return requests.post(f"{server.url}/api/v1/stations/{station_id}/batches", data=body, headers=hdrs, timeout=30)


def check_against_openapi(response, path, method="post"):
    """The response's status is documented for the operation and its body matches the documented schema."""
    doc = openapi_document()
    responses = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, response.status_code
    content = responses[str(response.status_code)]["content"]
    media = response.headers["Content-Type"].split(";")[0]
    assert media in content, media
    schema = {**content[media]["schema"], "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(response.json())


def problem_type(response):
    assert response.headers["Content-Type"].startswith("application/problem+json")
    return response.json()["type"].removeprefix(PROBLEM)


def applied_counts(station_id):
    server_db()
    return (Entry.select().where(Entry.station_id == station_id).count(),
            Posting.select().where(Posting.station_id == station_id).count())


def test_duplicate_batch_gets_the_same_answer_and_changes_nothing(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st)
    sealed = build_batch(st)
    first = post(server, "ST-0001", sealed)
    assert first.status_code == 200
    check_against_openapi(first, "/api/v1/stations/{station_id}/batches")
    counts = applied_counts("ST-0001")
    again = post(server, "ST-0001", sealed)
    assert again.status_code == 200
    assert applied_counts("ST-0001") == counts
    keys = server.app.extensions["server_keys"]
    from station.protocol.tokens import verify_token

    one, two = (verify_token(r.json()["ack"], keys.signer.key) for r in (first, again))
    for field in ("first", "last", "acked_through", "head", "rejected"):
        assert one[field] == two[field]


def test_fork_is_refused_and_flags_the_station(server, tmp_path, clock):
    st, clone = forked_devices(server, tmp_path, clock)
    counts = applied_counts("ST-0001")
    response = post(server, "ST-0001", build_batch(clone))
    assert response.status_code == 409 and problem_type(response) == "fork"
    check_against_openapi(response, "/api/v1/stations/{station_id}/batches")
    server_db()
    flagged = ServerStation.get_by_id("ST-0001")
    assert flagged.flagged and "fork" in flagged.flag_reason
    assert applied_counts("ST-0001") == counts
    record_some(st, 1)
    with pytest.raises(SyncRefused) as refused:
        sync_once(st)
    assert refused.value.problem["type"] == PROBLEM + "station-flagged"


def test_tampered_ciphertext_is_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st)
    sealed = build_batch(st)
    body = bytearray(sealed.body)
    body[len(body) // 2] ^= 0x01
    response = post(server, "ST-0001", bytes(body), sealed.headers)
    assert response.status_code == 400 and problem_type(response) == "undecryptable"
    check_against_openapi(response, "/api/v1/stations/{station_id}/batches")
    # The range headers are bound into the HPKE info: changing them also fails to decrypt.
    response = post(server, "ST-0001", sealed.body, {**sealed.headers, envelope.HEADER_LAST: str(sealed.last - 1)})
    assert problem_type(response) == "undecryptable"


def _keys_of(st):
    from station.sync import _server

    return key_codecs.encryption_public_from_jwk(_server(st)["encryption_jwk"])


def test_tampered_inner_entry_is_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        record_some(st)
        acked = st.setting("acked_seq")
        entries = list(iter_entries(st, after_seq=acked))
        header, payload_b64, sig = entries[-2][1].split(".")
        payload = unverified_payload(entries[-2][1])
        assert payload["type"] == "deposit"
        payload["amount"] = payload["amount"] * 10
        entries[-2] = (entries[-2][0], f"{header}.{b64url(canonical_json(payload))}.{sig}")
        sealed = envelope.seal_batch(entries, station_id="ST-0001",
                                    prev=chain_hash(JournalEntry.get_by_id(acked).token),
                                    signer=st.signer, server_encryption_key=_keys_of(st))
        response = post(server, "ST-0001", sealed)
        assert response.status_code == 422 and problem_type(response) == "invalid-entry"
        assert response.json()["seq"] == entries[-2][0]
        check_against_openapi(response, "/api/v1/stations/{station_id}/batches")
        assert applied_counts("ST-0001")[0] == acked


def test_batch_signed_with_the_wrong_key_is_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        record_some(st)
        acked = st.setting("acked_seq")
        entries = list(iter_entries(st, after_seq=acked))
        thief = Signer(generate_signing_key())
        sealed = envelope.seal_batch(entries, station_id="ST-0001",
                                    prev=chain_hash(JournalEntry.get_by_id(acked).token),
                                    signer=thief, server_encryption_key=_keys_of(st))
        response = post(server, "ST-0001", sealed)
        assert response.status_code == 401 and problem_type(response) == "bad-signature"
        check_against_openapi(response, "/api/v1/stations/{station_id}/batches")


def test_unknown_and_revoked_stations_are_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st)
    sealed = build_batch(st)
    response = post(server, "ST-0009", sealed.body, {**sealed.headers, envelope.HEADER_STATION: "ST-0009"})
    assert response.status_code == 404 and problem_type(response) == "unknown-station"
    check_against_openapi(response, "/api/v1/stations/{station_id}/batches")
    server_db()
    revoke_station("ST-0001")
    with pytest.raises(SyncRefused) as refused:
        sync_once(st)
    assert refused.value.status == 403 and refused.value.problem["type"] == PROBLEM + "station-revoked"
    # Its receipts still verify: the bank still publishes its keys.
    jwks = requests.get(f"{server.url}/api/v1/stations/ST-0001/jwks", timeout=10)
    assert jwks.status_code == 200 and jwks.json()["keys"][0]["kid"] == st.signer.kid
    check_against_openapi(jwks, "/api/v1/stations/{station_id}/jwks", "get")


def test_gap_is_refused_with_the_expected_first_seq(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.bound():
        record_some(st, 4)
        acked = st.setting("acked_seq")
        entries = list(iter_entries(st, after_seq=acked + 1))
        sealed = envelope.seal_batch(entries, station_id="ST-0001",
                                    prev=chain_hash(JournalEntry.get_by_id(acked + 1).token), signer=st.signer,
                                    server_encryption_key=_keys_of(st))
        response = post(server, "ST-0001", sealed)
        assert response.status_code == 409 and problem_type(response) == "gap"
        assert response.json()["expected_first"] == acked + 1
        check_against_openapi(response, "/api/v1/stations/{station_id}/batches")


def test_oversize_and_malformed_batches_are_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st)
    sealed = build_batch(st)
    response = post(server, "ST-0001", os.urandom(envelope.MAX_SEALED_BYTES + 1), sealed.headers)
    assert response.status_code == 413 and problem_type(response) == "too-large"
    check_against_openapi(response, "/api/v1/stations/{station_id}/batches")
    for first in ("one", "\u00b2"):  # a superscript two is a digit to str.isdigit(), not to int()
        response = post(server, "ST-0001", sealed, {envelope.HEADER_FIRST: first})
        assert response.status_code == 400 and problem_type(response) == "malformed-request"
        assert envelope.HEADER_FIRST in response.json()["detail"]
        check_against_openapi(response, "/api/v1/stations/{station_id}/batches")


class LoseReplyAfterCommit:
    """WSGI middleware: the app runs (and commits), then the reply is lost as if the server died."""

    def __init__(self, app):
        self.app = app
        self.armed = True

    def __call__(self, environ, start_response):
        if not self.armed or not environ["PATH_INFO"].endswith("/batches"):
            return self.app(environ, start_response)
        self.armed = False
        body = b"".join(self.app(environ, lambda *args, **kwargs: None))
        assert body
        raise ConnectionAbortedError("the server died after committing, before replying")


def test_server_dying_after_commit_then_retry_applies_once(server, tmp_path, clock, database_url):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 5)
    app = create_app({"DATABASE_URL": database_url, "SYNC_SERVER_KEYS_DIR": str(server.keys_dir)})
    flaky = LoseReplyAfterCommit(app)
    url, waitress_server, thread = serve_in_thread(flaky)
    try:
        st.config["server"]["url"] = url
        acked_before = st.setting("acked_seq")
        with pytest.raises(SyncRefused):
            sync_once(st, attempts=1)
        assert st.setting("acked_seq") == acked_before  # nothing left the outbox without its ack
        counts = applied_counts("ST-0001")
        head_seq, _ = journal_head(st)
        assert counts[0] == head_seq  # ... but the server had committed it
        result = sync_once(st, attempts=1)
        assert result.acked_seq == head_seq and result.pending == 0
        assert applied_counts("ST-0001") == counts
    finally:
        stop_server(waitress_server, thread)


def test_one_batch_delivered_to_two_workers_at_once_applies_once(server, tmp_path, clock, database_url):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 30)
    sealed = build_batch(st)
    second_app = create_app({"DATABASE_URL": database_url, "SYNC_SERVER_KEYS_DIR": str(server.keys_dir)})
    url2, waitress2, thread2 = serve_in_thread(second_app)
    barrier = threading.Barrier(2)
    responses = {}

    def deliver(url):
        barrier.wait()
        responses[url] = requests.post(f"{url}/api/v1/stations/ST-0001/batches", data=sealed.body,
                                       headers=sealed.headers, timeout=60)

    try:
        threads = [threading.Thread(target=deliver, args=(u,)) for u in (server.url, url2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        stop_server(waitress2, thread2)
    assert [r.status_code for r in responses.values()] == [200, 200]
    head_seq, _ = journal_head(st)
    entries, postings = applied_counts("ST-0001")
    assert entries == head_seq
    server_db()
    deposits = Entry.select().where((Entry.station_id == "ST-0001") & (Entry.type == "deposit")).count()
    assert deposits == 30
    # One deposit is two legs plus two commission legs; day open two legs; nothing twice.
    assert postings == Posting.select().where(Posting.station_id == "ST-0001").count()
    assert len({(p.seq, p.leg) for p in Posting.select().where(Posting.station_id == "ST-0001")}) == postings
    for response in responses.values():
        ack = acks.open_ack(response.json(), server_signing_jwk=st.config["server"]["signing_jwk"],
                            station_id="ST-0001",
                            station_encryption_key=__import__("station.sync").sync._encryption_key(st))
        assert ack.acked_through == head_seq


def test_health_and_openapi(server):
    health = requests.get(f"{server.url}/api/v1/health", timeout=10)
    assert health.status_code == 200
    check_against_openapi(health, "/api/v1/health", "get")
    doc = requests.get(f"{server.url}/api/v1/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    # Every route of the API is documented, and nothing else: the document is checked against the app itself.
    routes = {rule.rule.replace("<", "{").replace(">", "}") for rule in server.app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/")}
    assert set(doc["paths"]) == routes
    assert {"/api/v1/enroll", "/api/v1/stations/{station_id}/batches", "/api/v1/stations/{station_id}/probe",
            "/api/v1/stations/{station_id}/authorizations"} <= routes
    missing = requests.get(f"{server.url}/api/v1/nothing-here", timeout=10)
    assert missing.status_code == 404 and problem_type(missing) == "not-found"


def test_enrollment_codes_are_single_use_and_expire(server, tmp_path, clock):
    from datetime import UTC, datetime, timedelta

    from station.protocol.tokens import public_jwk
    from sync_server.admin import add_station
    from sync_server.service import new_enrollment_code

    server_db()
    code = add_station("ST-0005", "Test shop")
    keys = {"signing_jwk": public_jwk(generate_signing_key()),
            "encryption_jwk": key_codecs.encryption_public_jwk(key_codecs.generate_encryption_key())}
    ok = requests.post(f"{server.url}/api/v1/enroll", json={"code": code, **keys}, timeout=10)
    assert ok.status_code == 200 and ok.json()["station_id"] == "ST-0005"
    check_against_openapi(ok, "/api/v1/enroll")
    used = requests.post(f"{server.url}/api/v1/enroll", json={"code": code.lower(), **keys}, timeout=10)
    assert used.status_code == 409 and problem_type(used) == "enrollment-code-used"
    check_against_openapi(used, "/api/v1/enroll")
    server_db()
    old = new_enrollment_code("ST-0005", now=datetime.now(UTC) - timedelta(days=8))
    expired = requests.post(f"{server.url}/api/v1/enroll", json={"code": old, **keys}, timeout=10)
    assert expired.status_code == 410 and problem_type(expired) == "enrollment-code-expired"
    bad = requests.post(f"{server.url}/api/v1/enroll", json={"code": "x"}, timeout=10)
    assert bad.status_code == 400 and problem_type(bad) == "malformed-request"
    check_against_openapi(bad, "/api/v1/enroll")
    huge = requests.post(f"{server.url}/api/v1/enroll", json={"code": "x" * envelope.MAX_SEALED_BYTES, **keys},
                         timeout=10)
    assert huge.status_code == 413 and problem_type(huge) == "too-large"
    check_against_openapi(huge, "/api/v1/enroll")


@pytest.fixture
def gunicorn_two_workers(server):
    """The same app under gunicorn with two worker processes on an ephemeral loopback port."""
    import re
    import subprocess
    import sys
    import time

    env = {**os.environ, "DATABASE_URL": server.database_url, "SYNC_SERVER_KEYS_DIR": str(server.keys_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", "127.0.0.1:0", "--graceful-timeout", "5",
         "--no-control-socket", "sync_server.wsgi:app"],
        env=env, stderr=subprocess.PIPE, text=True)
    url = None
    booted = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and booted < 2:
        line = process.stderr.readline()
        found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", line)
        url = found.group(1) if found else url
        booted += "Booting worker" in line
    assert url and booted == 2, "gunicorn did not start"
    yield url
    process.terminate()
    process.wait(timeout=15)
    process.stderr.close()


def test_one_batch_raced_at_gunicorn_workers_applies_once(server, tmp_path, clock, gunicorn_two_workers):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 20)
    sealed = build_batch(st)
    barrier = threading.Barrier(6)
    answers = []

    def deliver():
        barrier.wait()
        answers.append(requests.post(f"{gunicorn_two_workers}/api/v1/stations/ST-0001/batches", data=sealed.body,
                                     headers=sealed.headers, timeout=60))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert [a.status_code for a in answers] == [200] * 6
    head_seq, _ = journal_head(st)
    entries, postings = applied_counts("ST-0001")
    assert entries == head_seq
    server_db()
    assert Entry.select().where((Entry.station_id == "ST-0001") & (Entry.type == "deposit")).count() == 20
    deposits = Posting.select().where((Posting.account_id == "DM00010001") & (Posting.station_id == "ST-0001"))
    assert sum(p.amount_fen for p in deposits) == -20 * 10_000


@pytest.mark.parametrize("path", ["/api/v1/enroll", "/api/v1/stations/ST-0001/probe"])
def test_json_nested_too_deep_is_a_malformed_request_not_a_500(server, path):
    deep = "[" * 100_000 + "]" * 100_000  # a few hundred KB at most: the parser recurses once per level
    response = requests.post(f"{server.url}{path}", data=deep, headers={"Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 400 and problem_type(response) == "malformed-request"
    assert "nested too deeply" in response.json()["detail"]


# -- a bad entry signature in a large batch (its signatures checked on several threads) ---------------------------
# Whatever else is wrong with the batch (a fork, a gap), a bad entry signature is the answer: the station signed no
# such entry, so nothing is applied and nothing flagged.
MANY = envelope._PARALLEL_FROM + 6


def _tampered_batch(st, entries, bad_seq):
    """``entries`` sealed as the station seals them, entry ``bad_seq``'s amount changed after signing."""
    changed = []
    for seq, token in entries:
        if seq == bad_seq:
            header, _, signature = token.split(".")
            payload = unverified_payload(token)
            payload["amount"] = payload["amount"] * 10
            token = f"{header}.{b64url(canonical_json(payload))}.{signature}"
        changed.append((seq, token))
    return envelope.seal_batch(changed, station_id=st.station_id,
                               prev=chain_hash(JournalEntry.get_by_id(entries[0][0] - 1).token),
                               signer=st.signer, server_encryption_key=_keys_of(st))


def _balances():
    from sync_server.db import Account

    server_db()
    return dict(Account.select(Account.account_id, Account.balance_fen).tuples())


def test_a_bad_entry_signature_in_a_large_batch_applies_nothing(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, MANY)
    with st.bound():
        acked = st.setting("acked_seq")
        entries = list(iter_entries(st, after_seq=acked))
        assert len(entries) >= envelope._PARALLEL_FROM
        bad_seq = entries[-3][0]
        counts, balances = applied_counts("ST-0001"), _balances()
        response = post(server, "ST-0001", _tampered_batch(st, entries, bad_seq))
    assert response.status_code == 422 and problem_type(response) == "invalid-entry"
    assert response.json()["seq"] == bad_seq and "signature does not verify" in response.json()["detail"]
    check_against_openapi(response, "/api/v1/stations/{station_id}/batches")
    assert applied_counts("ST-0001") == counts and _balances() == balances
    assert ServerStation.get_by_id("ST-0001").acked_seq == acked
    sync_once(st)  # the station's own, untampered batch then goes through
    assert ServerStation.get_by_id("ST-0001").acked_seq == journal_head(st)[0]


def test_a_bad_entry_signature_is_the_answer_over_a_fork_and_flags_nothing(server, tmp_path, clock):
    """The station signed no fork, so it is not flagged."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, MANY)
    sync_once(st)
    with st.bound():
        held = list(iter_entries(st, after_seq=0))[-MANY:]
        counts = applied_counts("ST-0001")
        response = post(server, "ST-0001", _tampered_batch(st, held, held[-1][0]))
    assert response.status_code == 422 and problem_type(response) == "invalid-entry"
    assert response.json()["seq"] == held[-1][0]
    assert not ServerStation.get_by_id("ST-0001").flagged
    assert applied_counts("ST-0001") == counts


def test_a_bad_entry_signature_is_the_answer_over_a_gap(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, MANY + 1)
    with st.bound():
        acked = st.setting("acked_seq")
        entries = list(iter_entries(st, after_seq=acked + 1))  # the first new entry left out: a gap
        response = post(server, "ST-0001", _tampered_batch(st, entries, entries[5][0]))
    assert response.status_code == 422 and problem_type(response) == "invalid-entry"
    assert response.json()["seq"] == entries[5][0]
    assert ServerStation.get_by_id("ST-0001").acked_seq == acked


@pytest.mark.parametrize("elsewhere", ["same_transaction", "committed_before"])
def test_a_txn_recorded_between_the_check_and_the_write_runs_the_batch_again(server, tmp_path, clock, monkeypatch,
                                                                               elsewhere):
    """The batch's rows are plain INSERTs (new by construction under the station's lock). When a row is already
    there after all, the INSERT fails and the batch runs once more: a txn that another station's batch recorded
    after this one looked (``committed_before``: held by the bank, but missed by the first look, as a commit in
    between would be), or any row of the same transaction (``same_transaction``, rolled back with it). The batch is
    applied exactly once, with the answer the second run gives."""
    from sync_server.db import SeenTxn
    from sync_server.posting_rules import Applier

    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 3)
    raced = next(unverified_payload(token)["txn"] for _, token in iter_entries(st)
                 if unverified_payload(token)["type"] == "deposit")
    raced_seq = next(seq for seq, token in iter_entries(st) if unverified_payload(token).get("txn") == raced)
    if elsewhere == "committed_before":
        server_db()
        SeenTxn.insert(txn=raced, station_id="ST-0002", seq=999).execute()
    looks = []
    original = Applier.load_seen_txns

    def racing(self, payloads):
        original(self, payloads)
        looks.append(raced in self._seen)
        if len(looks) == 1:
            if elsewhere == "same_transaction":
                SeenTxn.insert(txn=raced, station_id="ST-0002", seq=999).execute()
            else:
                self._seen.discard(raced)  # the first look missed it

    monkeypatch.setattr(Applier, "load_seen_txns", racing)
    result = sync_once(st)
    head_seq, _ = journal_head(st)
    assert result.acked_seq == head_seq and result.pending == 0 and len(looks) == 2
    server_db()
    holders = [row.station_id for row in SeenTxn.select().where(SeenTxn.txn == raced)]
    entries, postings = applied_counts("ST-0001")
    settled = Entry.select().where((Entry.station_id == "ST-0001") & (Entry.outcome == "settled")).count()
    assert entries == head_seq
    if elsewhere == "same_transaction":
        # Rolled back with the first run: the second run applies the deposit.
        assert holders == ["ST-0001"] and raced_seq not in result.rejected and looks == [False, False]
    else:
        assert holders == ["ST-0002"] and result.rejected == {raced_seq: "duplicate_txn"} and looks == [True, True]
    raced_entry = Entry.get((Entry.station_id == "ST-0001") & (Entry.seq == raced_seq))
    raced_legs = Posting.select().where((Posting.station_id == "ST-0001") & (Posting.seq == raced_seq)).count()
    if elsewhere == "same_transaction":
        assert raced_entry.outcome == "settled" and raced_legs >= 2
    else:
        assert raced_entry.outcome == "rejected" and raced_legs == 0
    # Every other deposit is applied once: each settled entry's legs are there, none twice (the primary key).
    assert settled >= 1 and postings >= 2 * settled
