"""Someone in the path between station and bank (issue 13): a signed answer replayed to another request, a signed
downlink older than the one applied, and unsigned refusals forged to move the station back or stop it.

The ack names the request it answers (the digest of the sealed batch) and a downlink version that only increases
per station; the station refuses an ack for another request and ignores an older downlink. An unsigned refusal
(``gap``, ``station-revoked``) changes nothing unless the bank's signed head, asked for a fresh nonce, says the same.
Each case over real HTTP against the real server, on SQLite and on PostgreSQL (``TEST_DATABASE_URL``)."""

from __future__ import annotations

import json

import pytest
import requests
from sync_support import append_only_lifted, enrolled_station, record_some, server_db

from station.db import Customer
from station.device_state import DeviceState, device_state
from station.protocol import acks, envelope
from station.protocol.tokens import b64url, verify_token
from station.sync import SyncRefused, apply_ack, open_answer, sync_once
from sync_server.db import Customer as BankCustomer
from sync_server.db import Entry, Hold, Posting
from sync_server.db import Station as BankStation

ACCOUNT = "DM00010003"  # home only at ST-0001: its hold there is 1,000 yuan


def answer_response(body: dict, status: int = 200, content_type: str = "application/json") -> requests.Response:
    """An HTTP answer made up in the path, as ``requests`` hands it to the station."""
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = content_type
    response.encoding = "utf-8"
    return response


class InThePath(requests.Session):
    """Passes everything to the bank, except that ``answer(body, real)`` may replace the answer to a batch
    (``real``: what the bank answered, or None when the batch is not passed on)."""

    def __init__(self, answer=None, *, pass_batches: bool = True):
        super().__init__()
        self.answer = answer
        self.pass_batches = pass_batches
        self.batches: list[bytes] = []
        self.answers: list[dict] = []
        self.heads = 0

    def post(self, url, data=None, **kwargs):
        if not url.endswith("/batches"):
            return super().post(url, data=data, **kwargs)
        self.batches.append(data)
        real = super().post(url, data=data, **kwargs) if self.pass_batches else None
        if real is not None and real.status_code == 200:
            self.answers.append(real.json())
        return real if self.answer is None else self.answer(data, real)

    def get(self, url, **kwargs):
        if url.endswith("/head"):
            self.heads += 1
        return super().get(url, **kwargs)


def station_view(st) -> dict:
    """What a replayed or forged answer must not change on the station."""
    with st.bound():
        customer = Customer.get(Customer.account_id == ACCOUNT)
        return {"status": customer.status, "allowance_fen": customer.allowance_fen,
                "acked_seq": st.setting("acked_seq"), "downlink_version": st.setting("downlink_version"),
                "last_sync_at": st.setting("last_sync_at"), "revoked": st.setting("revoked")}


def close_at_the_bank(account_id: str) -> None:
    server_db()
    BankCustomer.update(status="closed").where(BankCustomer.account_id == account_id).execute()


def bank_signer(server):
    return server.app.extensions["server_keys"].signer


