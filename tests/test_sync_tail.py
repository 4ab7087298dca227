"""The station's signed tail claim, end to end: the bank keeps the newest, a contradiction is a fork, and recon
finds the entries a station signed for that never arrived (``missing_tail``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from sync_support import enrolled_station, journal, partial_sync, record_some, server_db

from station.protocol import envelope, key_codecs
from station.protocol.tokens import (
    Signer,
    b64url,
    canonical_json,
    chain_hash,
    generate_signing_key,
    genesis_prev,
    public_jwk,
)
from station.sync import _server, sync_once
from sync_server.db import Station as ServerStation
from sync_server.db import StationTail
from sync_server.recon import tail
from sync_server.recon.context import Context, Scope
from sync_server.recon.facts import extract_facts
from sync_server.recon.kinds import Discrepancy

PROBLEM = "urn:station-kit:problem:"
TS = "2026-11-02T23:40:00.000Z"




def claim(st, seq: int, head: str, signer=None) -> str:
    return envelope.make_tail_claim(signer or st.signer, station_id=st.station_id, seq=seq, head=head, ts=TS)


def send(server, st, first: int, last: int, tail_claim: str) -> requests.Response:
    """Entries ``first..last`` of the station's journal with ``tail_claim``, posted as the station would."""
    entries = journal(st)
    prev = chain_hash(entries[first - 2][1]) if first > 1 else genesis_prev(st.station_id)
    sealed = envelope.seal_batch(entries[first - 1:last], station_id=st.station_id, prev=prev, signer=st.signer,
                                 server_encryption_key=key_codecs.encryption_public_from_jwk(
                                     _server(st)["encryption_jwk"]), tail=tail_claim)
    return requests.post(f"{server.url}/api/v1/stations/{st.station_id}/batches", data=sealed.body,
                         headers=sealed.headers, timeout=30)


def stored_tail(station_id: str = "ST-0001") -> tuple[int, str] | None:
    server_db()
    row = StationTail.get_or_none(StationTail.station_id == station_id)
    return (row.seq, row.head) if row else None


def tail_findings(scope: Scope | None = None) -> list[Discrepancy]:
    """``tail.checks`` over a fresh ``recon_fact``, as a recon run calls it."""
    database = server_db()
    with database.atomic():
        context = Context.open(database, scope or Scope(), datetime.now(UTC))
        extract_facts(context)
        found = tail.checks(context)
        database.execute_sql("DROP TABLE IF EXISTS recon_fact")
    return found


