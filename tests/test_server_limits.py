"""The sync server's rate limits (per address, per station), the order of its cheap checks before any decryption or
signature, the bound on what a sealed body may inflate to, and the station's patience with a rate-limited bank."""

from __future__ import annotations

import struct
import zlib
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from sync_support import enrolled_station, record_some, serve_in_thread, stop_server
from test_server_ingest import check_against_openapi

from station.protocol import envelope, sealing
from station.protocol.authorizations import CONTENT_TYPE as AUTHORIZATION_TYPE
from station.sync import SyncRefused, sync_once
from sync_server import create_app
from sync_server.ratelimits import RATE_LIMIT_SETTINGS

PROBLEM = "urn:station-kit:problem:"


def limited_app(server, **limits):
    return create_app({"DATABASE_URL": server.database_url, "SYNC_SERVER_KEYS_DIR": str(server.keys_dir), **limits})


def from_address(client, address):
    client.environ_base["REMOTE_ADDR"] = address
    return client


def assert_rate_limited(response, path, method="post"):
    assert response.status_code == 429, response.get_json()
    assert response.get_json()["type"] == PROBLEM + "rate-limited"
    assert response.headers["Retry-After"].isdigit() and 1 <= int(response.headers["Retry-After"]) <= 61
    # check_against_openapi reads a requests response: json() is a method there.
    check_against_openapi(SimpleNamespace(status_code=response.status_code, headers=response.headers,
                                          json=response.get_json), path, method)


def test_enrollment_is_limited_per_client_address(server):
    app = limited_app(server, SYNC_SERVER_RATE_LIMIT_ENROLL="3 per minute")
    guesser = from_address(app.test_client(), "203.0.113.7")
    for _ in range(3):
        assert guesser.post("/api/v1/enroll", json={"code": "AAAA-BBBB-CCCC"}).status_code == 400
    assert_rate_limited(guesser.post("/api/v1/enroll", json={"code": "AAAA-BBBB-CCCC"}), "/api/v1/enroll")
    other = from_address(app.test_client(), "203.0.113.8")
    assert other.post("/api/v1/enroll", json={"code": "AAAA-BBBB-CCCC"}).status_code == 400


@pytest.mark.parametrize(("path", "documented"), [
    ("/api/v1/health", "/api/v1/health"),
    ("/api/v1/openapi.json", "/api/v1/openapi.json"),
    ("/api/v1/stations/ST-0001/jwks", "/api/v1/stations/{station_id}/jwks"),
    ("/api/v1/stations/ST-0001/head?nonce=" + "n" * 16, "/api/v1/stations/{station_id}/head"),
])
def test_the_public_endpoints_share_one_limit_per_client_address(server, path, documented):
    app = limited_app(server, SYNC_SERVER_RATE_LIMIT_PUBLIC="2 per minute")
    client = from_address(app.test_client(), "198.51.100.1")
    client.get("/api/v1/health")
    assert client.get(path).status_code < 429
    assert_rate_limited(client.get(path), documented, "get")
    assert from_address(app.test_client(), "198.51.100.2").get(path).status_code < 429


def test_a_stations_endpoints_share_one_limit_per_station(server):
    app = limited_app(server, SYNC_SERVER_RATE_LIMIT_STATION="3 per minute")
    client = app.test_client()
    assert client.post("/api/v1/stations/ST-0001/probe", json={"probe": "x"}).status_code == 400
    assert client.post("/api/v1/stations/ST-0001/batches", data=b"x").status_code == 400
    assert client.post("/api/v1/stations/ST-0001/authorizations", data=b"x",
                       headers={"Content-Type": AUTHORIZATION_TYPE}).status_code == 400
    assert_rate_limited(client.post("/api/v1/stations/ST-0001/batches", data=b"x"),
                        "/api/v1/stations/{station_id}/batches")
    # Another station behind the same address is not held back by this one.
    assert client.post("/api/v1/stations/ST-0002/probe", json={"probe": "x"}).status_code == 400


def test_a_flood_naming_a_station_from_elsewhere_does_not_use_up_that_stations_limit(server):
    """Station ids are no secret (ST-0001 is on every receipt): junk sent under a station's id from another address
    once used up the station's own count, so anyone could keep every station of the bank from syncing."""
    app = limited_app(server, SYNC_SERVER_RATE_LIMIT_STATION="3 per minute")
    flooder = from_address(app.test_client(), "203.0.113.66")
    for _ in range(3):
        assert flooder.post("/api/v1/stations/ST-0001/batches", data=b"x").status_code == 400
    assert_rate_limited(flooder.post("/api/v1/stations/ST-0001/batches", data=b"x"),
                        "/api/v1/stations/{station_id}/batches")
    station = from_address(app.test_client(), "198.51.100.77")
    assert station.post("/api/v1/stations/ST-0001/probe", json={"probe": "x"}).status_code == 400


