"""The sync wire format is frozen: a batch and an ack made from fixed keys and entries have exactly these bytes.

Ed25519 signatures are deterministic, so everything but the HPKE ciphertext is reproducible: the test unseals what
``seal_batch`` and ``make_ack`` produce and compares the plaintext with digests recorded when the format shipped.
A change here breaks every station in the field; it needs a new ``ENVELOPE_VERSION``, not a new digest.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from joserfc.jwk import OKPKey

from station.protocol import acks, envelope, sealing
from station.protocol.tokens import Signer, b64url, b64url_decode, chain_hash, genesis_prev, public_jwk, verify_token

SIGNING_KEY = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "d": b64url(bytes(range(32))),
                                 "x": "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"})
ENCRYPTION_KEY = X25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
STATION = "ST-0001"
#: Recorded with the last release before the split of ``station/protocol/envelope.py`` (commit 1f1b056).
BATCH_SHA256 = "32465245a2e78265fdbf7c5b33bdad9ec82d10755ddb817ec7d79281473ba1b9"
ACK_PAYLOAD = ('{"acked_through": 40, "first": 1, "head": "h", "last": 40, "rejected": {"7": "malformed_entry"}, '
               '"server_time": "2026-11-02T12:00:00+00:00", "station": "ST-0001", "typ": "ack", "v": 1}')


def _entries() -> list[tuple[int, str]]:
    """Forty chained entries: with and without ``txn``, one with a foreign ``ts``, one a compact entry cannot carry."""
    signer, prev, entries = Signer(SIGNING_KEY), genesis_prev(STATION), []
    for seq in range(1, 41):
        payload = {"v": 1, "station": STATION, "seq": seq, "type": "start" if seq == 1 else "deposit",
                   "ts": f"2026-11-02T10:{seq:02d}:{seq % 60:02d}.{seq * 7 % 1000:03d}Z", "prev": prev,
                   "agent": "A01", "account": "4000-0001", "amount": seq * 100}
        if seq % 3:
            payload["txn"] = f"txn-{seq}"
        if seq == 7:
            payload["ts"] = "2026-11-02 10:07"
        if seq == 8:
            payload["txn"] = None
        token = signer.sign(payload)
        entries.append((seq, token))
        prev = chain_hash(token)
    return entries


def test_a_batch_has_the_bytes_it_had_when_the_format_shipped():
    entries = _entries()
    sealed = envelope.seal_batch(entries, station_id=STATION, prev=genesis_prev(STATION), signer=Signer(SIGNING_KEY),
                                server_encryption_key=ENCRYPTION_KEY.public_key())
    plaintext = zlib.decompress(sealing.SUITE.decrypt(sealed.body, ENCRYPTION_KEY,
                                                      info=b"station-kit/batch/v1|ST-0001|1|40"))
    assert plaintext[:4] == b"SKB1"
    assert hashlib.sha256(plaintext).hexdigest() == BATCH_SHA256
    opened = envelope.open_batch(sealed.body, station_id=STATION, first=1, last=40,
                                 server_encryption_key=ENCRYPTION_KEY, station_signing_jwk=public_jwk(SIGNING_KEY))
    assert [entry.token for entry in opened.entries] == [token for _, token in entries]


def test_an_ack_and_its_downlink_have_the_bytes_they_had_when_the_format_shipped():
    answer = acks.make_ack(signer=Signer(SIGNING_KEY), station_id=STATION, first=1, last=40, acked_through=40,
                           head="h", rejected={7: "malformed_entry"}, server_time="2026-11-02T12:00:00+00:00",
                           downlink={"customers": [{"account_id": "4000-0001"}]},
                           station_encryption_key=ENCRYPTION_KEY.public_key())
    sealed = b64url_decode(answer["downlink"])
    info = b"station-kit/downlink/v1|ST-0001|40"
    downlink = zlib.decompress(sealing.SUITE.decrypt(sealed, ENCRYPTION_KEY, info=info))
    assert downlink == b'{"customers":[{"account_id":"4000-0001"}]}'
    payload = verify_token(answer["ack"], SIGNING_KEY)
    del payload["downlink_sha256"]  # the hash of a randomised ciphertext
    assert json.dumps(payload, sort_keys=True) == ACK_PAYLOAD


#: The test vector of docs/protocol.md, "Tail claim" (the key above, seq 2000, head = base64url(SHA-256("x"))).
TAIL_CLAIM = (
    "eyJhbGciOiJFZDI1NTE5Iiwia2lkIjoiMUlHMnRNSDdKMndiSlpuT2Y4TEp6UWl0S2Y3TE12b0FFbHN1RE1WTTU0WSIsInR5cCI6InN0YXRpb24ta2l0"
    "LXRhaWwrandzIn0.eyJoZWFkIjoiTFhFV1FyY21zRVFCWW55cC02d3k5Y2hURDdHUVBNVGJBaVdIRjVJYVNJRSIsInNlcSI6MjAwMCwic3RhdGlvbiI6"
    "IlNULTAwMDEiLCJ0cyI6IjIwMjYtMTEtMDJUMjM6NDA6MDAuMDAwWiIsInYiOjF9.zS-mSNyJNhKX6DskRfOFR9Ny2azfkYiYrnRgKwmblFAPftv0kJn3"
    "J8oBbU8VMjJzXDW0RAEvStrxIcvb6hJgAw"
)


def test_a_tail_claim_is_the_documented_test_vector():
    claim = envelope.make_tail_claim(Signer(SIGNING_KEY), station_id=STATION, seq=2000,
                                     head=b64url(hashlib.sha256(b"x").digest()), ts="2026-11-02T23:40:00.000Z")
    assert claim == TAIL_CLAIM
    assert TAIL_CLAIM in Path(__file__).parents[1].joinpath("docs", "protocol.md").read_text(encoding="utf-8")
    assert envelope.verify_tail_claim(claim, public_jwk(SIGNING_KEY), STATION)["seq"] == 2000


def _meta_of(sealed) -> dict:
    """The signed meta of a sealed batch of the 40 entries."""
    plaintext = zlib.decompress(sealing.SUITE.decrypt(sealed.body, ENCRYPTION_KEY,
                                                      info=b"station-kit/batch/v1|ST-0001|1|40"))
    body = plaintext[8 + int.from_bytes(plaintext[4:8], "big"):]
    return json.loads(body[4:4 + int.from_bytes(body[:4], "big")])


def test_a_batch_without_a_tail_claim_keeps_its_bytes_and_one_with_it_adds_only_the_member():
    """Older servers read the meta by name, so a tail claim is one more member of the signed meta, nothing else."""
    entries = _entries()
    plain = {}
    for tail in (None, TAIL_CLAIM):
        sealed = envelope.seal_batch(entries, station_id=STATION, prev=genesis_prev(STATION),
                                     signer=Signer(SIGNING_KEY), server_encryption_key=ENCRYPTION_KEY.public_key(),
                                     tail=tail)
        plain[tail] = _meta_of(sealed)
    assert plain[TAIL_CLAIM] == {**plain[None], "tail": TAIL_CLAIM}


def test_a_bound_ack_and_a_batch_naming_its_downlink_add_only_their_members():
    """Older stations read the ack by name and older banks the batch meta: binding an ack to its request and naming
    the applied downlink add members, nothing else."""
    answer = acks.make_ack(signer=Signer(SIGNING_KEY), station_id=STATION, first=1, last=40, acked_through=40,
                           head="h", rejected={7: "malformed_entry"}, server_time="2026-11-02T12:00:00+00:00",
                           downlink={}, station_encryption_key=ENCRYPTION_KEY.public_key(), request="r" * 43,
                           downlink_version=12)
    payload = verify_token(answer["ack"], SIGNING_KEY)
    del payload["downlink_sha256"]
    assert payload == {**json.loads(ACK_PAYLOAD), "request": "r" * 43, "downlink_version": 12}
    entries = _entries()
    plain = {}
    for applied in (None, 7):
        sealed = envelope.seal_batch(entries, station_id=STATION, prev=genesis_prev(STATION),
                                     signer=Signer(SIGNING_KEY), server_encryption_key=ENCRYPTION_KEY.public_key(),
                                     downlink_applied=applied)
        plain[applied] = _meta_of(sealed)
        opened = envelope.open_batch(sealed.body, station_id=STATION, first=1, last=40,
                                     server_encryption_key=ENCRYPTION_KEY, station_signing_jwk=public_jwk(SIGNING_KEY))
        assert opened.downlink_applied == applied
    assert plain[7] == {**plain[None], "downlink_applied": 7}
