"""The sync envelope on its own (pure code): round trips, the compact entry form, and refusals."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from station.journal import iter_entries
from station.protocol import acks, compact, envelope, envelope_errors, key_codecs, sealing
from station.protocol.times import utc_text
from station.protocol.tokens import Signer, chain_hash, generate_signing_key, genesis_prev, public_jwk


@pytest.fixture
def server_key():
    return key_codecs.generate_encryption_key()


@pytest.fixture
def journal(station):
    return list(iter_entries(station))


def seal(station, entries, server_key, prev=None, signer=None):
    return envelope.seal_batch(entries, station_id=station.station_id, prev=prev or genesis_prev(station.station_id),
                              signer=signer or station.signer, server_encryption_key=server_key.public_key())


def open_(station, sealed, server_key, **overrides):
    args = dict(station_id=sealed.station_id, first=sealed.first, last=sealed.last, server_encryption_key=server_key,
                station_signing_jwk=public_jwk(station.signing_key))
    args.update(overrides)
    return envelope.open_batch(sealed.body, **args)


def test_round_trip_rebuilds_every_token_exactly(station, journal, server_key):
    sealed = seal(station, journal, server_key)
    batch = open_(station, sealed, server_key)
    assert [(e.seq, e.token) for e in batch.entries] == journal
    assert batch.head == chain_hash(journal[-1][1]) and batch.prev == genesis_prev("ST-0001")
    assert sealed.headers["X-Batch-First"] == "1" and sealed.headers["X-Batch-Last"] == str(len(journal))


def test_a_batch_from_the_middle_chains_from_the_given_prev(station, journal, server_key):
    sealed = seal(station, journal[1:], server_key, prev=chain_hash(journal[0][1]))
    assert [e.token for e in open_(station, sealed, server_key).entries] == [t for _, t in journal[1:]]


def _note_after(journal, **changes) -> dict:
    return {"v": 1, "station": "ST-0001", "seq": len(journal) + 1, "type": "note", "ts": "2026-11-02T23:40:00Z",
            "prev": chain_hash(journal[-1][1]), **changes}


def test_a_ts_not_in_the_journal_form_travels_as_text(station, journal, server_key):
    token = station.signer.sign(_note_after(journal))
    sealed = seal(station, [*journal, (len(journal) + 1, token)], server_key)
    assert open_(station, sealed, server_key).entries[-1].token == token


def test_a_non_canonical_token_travels_whole_and_is_placed_with_its_problem(station, journal, server_key):
    """JSON with spaces cannot be rebuilt from its fields: the whole token travels. Its signature and place in the
    chain verify, so the batch opens and the entry carries the problem for the ledger to reject it in the ack."""
    import json

    from joserfc import jws

    from station.protocol.tokens import _registry

    spaced = json.dumps(_note_after(journal)).encode()
    token = jws.serialize_compact({"alg": "Ed25519", "kid": station.signer.kid}, spaced, station.signing_key,
                                  registry=_registry)
    sealed = seal(station, [*journal, (len(journal) + 1, token)], server_key)
    last = open_(station, sealed, server_key).entries[-1]
    assert (last.token, last.payload["type"]) == (token, "note")
    assert "not canonical JSON" in last.form_problem
    assert all(entry.form_problem is None for entry in open_(station, seal(station, journal, server_key),
                                                             server_key).entries)


def test_a_seq_written_as_a_float_is_placed_with_its_problem(station, journal, server_key):
    """``21.0`` is in the right place but not an integer (21.0 == 21 in Python): placed, and marked."""
    token = station.signer.sign(_note_after(journal, seq=float(len(journal) + 1)))
    sealed = seal(station, [*journal, (len(journal) + 1, token)], server_key)
    assert "not an integer" in open_(station, sealed, server_key).entries[-1].form_problem


@pytest.mark.parametrize("seq", [True, "2", 2.5, None])
def test_an_entry_out_of_its_place_is_refused(station, journal, server_key, seq):
    """A seq that is not this entry's place (``true`` is not 1 here) refuses the batch: nothing after it is trusted."""
    token = station.signer.sign(_note_after(journal, seq=seq))
    sealed = seal(station, [*journal, (len(journal) + 1, token)], server_key)
    with pytest.raises(envelope_errors.BadEntry, match="wrong seq") as refused:
        open_(station, sealed, server_key)
    assert refused.value.seq == len(journal) + 1