@pytest.fixture
def closed_after_an_answer(server, tmp_path, clock):
    """A station whose heartbeat answer (a full downlink: customer active, allowance 1,000 yuan) was kept by someone
    in the path, then the bank closed the customer and the station synced: (station, the kept answer)."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    st.delete_setting("downlink_version")  # the station asks for everything (as after a restore)
    path = InThePath()
    sync_once(st, http=path)
    kept = path.answers[-1]
    with st.bound():
        assert ACCOUNT in {customer["account_id"] for customer in open_answer(st, kept).downlink["customers"]}
    assert station_view(st)["status"] == "active" and station_view(st)["allowance_fen"] == 100_000
    close_at_the_bank(ACCOUNT)
    sync_once(st)
    view = station_view(st)
    assert view["status"] == "closed" and view["allowance_fen"] == 0
    assert Hold.get((Hold.station_id == "ST-0001") & (Hold.account_id == ACCOUNT)).amount_fen == 0
    return st, kept


def test_an_old_signed_answer_replayed_to_a_new_request_is_refused_and_changes_nothing(closed_after_an_answer,
                                                                                       server):
    st, kept = closed_after_an_answer
    before = station_view(st)
    replay = InThePath(lambda body, real: answer_response(kept), pass_batches=False)
    with pytest.raises(SyncRefused, match="answers another request") as refused:
        sync_once(st, http=replay, sleep=lambda seconds: None)
    assert refused.value.reason == "bad_answer"
    # At most a retry: the batch was sent again (the sync's 3 attempts), and the old answer refused each time.
    assert len(replay.batches) == 3
    assert verify_token(kept["ack"], bank_signer(server).key)["request"] != acks.request_digest(replay.batches[0])
    # The customer the bank closed stays closed, the allowance is not restored, nothing else moved either.
    assert station_view(st) == before
    # The bank's own answer to the next request is applied as usual.
    sync_once(st)
    assert station_view(st)["downlink_version"] > before["downlink_version"]


def test_applying_an_answer_to_another_request_is_refused_whoever_calls_it(closed_after_an_answer):
    """``apply_ack`` checks the binding itself: a caller that skipped ``answers_request`` still changes nothing."""
    st, kept = closed_after_an_answer
    before = station_view(st)
    with st.bound():
        sealed = envelope_for_next_request(st)
        with pytest.raises(SyncRefused, match="answers another request") as refused:
            apply_ack(st, open_answer(st, kept), sealed)
    assert refused.value.reason == "bad_answer"
    assert station_view(st) == before


def envelope_for_next_request(st):
    """What the station would send next (a heartbeat: nothing is waiting), sealed as it would send it."""
    from station.sync import build_batch, build_heartbeat

    return build_batch(st) or build_heartbeat(st)


def test_an_answer_bound_to_no_request_is_refused(closed_after_an_answer, server):
    """What a bank older than bound acks signs: the station refuses it (the server is upgraded first)."""
    st, kept = closed_after_an_answer
    before = station_view(st)

    def unbound(body, real):
        payload = verify_token(real.json()["ack"], bank_signer(server).key)
        opened = open_answer(st, real.json())
        return answer_response(acks.make_ack(
            signer=bank_signer(server), station_id="ST-0001", first=payload["first"], last=payload["last"],
            acked_through=payload["acked_through"], head=payload["head"], rejected={},
            server_time=payload["server_time"], downlink=opened.downlink,
            station_encryption_key=_station_encryption_public(st)))

    with pytest.raises(SyncRefused, match="not bound to a request"):
        sync_once(st, http=InThePath(unbound), attempts=1)
    assert station_view(st) == before


def _station_encryption_public(st):
    from station.sync import _encryption_key

    return _encryption_key(st).public_key()


@pytest.mark.parametrize("behind", [0, 1])
def test_a_downlink_not_newer_than_the_last_applied_is_ignored(closed_after_an_answer, server, behind):
    """The bank's signature on an answer to this very request, but with an old downlink (the customer active, the
    allowance back) and a version not newer than the applied one: the ack applies, the downlink does not."""
    st, kept = closed_after_an_answer
    with st.bound():
        old_downlink = open_answer(st, kept).downlink
    applied = station_view(st)["downlink_version"]

    def reordered(version):
        def answer(body, real):
            payload = verify_token(real.json()["ack"], bank_signer(server).key)
            return answer_response(acks.make_ack(
                signer=bank_signer(server), station_id="ST-0001", first=payload["first"], last=payload["last"],
                acked_through=payload["acked_through"], head=payload["head"], rejected={},
                server_time=payload["server_time"], downlink=old_downlink,
                station_encryption_key=_station_encryption_public(st), request=acks.request_digest(body),
                downlink_version=version))
        return answer

    sync_once(st, http=InThePath(reordered(applied - behind)))
    view = station_view(st)
    assert (view["status"], view["allowance_fen"], view["downlink_version"]) == ("closed", 0, applied)
    # The same answer with a newer version is applied: the version is what decides.
    sync_once(st, http=InThePath(reordered(applied + 5)))
    view = station_view(st)
    assert (view["status"], view["allowance_fen"], view["downlink_version"]) == ("active", 100_000, applied + 5)


def test_another_stations_signed_answer_is_refused(closed_after_an_answer, server, tmp_path, clock):
    """The bank signs every station's acks with one key: ST-0002's fresh answer, handed to ST-0001's request, names
    another station (and another request); nothing of it is applied."""
    st, _ = closed_after_an_answer
    other = enrolled_station(server, tmp_path / "other", "ST-0002", clock)
    path = InThePath()
    sync_once(other, http=path)
    theirs = path.answers[-1]
    before = station_view(st)
    with pytest.raises(SyncRefused, match="not for this station") as refused:
        sync_once(st, http=InThePath(lambda body, real: answer_response(theirs)), attempts=1)
    assert refused.value.reason == "bad_answer" and station_view(st) == before


def test_a_signed_ack_of_a_version_no_batch_can_name_back_is_refused(closed_after_an_answer, server):
    """A version past what the station may name in its next batch (downlink_applied, at most 2^53 - 1) would make
    every later batch unsealable: the ack is refused and nothing of it applied."""
    st, _ = closed_after_an_answer
    before = station_view(st)

    def too_new(body, real):
        payload = verify_token(real.json()["ack"], bank_signer(server).key)
        return answer_response(acks.make_ack(
            signer=bank_signer(server), station_id="ST-0001", first=payload["first"], last=payload["last"],
            acked_through=payload["acked_through"], head=payload["head"], rejected={},
            server_time=payload["server_time"], downlink=open_answer(st, real.json()).downlink,
            station_encryption_key=_station_encryption_public(st), request=acks.request_digest(body),
            downlink_version=envelope.MAX_DOWNLINK_VERSION + 1))

    with pytest.raises(SyncRefused, match="downlink version") as refused:
        sync_once(st, http=InThePath(too_new), attempts=1)
    assert refused.value.reason == "bad_answer" and station_view(st) == before
    assert sync_once(st).pending == 0


@pytest.mark.parametrize("applied", [envelope.MAX_DOWNLINK_VERSION - 1, envelope.MAX_DOWNLINK_VERSION])
def test_a_station_at_the_last_downlink_version_keeps_syncing(server, tmp_path, clock, applied):
    """The bank never signs a version past the last one a batch may name (once it did: the station's next batch
    failed to seal, a ValueError at every sync from then on)."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    with st.write():
        st.set_setting("downlink_version", applied)
    for _ in range(3):
        record_some(st, 1)
        assert sync_once(st).pending == 0
        assert st.setting("downlink_version") == envelope.MAX_DOWNLINK_VERSION