def test_varying_the_station_id_does_not_escape_the_limit_per_address(server):
    app = limited_app(server, SYNC_SERVER_RATE_LIMIT_STATION_ADDRESS="3 per minute")
    client = from_address(app.test_client(), "192.0.2.9")
    for number in range(3):
        assert client.post(f"/api/v1/stations/ST-9{number:03}/probe", json={"probe": "x"}).status_code == 400
    assert_rate_limited(client.post("/api/v1/stations/ST-9999/probe", json={"probe": "x"}),
                        "/api/v1/stations/{station_id}/probe")
    assert from_address(app.test_client(), "192.0.2.10").post(
        "/api/v1/stations/ST-9999/probe", json={"probe": "x"}).status_code == 400


def test_limits_can_be_lifted_one_by_one_or_all_at_once(server):
    one_off = limited_app(server, SYNC_SERVER_RATE_LIMIT_PUBLIC="off", SYNC_SERVER_RATE_LIMIT_ENROLL="1 per minute")
    all_off = limited_app(server, SYNC_SERVER_RATE_LIMITS="off", SYNC_SERVER_RATE_LIMIT_PUBLIC="1 per minute")
    for app in (one_off, all_off):
        client = app.test_client()
        assert all(client.get("/api/v1/health").status_code == 200 for _ in range(5))
    client = one_off.test_client()
    client.post("/api/v1/enroll", json={})
    assert client.post("/api/v1/enroll", json={}).status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(server):
    app = limited_app(server, SYNC_SERVER_TRUSTED_PROXIES="1", SYNC_SERVER_RATE_LIMIT_PUBLIC="1 per minute")
    client = from_address(app.test_client(), "127.0.0.1")  # everything arrives from the proxy
    assert client.get("/api/v1/health", headers={"X-Forwarded-For": "198.51.100.20"}).status_code == 200
    assert client.get("/api/v1/health", headers={"X-Forwarded-For": "198.51.100.21"}).status_code == 200
    assert client.get("/api/v1/health", headers={"X-Forwarded-For": "198.51.100.20"}).status_code == 429


def test_every_limit_setting_is_documented():
    operations = (__import__("pathlib").Path(__file__).parents[1] / "docs" / "operations.md").read_text("utf-8")
    missing = [name for name in RATE_LIMIT_SETTINGS if f"`{name}`" not in operations]
    assert missing == []


# -- cheap checks first ---------------------------------------------------------------------------------------
@pytest.fixture
def spies(monkeypatch):
    """Counts of the expensive steps of opening a batch: decryption, and each kind of signature check."""
    counts = {"unseal": 0, "batch signature": 0, "entry signatures": 0, "tokens": 0}

    def counting(name, function):
        def spy(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)
        return spy

    monkeypatch.setattr(envelope, "unseal", counting("unseal", envelope.unseal))
    monkeypatch.setattr(envelope, "_verify_detached", counting("batch signature", envelope._verify_detached))
    monkeypatch.setattr(envelope, "_submit_signature_checks",
                        counting("entry signatures", envelope._submit_signature_checks))
    monkeypatch.setattr(envelope, "verify_token", counting("tokens", envelope.verify_token))
    return counts


def bomb(server_public_key, station_id: str, first: int, last: int) -> bytes:
    """A sealed batch of about 16 KB whose plaintext is 16 MiB: a batch signature header, then zeros."""
    detached = b"eyJhbGciOiJFZDI1NTE5Iiwia2lkIjoieCJ9..c2ln"
    body = struct.pack(">I", 2) + b"{}" + b"\0" * (sealing.MAX_PLAIN_BYTES - 64 - len(detached))
    plaintext = envelope.BATCH_MAGIC + struct.pack(">I", len(detached)) + detached + body
    assert len(plaintext) <= sealing.MAX_PLAIN_BYTES
    compressed = zlib.compress(plaintext, 9)
    return sealing.SUITE.encrypt(compressed, server_public_key, info=sealing.batch_info(station_id, first, last))


@pytest.mark.parametrize("last", [1, 256])
def test_a_small_body_that_inflates_to_16_mib_is_refused_before_any_signature_check(server, tmp_path, clock,
                                                                                  spies, last):
    enrolled_station(server, tmp_path, "ST-0001", clock)
    spies.update(dict.fromkeys(spies, 0))  # the enrollment's own sync is not counted
    keys = server.app.extensions["server_keys"]
    sealed = bomb(keys.encryption_key.public_key(), "ST-0001", 1, last)
    assert len(sealed) <= 20 * 1024
    client = limited_app(server).test_client()
    response = client.post("/api/v1/stations/ST-0001/batches", data=sealed, headers={
        "Content-Type": envelope.BATCH_CONTENT_TYPE, "X-Station-Id": "ST-0001", "X-Batch-First": "1",
        "X-Batch-Last": str(last)})
    assert response.status_code == 413 and response.get_json()["type"] == PROBLEM + "too-large"
    assert spies == {"unseal": 1, "batch signature": 0, "entry signatures": 0, "tokens": 0}