def test_a_header_with_other_members_is_refused(station, journal, server_key):
    from joserfc import jws

    from station.protocol.tokens import _registry, canonical_json

    payload = canonical_json(_note_after(journal))
    token = jws.serialize_compact({"alg": "Ed25519", "kid": station.signer.kid, "typ": "JWT"}, payload,
                                  station.signing_key, registry=_registry)
    sealed = seal(station, [*journal, (len(journal) + 1, token)], server_key)
    with pytest.raises(envelope_errors.BadEntry, match="other than alg and kid: typ"):
        open_(station, sealed, server_key)


def test_compact_form_is_small(station, server_key):
    from station import agents, business_day, operations, receipts
    from station.db import Customer
    from station.demo import DEMO_AGENTS, DEMO_CUSTOMER_PIN

    agent = agents.login_agent(station, DEMO_AGENTS[0][0], DEMO_AGENTS[0][3])
    business_day.open_day(station, agent, {"10000": 300})
    customer = Customer.select().first()
    auth = agents.authenticate_customer(station, agent, customer, DEMO_CUSTOMER_PIN)
    for _ in range(200):
        operations.deposit_cash(station, agent, auth, 10_000, receipts.new_txn_id())
    entries = list(iter_entries(station))
    sealed = seal(station, entries, server_key)
    plain_zlib = len(zlib.compress("\n".join(t for _, t in entries).encode(), 9))
    assert len(sealed.body) / len(entries) <= 120
    assert len(sealed.body) < plain_zlib * 0.75


@pytest.mark.parametrize("change", ["station", "first", "last"])
def test_station_and_range_are_bound_into_the_encryption(station, journal, server_key, change):
    sealed = seal(station, journal, server_key)
    wrong = {"station": {"station_id": "ST-0002"}, "first": {"first": 2}, "last": {"last": sealed.last - 1}}[change]
    with pytest.raises(envelope_errors.Undecryptable):
        open_(station, sealed, server_key, **wrong)