def test_every_batch_carries_the_journal_end_and_the_bank_keeps_the_newest(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    assert stored_tail() == (1, chain_hash(journal(st)[0][1]))  # the first sync: the start entry
    record_some(st, 6)
    entries = journal(st)
    end = (len(entries), chain_hash(entries[-1][1]))
    held = partial_sync(st)
    assert held < end[0] and stored_tail() == end
    row = StationTail.get(StationTail.station_id == "ST-0001")
    assert envelope.verify_tail_claim(row.claim, public_jwk(st.signing_key), "ST-0001")["seq"] == end[0]

    # A batch sent again after a lost ack carries an older, true claim: accepted, and the stored one stays.
    response = send(server, st, held, held, claim(st, held, chain_hash(entries[held - 1][1])))
    assert response.status_code == 200, response.text
    assert stored_tail() == end

    sync_once(st)
    assert stored_tail() == end and ServerStation.get_by_id("ST-0001").acked_seq == end[0]
    record_some(st, 1)
    sync_once(st)
    newest = journal(st)[-1]
    assert stored_tail() == (newest[0], chain_hash(newest[1]))


def test_a_station_that_loses_its_link_after_one_batch_leaves_missing_tail_until_the_rest_arrives(
        server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    enrolled_station(server, tmp_path, "ST-0002", clock)
    record_some(st, 6)
    claimed = len(journal(st))
    held = partial_sync(st)
    assert tail_findings() == [Discrepancy("missing_tail", station="ST-0001", seq=held + 1)]
    assert tail_findings()[0].detail == {"claimed": claimed, "held": held, "missing": claimed - held}
    assert tail_findings(Scope(stations=("ST-0002",))) == []
    assert tail_findings(Scope(stations=("ST-0001",))) == [Discrepancy("missing_tail", station="ST-0001",
                                                                       seq=held + 1)]
    sync_once(st)
    assert tail_findings() == []


def test_recon_trusts_the_signed_claim_not_the_columns_beside_it(server, tmp_path, clock):
    """An insider lowers the stored seq to hide what is missing: the claim still says how far the journal reaches."""
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 4)
    claimed = len(journal(st))
    held = partial_sync(st)
    StationTail.update(seq=held, head=chain_hash(journal(st)[held - 1][1])).where(
        StationTail.station_id == "ST-0001").execute()
    found = tail_findings()
    assert found == [Discrepancy("missing_tail", station="ST-0001", seq=held + 1)]
    assert found[0].detail["claimed"] == claimed


def _contradiction(server, st, case: str):
    """Bring the bank to where a tail claim can contradict its chain in one of three ways: returns the seq of the
    contradiction and a function that sends the contradicting batch."""
    entries = journal(st)
    end = len(entries)
    if case == "another entry at a seq the bank holds":
        sync_once(st)
        return end - 1, lambda: send(server, st, end, end, claim(st, end - 1, chain_hash(entries[end - 1][1])))
    held = partial_sync(st)
    if case == "two journal ends at one seq":
        return end, lambda: send(server, st, held + 1, held + 1, claim(st, end, chain_hash(entries[held][1])))
    # The bank keeps the station's signed claim that entry 5 has another chain value (as when the station signed
    # for its journal, then was restored from a backup and wrote a different entry 5); now entry 5 arrives.
    other = chain_hash("another entry 5")
    StationTail.update(seq=5, head=other, claim=claim(st, 5, other)).where(
        StationTail.station_id == "ST-0001").execute()
    return 5, lambda: send(server, st, held + 1, end, claim(st, end, chain_hash(entries[-1][1])))


@pytest.mark.parametrize("case", ["another entry at a seq the bank holds", "two journal ends at one seq",
                                  "the entry at an earlier end differs"])
def test_a_tail_claim_that_contradicts_the_chain_is_a_fork_refused_and_flagged(server, tmp_path, clock, case):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 6)
    seq, send_contradiction = _contradiction(server, st, case)
    acked_before, tail_before = ServerStation.get_by_id("ST-0001").acked_seq, stored_tail()
    response = send_contradiction()
    assert response.status_code == 409 and response.json()["type"] == PROBLEM + "fork", response.text
    assert response.json()["seq"] == seq
    server_db()
    station = ServerStation.get_by_id("ST-0001")
    assert station.flagged and station.flag_reason.startswith(f"fork at seq {seq}: ")
    assert station.acked_seq == acked_before and stored_tail() == tail_before  # nothing of the batch was applied


def test_recon_finds_a_stored_claim_that_contradicts_the_held_chain_as_a_fork(server, tmp_path, clock):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 3)
    sync_once(st)
    entries = journal(st)
    forged = claim(st, 3, chain_hash(entries[3][1]))  # seq 3 with entry 4's chain value, signed by the station
    server_db()
    StationTail.update(seq=3, head=chain_hash(entries[3][1]), claim=forged).where(
        StationTail.station_id == "ST-0001").execute()
    found = tail_findings()
    assert found == [Discrepancy("fork", station="ST-0001", seq=3)]
    assert found[0].detail["reason"] == tail.FORK_REASON


@pytest.mark.parametrize("change", ["seq raised in the payload", "signed by another key", "not a JWS"])
def test_a_stored_claim_that_no_longer_verifies_is_a_bad_signature_at_the_claimed_seq(
        server, tmp_path, clock, change):
    st = enrolled_station(server, tmp_path, "ST-0001", clock)
    record_some(st, 3)
    held = partial_sync(st)
    row = StationTail.get_by_id("ST-0001")
    header, payload, signature = row.claim.split(".")
    if change == "seq raised in the payload":
        raised = {"v": 1, "station": "ST-0001", "seq": row.seq + 100, "head": row.head, "ts": TS}
        altered, seq = f"{header}.{b64url(canonical_json(raised))}.{signature}", row.seq + 100
    elif change == "signed by another key":
        altered, seq = claim(st, row.seq, row.head, signer=Signer(generate_signing_key())), row.seq
    else:
        altered, seq = "altered", row.seq
    StationTail.update(claim=altered).where(StationTail.station_id == "ST-0001").execute()
    found = tail_findings()
    assert found == [Discrepancy("bad_signature", station="ST-0001", seq=seq)]
    assert found[0].detail["what"] == "tail_claim" and held < row.seq