def test_a_small_body_claiming_more_entries_than_it_can_hold_is_not_even_decrypted(server, tmp_path, clock, spies):
    enrolled_station(server, tmp_path, "ST-0001", clock)
    spies.update(dict.fromkeys(spies, 0))
    keys = server.app.extensions["server_keys"]
    last = envelope.MAX_BATCH_ENTRIES
    sealed = bomb(keys.encryption_key.public_key(), "ST-0001", 1, last)
    response = limited_app(server).test_client().post("/api/v1/stations/ST-0001/batches", data=sealed, headers={
        "X-Station-Id": "ST-0001", "X-Batch-First": "1", "X-Batch-Last": str(last)})
    assert response.status_code == 400 and response.get_json()["type"] == PROBLEM + "malformed-batch"
    assert spies["unseal"] == 0


@pytest.mark.parametrize(("station_id", "slug"), [("ST-7777", "unknown-station"), ("ST-0002", "station-not-enrolled")])
def test_a_batch_for_a_station_that_cannot_send_is_refused_before_decryption(server, spies, station_id, slug):
    keys = server.app.extensions["server_keys"]
    sealed = bomb(keys.encryption_key.public_key(), station_id, 1, 1)
    response = limited_app(server).test_client().post(
        f"/api/v1/stations/{station_id}/batches", data=sealed,
        headers={"X-Station-Id": station_id, "X-Batch-First": "1", "X-Batch-Last": "1"})
    assert response.get_json()["type"] == PROBLEM + slug
    assert spies["unseal"] == 0


@pytest.mark.parametrize("value", ["9" * 5000, "9" * 17, "-1", "1.0", "\u00b2", " 1"])
@pytest.mark.parametrize("header", ["X-Batch-First", "X-Batch-Last"])
def test_a_batch_range_header_that_is_no_seq_is_refused_with_a_reason(server, tmp_path, clock, spies, header, value):
    # 5,000 digits once reached int(), which refuses more than 4,300: a 500.
    enrolled_station(server, tmp_path, "ST-0001", clock)
    spies.update(dict.fromkeys(spies, 0))
    headers = {"X-Station-Id": "ST-0001", "X-Batch-First": "1", "X-Batch-Last": "1", header: value}
    response = limited_app(server).test_client().post("/api/v1/stations/ST-0001/batches", data=b"x" * 64,
                                                      headers=headers)
    assert response.status_code == 400 and response.get_json()["type"] == PROBLEM + "malformed-request"
    assert header in response.get_json()["detail"] and spies["unseal"] == 0


@pytest.mark.parametrize("station_id", ["ST\x00", "\x00", "日本", "ST 1", "S" * 41, "-ST"])
@pytest.mark.parametrize(("method", "path", "documented"), [
    ("get", "/api/v1/stations/{}/head?nonce=" + "n" * 16, "/api/v1/stations/{station_id}/head"),
    ("get", "/api/v1/stations/{}/jwks", "/api/v1/stations/{station_id}/jwks"),
    ("post", "/api/v1/stations/{}/probe", "/api/v1/stations/{station_id}/probe"),
    ("post", "/api/v1/stations/{}/batches", "/api/v1/stations/{station_id}/batches"),
    ("post", "/api/v1/stations/{}/authorizations", "/api/v1/stations/{station_id}/authorizations"),
])
def test_a_station_id_no_station_can_have_is_unknown_before_the_database_is_asked(server, station_id, method, path,
                                                                                   documented):
    # A NUL in the path's station id once reached PostgreSQL, which refuses it in text: a 500.
    response = getattr(limited_app(server).test_client(), method)(
        path.format(quote(station_id, safe="")), json={"probe": "x"},
        headers={"X-Station-Id": station_id, "X-Batch-First": "1", "X-Batch-Last": "1"})
    assert response.status_code == 404 and response.get_json()["type"] == PROBLEM + "unknown-station"
    check_against_openapi(SimpleNamespace(status_code=response.status_code, headers=response.headers,
                                          json=response.get_json), documented, method)


def test_a_body_over_the_limit_is_refused_before_it_is_opened(server, tmp_path, clock, spies):
    enrolled_station(server, tmp_path, "ST-0001", clock)
    spies.update(dict.fromkeys(spies, 0))
    response = limited_app(server).test_client().post(
        "/api/v1/stations/ST-0001/batches", data=b"\0" * (envelope.MAX_SEALED_BYTES + 1),
        headers={"X-Station-Id": "ST-0001", "X-Batch-First": "1", "X-Batch-Last": "1"})
    assert response.status_code == 413 and response.get_json()["type"] == PROBLEM + "too-large"
    assert spies["unseal"] == 0


