"""The link probe over real HTTP on loopback (SQLite and, with ``TEST_DATABASE_URL``, PostgreSQL), the fault proxy
driving the station's link state through every mode, and ``station status`` reporting it."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner
from fault_proxy import MODES, FaultProxy
from hypothesis import given, settings
from hypothesis import strategies as hypothesis_strategies
from sync_support import enrolled_station, record_some, server_db
from test_server_ingest import check_against_openapi, problem_type

import station.sync as sync_module
from station import cli as station_cli
from station.link import LINK_SETTINGS, link_status
from station.protocol import heads, probes
from station.protocol.tokens import Signer, b64url, b64url_decode, generate_signing_key, public_jwk
from station.rotation import rotate_key
from station.scheduler import JOB_ID, PROBE_JOB_ID, ProbeJob, start_scheduler, sync_now
from station.sync import ServerUnreachable, SyncRefused, probe, sync_once
from sync_server.admin import revoke_station
from sync_server.db import Station as ServerStation
from sync_server.openapi import openapi_document

PATH = "/api/v1/stations/{station_id}/probe"


def post_probe(server, station_id: str, body) -> requests.Response:
    response = requests.post(f"{server.url}/api/v1/stations/{station_id}/probe", json=body, timeout=10)
    check_against_openapi(response, PATH)
    return response


def signed_probe(signer: Signer, station_id: str = "ST-0001", nonce: str | None = None) -> str:
    return probes.make_probe(signer, station_id=station_id, nonce=nonce or heads.new_nonce(),
                             ts="2026-11-02T23:40:00.000Z")


def state(st) -> tuple[str, str | None]:
    status = link_status(st)
    return status["link"], status["reason"]


# -- the bank's side --------------------------------------------------------------------------------------
def test_a_good_probe_is_answered_signed_for_its_nonce(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    nonce = heads.new_nonce()
    response = post_probe(server, "ST-0001", {"probe": signed_probe(st.signer, nonce=nonce)})
    assert response.status_code == 200
    answer = probes.open_probe_answer(response.json()["answer"], server_signing_jwk=st.config["server"]["signing_jwk"],
                                      station_id="ST-0001", nonce=nonce)
    assert answer.status == "active" and answer.server_time.endswith("Z")
    # The station's own probe: verified, and the link measured from it.
    assert probe(st).status == "active"
    assert state(st) == ("online", None)
    st.close()


def test_refusals_of_the_station_come_before_the_signature(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    stranger = Signer(generate_signing_key())
    unknown = post_probe(server, "ST-0099", {"probe": signed_probe(stranger, "ST-0099")})
    assert unknown.status_code == 404 and problem_type(unknown) == "unknown-station"
    pending = post_probe(server, "ST-0002", {"probe": signed_probe(stranger, "ST-0002")})
    assert pending.status_code == 403 and problem_type(pending) == "station-not-enrolled"

    server_db()
    ServerStation.update(flagged=True, flag_reason="a fork at seq 3").where(
        ServerStation.station_id == "ST-0001").execute()
    flagged = post_probe(server, "ST-0001", {"probe": signed_probe(stranger)})
    assert flagged.status_code == 409 and problem_type(flagged) == "station-flagged"
    with pytest.raises(SyncRefused, match="flagged") as refused:
        probe(st)
    assert refused.value.reason == "flagged" and link_status(st)["last_failure_reason"] == "http_4xx"

    ServerStation.update(flagged=False, flag_reason=None).where(ServerStation.station_id == "ST-0001").execute()
    assert probe(st).status == "active"
    revoke_station("ST-0001", reason="stolen", by="test")
    revoked = post_probe(server, "ST-0001", {"probe": signed_probe(stranger)})
    assert revoked.status_code == 403 and problem_type(revoked) == "station-revoked"
    assert revoked.json()["revoked_at"]
    with pytest.raises(SyncRefused, match="revoked") as refused:
        probe(st)
    assert refused.value.reason == "revoked"
    assert state(st) == ("offline", "revoked")
    assert st.setting("revoked")["detail"].startswith("The bank has revoked station ST-0001")
    st.close()


def test_a_probe_not_signed_with_the_current_key_is_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    good = signed_probe(st.signer)
    header, payload, signature = good.split(".")
    stranger = Signer(generate_signing_key())
    forged_signature = signed_probe(stranger).split(".")[2]
    tampered_payload = json.loads(b64url_decode(payload))
    tampered_payload["nonce"] = heads.new_nonce()
    tampered = b64url(json.dumps(tampered_payload, separators=(",", ":"), sort_keys=True).encode())
    for token, why in [
        (signed_probe(stranger), "another key"),
        (f"{header}.{payload}.{forged_signature}", "the station's kid, another key's signature"),
        (f"{header}.{tampered}.{signature}", "the payload changed after signing"),
        (f"{header}.{payload}.{signature[:-4]}AAAA", "the signature changed"),
    ]:
        refused = post_probe(server, "ST-0001", {"probe": token})
        assert refused.status_code == 401 and problem_type(refused) == "bad-signature", why
    assert post_probe(server, "ST-0001", {"probe": good}).status_code == 200
    st.close()


@pytest.mark.parametrize("body", [
    None, [], "probe", {}, {"probe": None}, {"probe": 7}, {"probe": "not.a.jws"}, {"probe": "a.b"},
    {"probe": "x" * 5000}, {"probe": "é.é.é"},
])
def test_malformed_probes_are_refused_never_a_500(server, body):
    response = post_probe(server, "ST-0001", body)
    assert response.status_code == 400 and problem_type(response) == "malformed-request", body


def test_a_probe_with_other_fields_is_malformed(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    base = {"v": 1, "typ": "probe", "station": "ST-0001", "nonce": heads.new_nonce(), "ts": "now"}
    for changed in ({"station": "ST-0002"}, {"typ": "station-head"}, {"v": 2}, {"nonce": "short"},
                    {"ts": 5}, {"extra": 1}, {"ts": "\x00"}):
        token = st.signer.sign({**base, **changed})
        response = post_probe(server, "ST-0001", {"probe": token})
        assert response.status_code == 400 and problem_type(response) == "malformed-request", changed
    st.close()


def test_a_rotated_key_probes_once_the_bank_has_the_rotation(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    old_kid = st.signer.kid
    rotate_key(st, "scheduled")
    assert st.signer.kid != old_kid
    # The rotation is not acknowledged yet: the probe is signed with the key the bank knows.
    assert probe(st).status == "active"
    refused = post_probe(server, "ST-0001", {"probe": signed_probe(st.signer)})
    assert refused.status_code == 401 and old_kid in refused.json()["detail"]
    sync_once(st)
    assert probe(st).status == "active"
    assert post_probe(server, "ST-0001", {"probe": signed_probe(st.signer)}).status_code == 200
    st.close()


# -- the station's side: answers that are not the bank's for this probe ------------------------------------
class Answering:
    """An HTTP client whose every POST gets ``response`` (an old answer replayed, or a tampered one)."""

    def __init__(self, response: requests.Response):
        self.response = response

    def post(self, url, **kwargs):
        return self.response


def test_an_answer_for_another_probe_or_tampered_is_refused(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    old = requests.post(f"{server.url}/api/v1/stations/ST-0001/probe",
                        json={"probe": signed_probe(st.signer)}, timeout=10)
    assert old.status_code == 200
    with pytest.raises(SyncRefused, match="another request") as refused:
        probe(st, http=Answering(old))
    assert refused.value.reason == "bad_answer" and state(st) == ("degraded", "bad_answer")

    header, payload, signature = old.json()["answer"].split(".")
    body = json.loads(b64url_decode(payload))
    body["status"] = "revoked"
    tampered = requests.Response()
    tampered.status_code = 200
    tampered._content = json.dumps({"answer": ".".join([header, b64url(json.dumps(body).encode()), signature])
                                    }).encode()
    with pytest.raises(SyncRefused, match="does not verify"):
        probe(st, http=Answering(tampered))
    not_json = requests.Response()
    not_json.status_code, not_json._content = 200, b"<html>captive portal</html>"
    with pytest.raises(SyncRefused, match="not the bank's"):
        probe(st, http=Answering(not_json))
    assert state(st) == ("offline", "bad_answer") and link_status(st)["last_failure_reason"] == "bad_answer"

    other_key = public_jwk(generate_signing_key())
    with pytest.raises(probes.BadProbeAnswer, match="does not verify"):
        probes.open_probe_answer(old.json()["answer"], server_signing_jwk=other_key, station_id="ST-0001",
                                 nonce="x" * 32)
    assert probe(st).status == "active" and state(st) == ("online", None)
    st.close()


# -- the fault proxy drives the link state ------------------------------------------------------------------
#: The station's side of the link (the proxy, the status, the jobs) is the same whatever the bank's database: these
#: run against a SQLite bank only; the probe's bank side above runs on both.
STATION_SIDE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@STATION_SIDE
def test_the_fault_proxy_drives_the_link_through_every_mode(server, tmp_path, clock, monkeypatch):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    st.config["link"] = {"slow_ms": 600}
    seen = set()
    with FaultProxy.to_url(server.url) as proxy:
        st.config["server"]["url"] = proxy.url
        assert probe(st).status == "active" and state(st) == ("online", None)
        seen.add(proxy.mode)

        proxy.set_mode("slow", delay_ms=800)
        assert probe(st).status == "active"
        assert state(st) == ("degraded", "slow") and link_status(st)["latency_ms"] >= 800
        seen.add(proxy.mode)

        monkeypatch.setattr(sync_module, "PROBE_TIMEOUT", (2.0, 0.3))  # the delay is past the read timeout
        with pytest.raises(ServerUnreachable) as failed:
            probe(st)
        assert failed.value.reason == "timeout" and state(st) == ("degraded", "timeout")

        monkeypatch.undo()
        proxy.set_mode("reset")
        with pytest.raises(ServerUnreachable) as failed:
            probe(st)
        assert failed.value.reason == "reset" and state(st) == ("offline", "reset")
        seen.add(proxy.mode)

        proxy.set_mode("http500")
        with pytest.raises(SyncRefused) as failed:
            probe(st)
        assert failed.value.reason == "http_5xx" and state(st) == ("offline", "http_5xx")
        record_some(st, 1)
        with pytest.raises(SyncRefused):
            sync_once(st, attempts=1)
        assert st.setting("last_sync_failure")["reason"] == "http_5xx"
        seen.add(proxy.mode)

        proxy.set_mode("down")
        with pytest.raises(ServerUnreachable) as failed:
            sync_once(st, attempts=1)
        assert failed.value.reason == "refused" and state(st) == ("offline", "refused")
        assert st.setting("last_sync_failure")["reason"] == "refused"
        seen.add(proxy.mode)

        proxy.set_mode("pass")
        assert probe(st).status == "active" and state(st) == ("online", None)
        assert sync_once(st).pending == 0
    assert seen == set(MODES)
    st.close()


def test_the_proxy_refuses_an_unknown_mode_and_a_slow_mode_without_delay():
    proxy = FaultProxy(("127.0.0.1", 9))
    with pytest.raises(ValueError, match="mode is one of"):
        proxy.set_mode("flaky")
    with pytest.raises(ValueError, match="delay_ms"):
        proxy.set_mode("slow")


# -- station status -----------------------------------------------------------------------------------------
@STATION_SIDE
def test_station_status_reports_the_link_and_the_oldest_waiting_entry(server, tmp_path, clock, monkeypatch):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 2)
    clock.advance(minutes=10)
    # The CLI opens the station with the real clock: give it this test's clock.
    monkeypatch.setattr(station_cli, "open_station", lambda data_dir: sync_module.Station(data_dir, clock=clock))
    with FaultProxy.to_url(server.url) as proxy:
        st.config["server"]["url"] = proxy.url
        st.update_config("server", st.config["server"])
        proxy.set_mode("down")
        with pytest.raises(ServerUnreachable):
            sync_once(st, attempts=1)
        data_dir = str(st.data_dir)
        status = json.loads(CliRunner().invoke(station_cli.cli, ["status", "--json", "--data-dir", data_dir]).output)
        assert (status["link"], status["link_reason"]) == ("offline", "refused")
        assert status["last_success_at"] == "2026-11-02T23:40:00.000Z"
        assert (status["last_failure_at"], status["last_failure_reason"]) == ("2026-11-02T23:50:00.000Z", "refused")
        assert (status["last_sync_failed_at"], status["last_sync_failure_reason"]) == (
            "2026-11-02T23:50:00.000Z", "refused")
        assert status["pending_entries"] > 0 and status["oldest_waiting_seconds"] == 600
        assert status["oldest_waiting_at"] == "2026-11-02T23:40:00.000Z"
        words = CliRunner().invoke(station_cli.cli, ["status", "--data-dir", data_dir]).output
        assert "Link: OFFLINE (connection refused); last answer from the bank 2026-11-02T23:40:00.000Z" in words
        assert "the last sync FAILED at 2026-11-02T23:50:00.000Z (connection refused)" in words
        assert "Oldest entry waiting: 10 min" in words

        proxy.set_mode("pass")
        sync_once(st)
        status = json.loads(CliRunner().invoke(station_cli.cli, ["status", "--json", "--data-dir", data_dir]).output)
        assert (status["link"], status["link_reason"], status["pending_entries"]) == ("online", None, 0)
        assert status["oldest_waiting_seconds"] is None and status["last_success_at"] == "2026-11-02T23:50:00.000Z"
        words = CliRunner().invoke(station_cli.cli, ["status", "--data-dir", data_dir]).output
        assert "Link: ONLINE; last answer" in words and "FAILED" not in words and "Oldest entry waiting: none" in words
    st.close()


# -- station serve's jobs -------------------------------------------------------------------------------------
@STATION_SIDE
def test_the_probe_job_probes_only_when_nothing_else_measured_the_link(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)  # its first sync measured the link just now
    job = ProbeJob(st)
    with FaultProxy.to_url(server.url) as proxy:
        st.config["server"]["url"] = proxy.url
        proxy.set_mode("down")
        job()
        assert state(st) == ("online", None), "not due: the sync answered within probe_seconds"
        clock.advance(seconds=LINK_SETTINGS["probe_seconds"][0])
        job()
        assert state(st) == ("offline", "refused")
        proxy.set_mode("pass")
        job()
        assert state(st) == ("offline", "refused"), "the failed probe was a request within probe_seconds"
        clock.advance(seconds=LINK_SETTINGS["probe_seconds"][0])
        job()
        assert state(st) == ("online", None)
    st.close()


@STATION_SIDE
def test_sync_now_waits_for_the_outcome_of_the_run_it_asked_for(server, tmp_path, clock, slow_bank):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 1)
    scheduler = start_scheduler(st, {"SYNC_INTERVAL_SECONDS": 3600})
    try:
        assert {job.id for job in scheduler.get_jobs()} == {JOB_ID, PROBE_JOB_ID}
        probe_job = scheduler.get_job(PROBE_JOB_ID)
        assert probe_job.max_instances == 1 and probe_job.coalesce and probe_job.misfire_grace_time >= 30
        assert probe_job.trigger.interval.total_seconds() == LINK_SETTINGS["probe_seconds"][0]
        outcome = sync_now(scheduler, wait=20)
        assert outcome.ok and outcome.result.pending == 0 and outcome.reason is None
        with FaultProxy.to_url(server.url) as proxy:
            st.config["server"]["url"] = proxy.url
            proxy.set_mode("down")
            record_some(st, 1)
            outcome = sync_now(scheduler, wait=20)
            assert not outcome.ok and outcome.reason == "refused" and "Cannot reach" in outcome.message
            # At once, before the proxy stops (which can take a while): the failed run's retry, 1 s later at the
            # earliest, must go to the slow bank too, not to the proxy's closed port.
            url, release = slow_bank
            st.config["server"]["url"] = url
        assert sync_now(scheduler, wait=0.3) is None, "still running: the bank has not answered"
        run = scheduler.sync_job.started
        release.set()
        outcome = scheduler.sync_job.wait_for(run, 20)
        assert not outcome.ok and outcome.reason == "http_5xx"
    finally:
        scheduler.shutdown(wait=True)
    st.close()


JSON = hypothesis_strategies.recursive(
    hypothesis_strategies.none() | hypothesis_strategies.booleans() | hypothesis_strategies.integers()
    | hypothesis_strategies.floats(allow_nan=False) | hypothesis_strategies.text(max_size=40),
    lambda children: hypothesis_strategies.lists(children, max_size=4)
    | hypothesis_strategies.dictionaries(hypothesis_strategies.text(max_size=10), children, max_size=4),
    max_leaves=12)
PROBE_FIELDS = hypothesis_strategies.sampled_from(["v", "typ", "station", "nonce", "ts", "extra"])


def test_no_probe_makes_the_bank_fail(server, tmp_path, clock):
    """Whatever the body, or whatever payload the station's own key signs, the bank answers with a documented
    status: never a 500."""
    station = enrolled_station(server, tmp_path, "ST-0001", clock)
    documented = set(openapi_document()["paths"][PATH]["post"]["responses"]) - {"500"}
    client = server.app.test_client()

    @settings(max_examples=150, deadline=None)
    @given(body=JSON, payload=hypothesis_strategies.dictionaries(PROBE_FIELDS, JSON, max_size=6),
           signed=hypothesis_strategies.booleans())
    def check(body, payload, signed):
        if signed:
            body = {"probe": station.signer.sign({"v": 1, "typ": "probe", "station": "ST-0001", **payload})}
        response = client.post("/api/v1/stations/ST-0001/probe", json=body)
        assert str(response.status_code) in documented, (response.status_code, response.get_data(as_text=True))

    check()
    station.close()
