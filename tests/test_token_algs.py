"""Both names of the signature verify: ``Ed25519`` (RFC 9864, what the kit writes) and ``EdDSA`` (older producers),
with joserfc (the kit's own verifiers) and with jwcrypto (a stranger's), from the keys as published, and from keys
published by older releases with ``"alg": "Ed25519"`` in them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from joserfc import jws as joserfc_jws
from joserfc.jwk import KeySet
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from station import agents, business_day
from station.cli import cli
from station.demo import DEMO_AGENTS
from station.journal import audit_journal, journal_head
from station.protocol import acks, key_codecs
from station.protocol.tokens import (
    Signer,
    TokenError,
    b64url_decode,
    canonical_json,
    chain_hash,
    generate_signing_key,
    genesis_prev,
    jws_registry,
    key_id,
    public_jwk,
    verification_jwk,
    verification_key,
    verify_chain,
    verify_token,
)

ALGS = ["Ed25519", "EdDSA"]


def signed(key, alg: str, payload: dict) -> str:
    header = {"alg": alg, "kid": key_id(key)}
    return joserfc_jws.serialize_compact(header, canonical_json(payload), key, registry=jws_registry(4096))


def old_release_jwk(key) -> dict:
    """A public key as releases before this one published it (enrollment, start entry, jwks.json)."""
    return {**public_jwk(key), "alg": "Ed25519"}


def jwcrypto_payload(token: str, jwk: dict) -> dict:
    verifier = jwcrypto_jws.JWS()
    verifier.deserialize(token)
    verifier.allowed_algs = ALGS
    verifier.verify(jwcrypto_jwk.JWK(**jwk))
    return json.loads(verifier.payload)


def test_published_key_names_no_algorithm():
    jwk = public_jwk(generate_signing_key())
    assert "alg" not in jwk
    assert {"kty", "crv", "x", "kid", "use"} == set(jwk)
    assert verification_jwk(old_release_jwk(generate_signing_key())).keys() == jwk.keys()


@pytest.mark.parametrize("alg", ALGS)
def test_both_headers_verify_with_joserfc_and_jwcrypto(alg):
    key = generate_signing_key()
    token = signed(key, alg, {"seq": 1, "amount": 100})
    jwk = public_jwk(key)
    assert verify_token(token, KeySet.import_key_set({"keys": [jwk]})) == {"seq": 1, "amount": 100}
    assert verify_token(token, verification_key(jwk)) == {"seq": 1, "amount": 100}
    assert verify_token(token, verification_key(old_release_jwk(key))) == {"seq": 1, "amount": 100}
    assert jwcrypto_payload(token, jwk) == {"seq": 1, "amount": 100}


def test_an_old_release_journal_still_verifies_with_the_key_its_start_entry_carries():
    key = generate_signing_key()
    signer = Signer(key)
    start = signer.sign({"v": 1, "station": "ST-0001", "seq": 1, "type": "start", "prev": genesis_prev("ST-0001"),
                         "jwk": old_release_jwk(key), "software": "station-kit"})
    second = signer.sign({"v": 1, "station": "ST-0001", "seq": 2, "type": "day_open", "prev": chain_hash(start)})
    start_jwk = verify_token(start, verification_key(old_release_jwk(key)))["jwk"]
    assert start_jwk["alg"] == "Ed25519"
    assert verify_chain([(1, start), (2, second)], verification_key(start_jwk), "ST-0001") is None
    assert jwcrypto_payload(second, start_jwk)["seq"] == 2


def test_a_wrong_key_is_refused_under_either_name():
    for alg in ALGS:
        token = signed(generate_signing_key(), alg, {"seq": 1})
        with pytest.raises(TokenError):
            verify_token(token, verification_key(public_jwk(generate_signing_key())))


def test_verify_journal_accepts_entries_signed_under_the_name_eddsa(station, monkeypatch):
    monkeypatch.setitem(station.signer._header, "alg", "EdDSA")
    agent_id, _, _, pin = DEMO_AGENTS[0]
    business_day.open_day(station, agents.login_agent(station, agent_id, pin), {"10000": 10})
    head_seq, head_token = journal_head(station)
    assert json.loads(b64url_decode(head_token.split(".")[0]))["alg"] == "EdDSA"
    assert (audit_journal(station).entries, audit_journal(station).problems) == (head_seq, [])
    result = CliRunner().invoke(cli, ["verify-journal", "--data-dir", str(station.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["entries"] == head_seq


def test_an_ack_signed_as_eddsa_opens_with_a_server_key_pinned_with_alg():
    server_signer = Signer(generate_signing_key())
    server_signer._header["alg"] = "EdDSA"
    station_key = key_codecs.generate_encryption_key()
    answer = acks.make_ack(signer=server_signer, station_id="ST-0001", first=1, last=1, acked_through=1, head="h",
                           rejected={}, server_time="2026-11-02T00:00:00.000Z", downlink={},
                           station_encryption_key=station_key.public_key())
    ack = acks.open_ack(answer, server_signing_jwk=old_release_jwk(server_signer.key), station_id="ST-0001",
                        station_encryption_key=station_key)
    assert ack.acked_through == 1