def test_every_flipped_byte_is_refused(station, journal, server_key):
    sealed = seal(station, journal, server_key)
    for index in range(0, len(sealed.body), max(1, len(sealed.body) // 40)):
        body = bytearray(sealed.body)
        body[index] ^= 0x80
        with pytest.raises(envelope_errors.EnvelopeError):
            envelope.open_batch(bytes(body), station_id="ST-0001", first=sealed.first, last=sealed.last,
                               server_encryption_key=server_key, station_signing_jwk=public_jwk(station.signing_key))


def test_a_batch_signed_by_another_key_is_refused(station, journal, server_key):
    sealed = seal(station, journal, server_key, signer=Signer(generate_signing_key()))
    with pytest.raises(envelope_errors.BadBatchSignature):
        open_(station, sealed, server_key)


def test_wrong_prev_is_refused(station, journal, server_key):
    sealed = seal(station, journal[1:], server_key, prev=genesis_prev("ST-0001"))
    with pytest.raises(envelope_errors.BadEntry) as refused:
        open_(station, sealed, server_key)
    assert refused.value.seq == 2


def test_a_decompression_bomb_is_refused(server_key):
    bomb = zlib.compress(b"\0" * (sealing.MAX_PLAIN_BYTES + 1), 9)
    sealed = sealing.SUITE.encrypt(bomb, server_key.public_key(), info=sealing.batch_info("ST-0001", 1, 1))
    with pytest.raises(envelope_errors.TooLarge):
        envelope.open_batch(sealed, station_id="ST-0001", first=1, last=1, server_encryption_key=server_key,
                           station_signing_jwk=public_jwk(generate_signing_key()))


def test_ack_round_trip_and_a_swapped_downlink(station):
    server_signer = Signer(generate_signing_key())
    station_key = key_codecs.generate_encryption_key()
    common = dict(signer=server_signer, station_id="ST-0001", first=1, last=5, acked_through=5, head="h",
                  rejected={3: "insufficient_funds"}, server_time=utc_text(station.now()),
                  station_encryption_key=station_key.public_key())
    answer = acks.make_ack(downlink={"customers": []}, **common)
    ack = acks.open_ack(answer, server_signing_jwk=public_jwk(server_signer.key), station_id="ST-0001",
                        station_encryption_key=station_key)
    assert ack.rejected == {3: "insufficient_funds"} and ack.downlink == {"customers": []}
    other = acks.make_ack(downlink={"customers": [{"account_id": "X"}]}, **common)
    with pytest.raises(envelope_errors.EnvelopeError, match="downlink does not match"):
        acks.open_ack({"ack": answer["ack"], "downlink": other["downlink"]},
                      server_signing_jwk=public_jwk(server_signer.key), station_id="ST-0001",
                      station_encryption_key=station_key)
    with pytest.raises(envelope_errors.BadBatchSignature):
        acks.open_ack(answer, server_signing_jwk=public_jwk(generate_signing_key()), station_id="ST-0001",
                      station_encryption_key=station_key)


@pytest.mark.parametrize("delta", [10**20, -(10**20)])
def test_an_impossible_time_in_a_compact_entry_is_a_bad_entry_not_a_crash(delta):
    with pytest.raises(envelope_errors.BadEntry, match="impossible time"):
        compact.rebuild_token(["header"], [delta, "withdrawal", None, {}], "ST-0001", 5, "prev", 0, b"s" * 64)


#: Milliseconds since the epoch of 0001-01-01T00:00:00Z and of 10000-01-01T00:00:00Z: what ``utc_text`` can write.
FIRST_MS, END_MS = -62_135_596_800_000, 253_402_300_800_000


@given(st.one_of(st.integers(FIRST_MS - 10**11, END_MS + 10**11), st.integers(1_700_000_000_000, 1_900_000_000_000),
                 st.sampled_from([FIRST_MS - 1, FIRST_MS, END_MS - 1, END_MS, -1, 0])))
def test_a_compact_entry_time_is_utc_text_of_its_millis(millis):
    # The day's date cached, the time of day by arithmetic: the text utc_text writes of that moment, and a moment
    # it cannot write refused as before (the compact entry is then a BadEntry).
    try:
        expected = utc_text(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis))
    except OverflowError:
        with pytest.raises((OverflowError, OSError, ValueError)):
            compact._millis_ts(millis)
    else:
        assert compact._millis_ts(millis) == expected


# -- the tail claim ---------------------------------------------------------------------------------------------
TS = "2026-11-02T23:40:00.000Z"


def tail_of(station, journal, signer=None, **changes) -> str:
    """The station's claim that its journal ends at ``journal``'s last entry (``changes``: other values)."""
    values = {"station_id": station.station_id, "seq": journal[-1][0], "head": chain_hash(journal[-1][1]), "ts": TS}
    values.update(changes)
    return envelope.make_tail_claim(signer or station.signer, **values)


def _claim(header: dict, payload_bytes: bytes, key) -> str:
    """A claim with any header and payload bytes, signed by ``key`` with plain Ed25519 (no JOSE library): what a
    forger, a careless producer or an independent implementation makes."""
    from station.protocol.tokens import b64url, canonical_json

    signing_input = f"{b64url(canonical_json(header))}.{b64url(payload_bytes)}"
    return f"{signing_input}.{b64url(key.private_key.sign(signing_input.encode('ascii')))}"


def test_a_batch_without_a_tail_opens_with_none(station, journal, server_key):
    assert open_(station, seal(station, journal, server_key), server_key).tail is None


def test_a_tail_claim_travels_in_the_signed_body_and_opens_verified(station, journal, server_key):
    """A batch of the first two entries says the journal reaches further: the claim names the journal's end."""
    claim = tail_of(station, journal)
    sealed = envelope.seal_batch(journal[:2], station_id="ST-0001", prev=genesis_prev("ST-0001"),
                                 signer=station.signer, server_encryption_key=server_key.public_key(), tail=claim)
    batch = open_(station, sealed, server_key)
    assert batch.tail == envelope.TailClaim(claim, "ST-0001", len(journal), chain_hash(journal[-1][1]), TS)
    assert [e.seq for e in batch.entries] == [1, 2]
    payload = {"v": 1, "station": "ST-0001", "seq": len(journal), "head": chain_hash(journal[-1][1]), "ts": TS}
    assert envelope.verify_tail_claim(claim, public_jwk(station.signing_key), "ST-0001") == payload
    # Made without joserfc from docs/protocol.md, the claim is the same string, byte for byte.
    from station.protocol.tokens import canonical_json

    header = {"alg": "Ed25519", "kid": station.signer.kid, "typ": "station-kit-tail+jws"}
    assert _claim(header, canonical_json(payload), station.signing_key) == claim


def _forgeries(station, journal):
    """name -> (claim, the refusal's message): every way a claim can be wrong."""
    from station.protocol.tokens import canonical_json

    key, kid = station.signing_key, station.signer.kid
    header = {"alg": "Ed25519", "kid": kid, "typ": envelope.TAIL_TYP}
    payload = {"v": 1, "station": "ST-0001", "seq": len(journal), "head": chain_hash(journal[-1][1]), "ts": TS}
    good = tail_of(station, journal)
    h, p, s = good.split(".")
    altered = b64url_of(canonical_json({**payload, "seq": len(journal) + 500}))
    thief = generate_signing_key()
    return {
        "another key": (tail_of(station, journal, signer=Signer(thief)), "does not name the station's key"),
        "another key, the station's kid": (_claim(header, canonical_json(payload), thief), "does not verify"),
        "seq raised after signing": (f"{h}.{altered}.{s}", "does not verify"),
        "signature of another claim": (f"{h}.{p}.{tail_of(station, journal, seq=1).split('.')[2]}",
                                       "does not verify"),
        "another station": (tail_of(station, journal, station_id="ST-0002"), "for station 'ST-0002'"),
        "no typ": (_claim({"alg": "Ed25519", "kid": kid}, canonical_json(payload), key), "exactly alg, kid and typ"),
        "an entry's typ": (_claim({**header, "typ": "JWT"}, canonical_json(payload), key), "exactly alg, kid and typ"),
        "crit in the header": (_claim({**header, "crit": ["b64"]}, canonical_json(payload), key), "exactly alg"),
        "a member more": (_claim(header, canonical_json({**payload, "acked": 1}), key), "exactly v, station"),
        "no ts": (_claim(header, canonical_json({k: v for k, v in payload.items() if k != "ts"}), key),
                  "exactly v, station"),
        "version 2": (_claim(header, canonical_json({**payload, "v": 2}), key), "version is 2"),
        "seq 0": (tail_of(station, journal, seq=0), "not a positive integer"),
        "seq as text": (tail_of(station, journal, seq="5"), "not a positive integer"),
        "seq true": (tail_of(station, journal, seq=True), "not a positive integer"),
        "seq 5.0": (_claim(header, canonical_json({**payload, "seq": 5.0}), key), "not an integer"),
        "head not a hash": (tail_of(station, journal, head="abc"), "head or ts"),
        "ts without offset": (tail_of(station, journal, ts="2026-11-02T23:40:00"), "head or ts"),
        "spaces in the payload": (_claim(header, json_spaced(payload), key), "not canonical JSON"),
        "padded base64": (f"{h}.{p}=.{s}", "not well-formed"),
        "not three parts": (f"{h}.{p}", "not a compact JWS"),
        "not ASCII": (good + "\u00e9", "not a compact JWS"),
        "too long": (f"{h}.{'A' * 3000}.{s}", "not a compact JWS"),
    }


def b64url_of(data: bytes) -> str:
    from station.protocol.tokens import b64url

    return b64url(data)


def json_spaced(payload: dict) -> bytes:
    import json

    return json.dumps(payload, sort_keys=True).encode()


FORGERIES = ["another key", "another key, the station's kid", "seq raised after signing", "signature of another claim",
             "another station", "no typ", "an entry's typ", "crit in the header", "a member more", "no ts",
             "version 2", "seq 0", "seq as text", "seq true", "seq 5.0", "head not a hash", "ts without offset",
             "spaces in the payload", "padded base64", "not three parts", "not ASCII", "too long"]


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_or_altered_tail_claim_refuses_the_batch(station, journal, server_key, name):
    """A claim is signed data of the batch: one that does not verify refuses the whole batch as a bad signature,
    even though the batch's own signature (over the body holding the bad claim) verifies."""
    forgeries = _forgeries(station, journal)
    assert sorted(forgeries) == sorted(FORGERIES)
    claim, message = forgeries[name]
    sealed = envelope.seal_batch(journal, station_id="ST-0001", prev=genesis_prev("ST-0001"), signer=station.signer,
                                 server_encryption_key=server_key.public_key(), tail=claim)
    with pytest.raises(envelope_errors.BadTailClaim, match=message) as refused:
        open_(station, sealed, server_key)
    assert refused.value.code == "bad-signature"
    with pytest.raises(envelope_errors.BadTailClaim):
        envelope.verify_tail_claim(claim, public_jwk(station.signing_key), "ST-0001")


def test_a_tail_claim_named_eddsa_verifies_as_entries_do(station, journal):
    from station.protocol.tokens import canonical_json

    payload = {"v": 1, "station": "ST-0001", "seq": 3, "head": chain_hash(journal[2][1]), "ts": TS}
    claim = _claim({"alg": "EdDSA", "kid": station.signer.kid, "typ": envelope.TAIL_TYP}, canonical_json(payload),
                   station.signing_key)
    assert envelope.verify_tail_claim(claim, public_jwk(station.signing_key), "ST-0001") == payload


def test_a_tail_that_is_not_text_is_refused_by_the_sealer(station, journal, server_key):
    with pytest.raises(ValueError, match="compact JWS string"):
        envelope.seal_batch(journal, station_id="ST-0001", prev=genesis_prev("ST-0001"), signer=station.signer,
                            server_encryption_key=server_key.public_key(), tail={"seq": 5})


def _sealed_own_meta(station, server_key, meta: dict, signatures: bytes) -> bytes:
    """A batch as a sender that writes its own ``meta`` (not ``seal_batch``) seals it: signed by the station, sealed
    to the server for ST-0001 and the meta's range."""
    import struct

    from station.protocol.tokens import canonical_json

    body_json = canonical_json(meta)
    body = struct.pack(">I", len(body_json)) + body_json + signatures
    signed = envelope._sign_detached(station.signer, body)
    plaintext = envelope.BATCH_MAGIC + struct.pack(">I", len(signed)) + signed.encode("ascii") + body
    return sealing.seal(plaintext, server_key.public_key(),
                        info=sealing.batch_info("ST-0001", meta["first"], meta["last"]), level=9)


@pytest.mark.parametrize("header", ["a.b", "AAAA", "\u00e9"])
def test_an_entry_naming_a_header_that_is_not_one_is_a_bad_entry(station, journal, server_key, header):
    """A sender that writes its own meta: an entry naming a header that is not an entry's (with a dot, which once
    split the rebuilt token wrongly and raised ValueError) is refused as BadEntry, at that entry."""

    from station.protocol.compact import compact_entries

    run = compact_entries(journal, "ST-0001")
    index = max(i for i, item in enumerate(run.items) if isinstance(item, list))
    run.items[index].append(len(run.headers))
    meta = {"v": 1, "station": "ST-0001", "first": 1, "last": len(journal), "prev": genesis_prev("ST-0001"),
            "head": chain_hash(journal[-1][1]), "headers": [*run.headers, header], "entries": run.items}
    sealed = _sealed_own_meta(station, server_key, meta, run.signatures)
    with pytest.raises(envelope_errors.BadEntry, match=f"entry {index + 1}: header: ") as refused:
        envelope.open_batch(sealed, station_id="ST-0001", first=1, last=len(journal), server_encryption_key=server_key,
                            station_signing_jwk=public_jwk(station.signing_key))
    assert refused.value.seq == index + 1


def test_a_tail_that_is_not_text_in_a_signed_body_is_refused(station, journal, server_key):
    """A sender that writes its own meta (not ``seal_batch``) with a tail that is a JSON object."""

    from station.protocol.compact import compact_entries

    run = compact_entries(journal, "ST-0001")
    meta = {"v": 1, "station": "ST-0001", "first": 1, "last": len(journal), "prev": genesis_prev("ST-0001"),
            "head": chain_hash(journal[-1][1]), "headers": run.headers, "entries": run.items, "tail": {"seq": 99}}
    sealed = _sealed_own_meta(station, server_key, meta, run.signatures)
    with pytest.raises(envelope_errors.BadTailClaim, match="not a compact JWS"):
        envelope.open_batch(sealed, station_id="ST-0001", first=1, last=len(journal), server_encryption_key=server_key,
                            station_signing_jwk=public_jwk(station.signing_key))


@pytest.mark.parametrize("applied", [-1, True, 2.0, "3", 2 ** 53, [1]])
def test_a_downlink_version_that_is_not_one_refuses_the_batch(station, journal, server_key, monkeypatch, applied):
    """Signed by the station, but not a version the bank can keep (a tampered sealer): refused, never a 500."""
    with pytest.raises(ValueError, match="downlink_applied"):
        envelope.seal_batch(journal[:2], station_id=station.station_id, prev=genesis_prev(station.station_id),
                            signer=station.signer, server_encryption_key=server_key.public_key(),
                            downlink_applied=applied)
    monkeypatch.setattr(envelope, "_downlink_version", lambda value: True)
    sealed = envelope.seal_batch(journal[:2], station_id=station.station_id, prev=genesis_prev(station.station_id),
                                 signer=station.signer, server_encryption_key=server_key.public_key(),
                                 downlink_applied=applied)
    monkeypatch.undo()
    with pytest.raises(envelope_errors.EnvelopeError, match="downlink_applied") as refused:
        open_(station, sealed, server_key)
    assert refused.value.code == "malformed-batch"


def test_an_ack_names_its_request_and_version_or_neither(station):
    signer = Signer(generate_signing_key())
    encryption = key_codecs.generate_encryption_key()
    common = dict(signer=signer, station_id=station.station_id, first=1, last=1, acked_through=1, head="h",
                  rejected={}, server_time=utc_text(station.now()), downlink={},
                  station_encryption_key=encryption.public_key())
    opened = {}
    for request, version in (("r" * 43, 3), (None, None)):
        answer = acks.make_ack(request=request, downlink_version=version, **common)
        opened[version] = acks.open_ack(answer, server_signing_jwk=public_jwk(signer.key),
                                        station_id=station.station_id, station_encryption_key=encryption)
    assert (opened[3].request, opened[3].downlink_version) == ("r" * 43, 3)
    assert (opened[None].request, opened[None].downlink_version) == (None, None)
    for bad in (0, -2, "4", True):
        answer = acks.make_ack(request="r" * 43, downlink_version=bad, **common)
        with pytest.raises(envelope_errors.EnvelopeError, match="downlink version"):
            acks.open_ack(answer, server_signing_jwk=public_jwk(signer.key), station_id=station.station_id,
                          station_encryption_key=encryption)