def test_an_honest_batch_stays_far_below_the_inflation_bound(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 200)
    from station.sync import build_batch

    sealed = build_batch(st)
    count = sealed.last - sealed.first + 1
    plain = len(zlib.decompress(sealing.SUITE.decrypt(
        sealed.body, server.app.extensions["server_keys"].encryption_key,
        info=sealing.batch_info("ST-0001", sealed.first, sealed.last))))
    assert plain * 4 < envelope.max_batch_plain_bytes(len(sealed.body), count)


def test_an_authorization_request_inflating_beyond_any_request_is_refused_unverified(server, tmp_path, clock,
                                                                                     monkeypatch):
    from station.protocol import authorizations

    enrolled_station(server, tmp_path, "ST-0001", clock)
    verified = []
    monkeypatch.setattr(authorizations, "verify_token", lambda *args: verified.append(args))
    nonce = "n" * 32
    keys = server.app.extensions["server_keys"]
    token = b"a." + b"A" * (4 * 1024 * 1024) + b".b"
    body = sealing.SUITE.encrypt(zlib.compress(token, 9), keys.encryption_key.public_key(),
                                 info=authorizations.request_info("ST-0001", nonce))
    assert len(body) <= authorizations.MAX_SEALED_BYTES
    response = limited_app(server).test_client().post(
        "/api/v1/stations/ST-0001/authorizations", data=body,
        headers={"Content-Type": AUTHORIZATION_TYPE, "X-Station-Id": "ST-0001", "X-Authorization-Nonce": nonce})
    assert response.status_code == 413 and response.get_json()["type"] == PROBLEM + "too-large"
    assert verified == []


# -- the station's side -------------------------------------------------------------------------------------
def test_the_station_waits_as_told_when_rate_limited_and_gets_through(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 3)
    app = limited_app(server, SYNC_SERVER_RATE_LIMIT_STATION="1 per minute")
    limiter = next(iter(app.extensions["limiter"]))
    url, waitress_server, thread = serve_in_thread(app)
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        limiter.reset()  # the minute has passed

    try:
        st.config["server"]["url"] = url
        st.config.setdefault("sync", {})["backoff_base"] = 0.5
        first = sync_once(st, sleep=sleep, attempts=3)
        assert first.pending == 0 and waits == []
        record_some(st, 2)
        second = sync_once(st, sleep=sleep, attempts=3)
        assert second.pending == 0
        # One wait of what the bank asked (Retry-After: up to a minute), not a backoff of half a second or less.
        assert len(waits) == 1 and 30 <= waits[0] <= 61
        record_some(st, 1)
        with pytest.raises(SyncRefused) as refused:
            sync_once(st, sleep=lambda seconds: waits.append(seconds), attempts=2)
        # Out of attempts: a retryable failure "busy"; the entries wait in the outbox for the next sync.
        assert refused.value.retryable and refused.value.reason == "busy" and refused.value.status == 429
        assert st.setting("last_sync_failure")["reason"] == "busy"
        limiter.reset()
        assert sync_once(st, sleep=sleep).pending == 0
    finally:
        stop_server(waitress_server, thread)


# -- the database out of reach ----------------------------------------------------------------------------------
def test_a_database_out_of_reach_is_503_with_retry_after_and_a_bug_stays_500(server, monkeypatch):
    """PostgreSQL restarting (psycopg's OperationalError under peewee's) is ``database-unavailable``, 503 with
    Retry-After, as the document says; any other unexpected error stays ``internal-error``, 500."""
    import peewee
    import psycopg

    from sync_server import api

    def cut(_station_id):
        try:
            raise psycopg.errors.AdminShutdown("terminating connection due to administrator command")
        except psycopg.Error as exc:
            raise peewee.OperationalError(str(exc)) from exc

    client = limited_app(server).test_client()
    monkeypatch.setattr(api, "station_keys", cut)
    response = client.get("/api/v1/stations/ST-0001/jwks")
    assert response.status_code == 503 and response.get_json()["type"] == PROBLEM + "database-unavailable"
    assert response.headers["Retry-After"] == "5"
    check_against_openapi(SimpleNamespace(status_code=503, headers=response.headers, json=response.get_json),
                          "/api/v1/stations/{station_id}/jwks", "get")

    monkeypatch.setattr(api, "station_keys", lambda _station_id: 1 / 0)
    response = client.get("/api/v1/stations/ST-0001/jwks")
    assert response.status_code == 500 and response.get_json()["type"] == PROBLEM + "internal-error"