def test_a_forged_unsigned_gap_does_not_move_acked_seq(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    sync_once(st)
    before = station_view(st)
    assert before["acked_seq"] >= 1
    gap = {"type": "urn:station-kit:problem:gap", "title": "gap", "status": 409, "detail": "send from 1",
           "expected_first": 1}
    path = InThePath(lambda body, real: answer_response(gap, 409, "application/problem+json"), pass_batches=False)
    with pytest.raises(SyncRefused, match="gap"):
        sync_once(st, http=path, sleep=lambda seconds: None)
    # The station asked the bank's signed head, which holds everything the station believes: nothing moved.
    assert path.heads == 1 and len(path.batches) == 1
    assert station_view(st) == before
    sync_once(st)
    assert station_view(st)["acked_seq"] == before["acked_seq"]


def test_a_forged_unsigned_revocation_does_not_stop_the_counter(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    revoked = {"type": "urn:station-kit:problem:station-revoked", "title": "The station is revoked", "status": 403,
               "detail": "The bank has revoked station ST-0001."}
    path = InThePath(lambda body, real: answer_response(revoked, 403, "application/problem+json"),
                     pass_batches=False)
    with pytest.raises(SyncRefused, match="revoked"):
        sync_once(st, http=path)
    assert path.heads == 1
    assert st.setting("revoked") is None
    with st.bound():
        assert device_state(st) != DeviceState.REVOKED


def test_a_gap_whose_signed_head_is_not_this_journal_moves_nothing(server, tmp_path, clock):
    """The bank really holds less (its database went back), but its chain value there is not this journal's: the
    station does not rewind onto another history; the refusal stands and nothing moves."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 2)
    sync_once(st)
    before = station_view(st)
    with append_only_lifted(server_db()):
        Entry.delete().where((Entry.station_id == "ST-0001") & (Entry.seq > 1)).execute()
        Posting.delete().where((Posting.station_id == "ST-0001") & (Posting.seq > 1)).execute()
    BankStation.update(acked_seq=1, head=b64url(bytes(32))).where(BankStation.station_id == "ST-0001").execute()
    record_some(st, 1)
    path = InThePath()
    with pytest.raises(SyncRefused, match="gap"):
        sync_once(st, http=path)
    assert path.heads == 1 and station_view(st)["acked_seq"] == before["acked_seq"]
