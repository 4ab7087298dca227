"""Sync envelopes: a station's signed, compressed, sealed batch of journal entries, and the server's ack.

Pure wire code (no Flask, no peewee) shared by the station and the sync server. docs/protocol.md, section
"Sync protocol", is the human-readable spec; in short:

- **Batch** (station -> server): a gapless run of journal entries ``first..last``. Each entry travels in a
  compact form: its payload fields minus what the receiver re-derives (``v``, ``station``, ``seq``, ``prev``,
  the constant JWS header) plus its raw 64-byte Ed25519 signature. The receiver rebuilds the exact JWS compact
  string of every entry and verifies it, so the stored token is byte for byte the station's receipt.
  The batch body is signed by the station key (a JWS with detached payload), then compressed (zlib) and sealed
  with HPKE (X25519 / HKDF-SHA256 / ChaCha20-Poly1305) to the server's X25519 key; the HPKE ``info`` binds
  station id and range, which also travel in plain HTTP headers so the server knows whose key to use.
- **Ack** (server -> station): a JWS signed by the server's Ed25519 key: acknowledged-through seq, chain head,
  rejected entries with their reasons (every other entry of the range is settled), server time, and the SHA-256
  of the **downlink**, which is sealed with HPKE to the station's X25519 key.

Invariants enforced here: an opened batch is exactly ``last - first + 1`` entries, each signed by the station
key, chained onto the declared ``prev`` and ending at the declared ``head``; nothing of a batch is returned
unless all of it verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from station.protocol.tokens import (
    ACCEPTED_ALGS,
    PROTOCOL_VERSION,
    Signer,
    TokenError,
    b64url,
    b64url_decode,
    canonical_json,
    chain_hash,
    check_header,
    is_integer,
    jws_registry,
    verification_key,
    verify_token,
)

ENVELOPE_VERSION = 1
BATCH_MAGIC = b"SKB1"
BATCH_CONTENT_TYPE = "application/vnd.station-kit.batch"
#: Plain HTTP headers of a batch request (the same values are bound into the HPKE info).
HEADER_STATION = "X-Station-Id"
HEADER_FIRST = "X-Batch-First"
HEADER_LAST = "X-Batch-Last"
#: "1" when the station has more batches to send right after this one (the server then defers the downlink).
HEADER_MORE = "X-Sync-More"
#: A sealed batch larger than this is refused before any work is done (2G links never send this much at once).
MAX_SEALED_BYTES = 2 * 1024 * 1024
#: Decompression stops here: a small sealed batch must not expand into a memory bomb.
MAX_PLAIN_BYTES = 16 * 1024 * 1024
MAX_BATCH_ENTRIES = 5000

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
SIGNATURE_BYTES = 64
_FIXED_FIELDS = ("v", "station", "seq", "type", "ts", "prev", "txn")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

_registry = jws_registry(MAX_PLAIN_BYTES)


class EnvelopeError(ValueError):
    """A batch or ack that cannot be opened. ``code`` is stable (the server's problem type uses it)."""

    code = "malformed-batch"

    def __init__(self, message: str, *, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


class Undecryptable(EnvelopeError):
    code = "undecryptable"


class BadBatchSignature(EnvelopeError):
    code = "bad-signature"


class BadEntry(EnvelopeError):
    code = "invalid-entry"


class TooLarge(EnvelopeError):
    code = "too-large"


# -- keys ---------------------------------------------------------------------------------------------------
def generate_encryption_key() -> X25519PrivateKey:
    """A fresh X25519 key (HPKE recipient key of a station or the server)."""
    return X25519PrivateKey.generate()


def encryption_private_to_text(key: X25519PrivateKey) -> str:
    """The private key as base64url of its 32 raw bytes (stored in a 0600 file)."""
    from cryptography.hazmat.primitives import serialization

    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return b64url(raw)


def encryption_private_from_text(text: str) -> X25519PrivateKey:
    """The X25519 private key from its base64url text."""
    return X25519PrivateKey.from_private_bytes(b64url_decode(text.strip()))


def encryption_public_jwk(key: X25519PrivateKey | X25519PublicKey) -> dict:
    """An X25519 public key as a JWK (``use`` = ``enc``)."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "X25519", "x": b64url(raw), "use": "enc"}


def encryption_public_from_jwk(jwk: Mapping) -> X25519PublicKey:
    """The X25519 public key of a JWK; ``ValueError`` when it is not one."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "X25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("not an X25519 public JWK")
    raw = b64url_decode(jwk["x"])
    if len(raw) != 32:
        raise ValueError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def ed25519_public_from_jwk(jwk: Mapping) -> Ed25519PublicKey:
    """The Ed25519 public key of a JWK; ``ValueError`` when it is not one."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("not an Ed25519 public JWK")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))


# -- HPKE info strings --------------------------------------------------------------------------------------
def batch_info(station_id: str, first: int, last: int) -> bytes:
    """The HPKE ``info`` of a batch: binds station id and range to the ciphertext."""
    return f"station-kit/batch/v{ENVELOPE_VERSION}|{station_id}|{first}|{last}".encode()


def downlink_info(station_id: str, acked_through: int) -> bytes:
    """The HPKE ``info`` of a downlink: binds station id and acked-through seq."""
    return f"station-kit/downlink/v{ENVELOPE_VERSION}|{station_id}|{acked_through}".encode()


def _bounded_decompress(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_PLAIN_BYTES)
    except zlib.error as exc:
        raise EnvelopeError("the batch is not valid compressed data") from exc
    if inflater.unconsumed_tail:
        raise TooLarge(f"the batch expands beyond {MAX_PLAIN_BYTES} bytes")
    if not inflater.eof:
        raise EnvelopeError("the compressed batch is truncated")
    return out


# -- compact entries ----------------------------------------------------------------------------------------
def _ts_millis(ts: str) -> int | None:
    """Milliseconds since the epoch when ``ts`` is in the exact format the journal writes, else None."""
    if not isinstance(ts, str) or not _TS_RE.match(ts):
        return None
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    millis = int(moment.timestamp() * 1000 + (0.5 if moment.timestamp() >= 0 else -0.5))
    return millis if _millis_ts(millis) == ts else None


def _millis_ts(millis: int) -> str:
    seconds, ms = divmod(millis, 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def _split_token(token: str) -> tuple[str, dict, bytes]:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWS compact serialization")
    header_b64, payload_b64, sig_b64 = parts
    payload = json.loads(b64url_decode(payload_b64))
    return header_b64, payload, b64url_decode(sig_b64)


@dataclass(frozen=True)
class OpenedEntry:
    """One verified entry of a batch: the exact token and its payload."""

    seq: int
    token: str
    payload: dict


@dataclass(frozen=True)
class Batch:
    """A verified batch: entries ``first..last`` chained from ``prev`` to ``head``."""

    station_id: str
    first: int
    last: int
    prev: str
    head: str
    entries: list[OpenedEntry] = field(default_factory=list)


@dataclass(frozen=True)
class SealedBatch:
    """What the station sends: the sealed bytes and the plain headers."""

    station_id: str
    first: int
    last: int
    body: bytes

    @property
    def headers(self) -> dict:
        """The plain HTTP headers that go with the sealed body."""
        return {
            "Content-Type": BATCH_CONTENT_TYPE,
            HEADER_STATION: self.station_id,
            HEADER_FIRST: str(self.first),
            HEADER_LAST: str(self.last),
        }


def seal_batch(
    entries: Sequence[tuple[int, str]],
    *,
    station_id: str,
    prev: str,
    signer: Signer,
    server_encryption_key: X25519PublicKey,
) -> SealedBatch:
    """Build, sign, compress and seal a batch of ``(seq, token)`` pairs (gapless, ascending).

    ``prev`` is the chain head before the first entry (the ``prev`` of the first entry's payload).
    """
    if not entries:
        raise ValueError("a batch holds at least one entry")
    first, last = entries[0][0], entries[-1][0]
    if last - first + 1 != len(entries) or any(seq != first + i for i, (seq, _) in enumerate(entries)):
        raise ValueError("a batch is a gapless run of entries")
    headers: list[str] = []
    compact: list[Any] = []
    signatures = bytearray()
    previous_ms = 0
    for seq, token in entries:
        header_b64, payload, signature = _split_token(token)
        if header_b64 not in headers:
            headers.append(header_b64)
        item = _compact_entry(payload, headers.index(header_b64), previous_ms)
        rebuilt = _rebuild_token(headers, item, station_id, seq, payload.get("prev"), previous_ms, signature)
        if rebuilt[0] != token:
            # Not the journal's canonical form (a foreign or hand-made token): send it whole.
            item = token
        else:
            previous_ms = rebuilt[1]
        compact.append(item)
        signatures += signature
    body_json = canonical_json({
        "v": ENVELOPE_VERSION,
        "station": station_id,
        "first": first,
        "last": last,
        "prev": prev,
        "head": chain_hash(entries[-1][1]),
        "headers": headers,
        "entries": compact,
    })
    body = struct.pack(">I", len(body_json)) + body_json + bytes(signatures)
    signed = _sign_detached(signer, body)
    plaintext = BATCH_MAGIC + struct.pack(">I", len(signed)) + signed.encode("ascii") + body
    sealed = SUITE.encrypt(zlib.compress(plaintext, 9), server_encryption_key, info=batch_info(station_id, first, last))
    return SealedBatch(station_id, first, last, sealed)


def _compact_entry(payload: dict, header_index: int, previous_ms: int) -> list:
    millis = _ts_millis(payload.get("ts"))
    ts: int | str = (millis - previous_ms) if millis is not None else payload.get("ts")
    rest = {key: value for key, value in payload.items() if key not in _FIXED_FIELDS}
    item = [ts, payload.get("type"), payload.get("txn"), rest]
    if payload.get("v") != PROTOCOL_VERSION:
        item.append({"v": payload.get("v")})
    if header_index:
        item.append(header_index)
    return item


def _rebuild_token(headers, item, station_id, seq, prev, previous_ms, signature) -> tuple[str, int]:
    """The exact JWS string of a compact entry, and its ts in ms (for the next entry's delta)."""
    if not isinstance(item, list) or len(item) < 4 or not isinstance(item[3], dict):
        raise BadEntry(f"entry {seq} is not a compact entry", seq=seq)
    ts, entry_type, txn, rest = item[:4]
    extras = item[4:]
    header_index = 0
    version = PROTOCOL_VERSION
    for extra in extras:
        if isinstance(extra, int) and not isinstance(extra, bool):
            header_index = extra
        elif isinstance(extra, dict) and "v" in extra:
            version = extra["v"]
    if not 0 <= header_index < len(headers):
        raise BadEntry(f"entry {seq} names an unknown header", seq=seq)
    if isinstance(ts, int) and not isinstance(ts, bool):
        millis = previous_ms + ts
        try:
            ts_text = _millis_ts(millis)
        except (OverflowError, OSError, ValueError) as exc:
            raise BadEntry(f"entry {seq} has an impossible time", seq=seq) from exc
    else:
        millis, ts_text = previous_ms, ts
    payload = dict(rest)
    payload.update(v=version, station=station_id, seq=seq, type=entry_type, ts=ts_text, prev=prev)
    if txn is not None:
        payload["txn"] = txn
    try:
        payload_bytes = canonical_json(payload)
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 encoding
        raise BadEntry(f"entry {seq} is not UTF-8 text", seq=seq) from exc
    token = f"{headers[header_index]}.{b64url(payload_bytes)}.{b64url(signature)}"
    return token, millis


def _sign_detached(signer: Signer, body: bytes) -> str:
    """A JWS over ``body`` with the payload detached (RFC 7515 appendix F): ``header..signature``."""
    header = {"alg": "Ed25519", "kid": signer.kid, "typ": "station-kit-batch+jws"}
    token = jws.serialize_compact(header, body, signer.key, registry=_registry)
    head, _, sig = token.split(".")
    return f"{head}..{sig}"


def _verify_detached(detached: str, body: bytes, key: OKPKey) -> dict:
    parts = detached.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise BadBatchSignature("the batch signature is not a detached JWS")
    token = f"{parts[0]}.{b64url(body)}.{parts[2]}"
    try:
        obj = jws.deserialize_compact(token, key, registry=_registry)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise BadBatchSignature("the batch signature does not verify with the station's key") from exc
    if obj.protected.get("alg") not in ACCEPTED_ALGS:
        raise BadBatchSignature("wrong algorithm")
    return obj.protected


def open_batch(
    sealed: bytes,
    *,
    station_id: str,
    first: int,
    last: int,
    server_encryption_key: X25519PrivateKey,
    station_signing_jwk: Mapping,
) -> Batch:
    """Decrypt, decompress and verify a sealed batch; raises an :class:`EnvelopeError` subclass."""
    if len(sealed) > MAX_SEALED_BYTES:
        raise TooLarge(f"a sealed batch is at most {MAX_SEALED_BYTES} bytes")
    if last < first or first < 1 or last - first + 1 > MAX_BATCH_ENTRIES:
        raise EnvelopeError(f"a batch range is 1 to {MAX_BATCH_ENTRIES} entries")
    try:
        compressed = SUITE.decrypt(sealed, server_encryption_key, info=batch_info(station_id, first, last))
    except (InvalidTag, ValueError) as exc:
        raise Undecryptable("the batch does not decrypt with the server's key for this station and range") from exc
    plaintext = _bounded_decompress(compressed)
    try:
        if plaintext[:4] != BATCH_MAGIC:
            raise EnvelopeError("not a station-kit batch")
        (jws_len,) = struct.unpack(">I", plaintext[4:8])
        detached = plaintext[8:8 + jws_len].decode("ascii")
        body = plaintext[8 + jws_len:]
        (json_len,) = struct.unpack(">I", body[:4])
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError("the batch is truncated") from exc
    station_key = verification_key(station_signing_jwk)
    _verify_detached(detached, body, station_key)
    try:
        meta = json.loads(body[4:4 + json_len])
    except ValueError as exc:
        raise EnvelopeError("the batch body is not JSON") from exc
    signatures = body[4 + json_len:]
    if not isinstance(meta, dict) or meta.get("v") != ENVELOPE_VERSION:
        raise EnvelopeError("unknown batch version")
    if meta.get("station") != station_id or meta.get("first") != first or meta.get("last") != last:
        raise EnvelopeError("the signed batch does not match its station or range headers")
    items = meta.get("entries")
    headers = meta.get("headers")
    prev = meta.get("prev")
    if not isinstance(items, list) or not isinstance(headers, list) or not isinstance(prev, str):
        raise EnvelopeError("the batch lacks entries, headers or prev")
    if len(items) != last - first + 1 or len(signatures) != SIGNATURE_BYTES * len(items):
        raise EnvelopeError("the batch does not hold exactly its range of entries")
    return Batch(station_id, first, last, prev, meta.get("head"),
                 _verify_entries(items, headers, signatures, station_id, first, prev, meta.get("head"),
                                 station_signing_jwk, station_key))


def _verify_entries(items, headers, signatures, station_id, first, prev, head, jwk, station_key) -> list:
    public = ed25519_public_from_jwk(jwk)
    kid = station_key.thumbprint()
    header_problems: dict[str, str | None] = {}
    for header_b64 in headers:
        if not isinstance(header_b64, str):
            raise EnvelopeError("a batch header is not text")
        try:
            check_header(header_b64, kid)
            header_problems[header_b64] = None
        except TokenError as exc:
            header_problems[header_b64] = str(exc)
    opened = []
    unsigned: list[tuple[int, bytes, bytes]] = []
    expected_prev = prev
    previous_ms = 0
    for index, item in enumerate(items):
        seq = first + index
        signature = signatures[index * SIGNATURE_BYTES:(index + 1) * SIGNATURE_BYTES]
        if isinstance(item, str):
            token = item
            try:
                payload = verify_token(token, station_key)
            except TokenError as exc:
                raise BadEntry(f"entry {seq}: {exc}", seq=seq) from exc
        else:
            token, millis = _rebuild_token(headers, item, station_id, seq, expected_prev, previous_ms, signature)
            header_b64, payload_b64, _ = token.split(".")
            if header_problems[header_b64] is not None:
                raise BadEntry(f"entry {seq}: {header_problems[header_b64]}", seq=seq)
            unsigned.append((seq, signature, f"{header_b64}.{payload_b64}".encode("ascii")))
            # Canonical by construction. A number that is not an integer is the ledger's to reject in the ack
            # (invalid_amount): refusing the batch would wedge the station's outbox on one signed entry.
            payload = json.loads(b64url_decode(payload_b64))
            previous_ms = millis
        if not is_integer(payload.get("seq")) or payload["seq"] != seq or payload.get("station") != station_id:
            raise BadEntry(f"entry {seq} carries the wrong seq or station", seq=seq)
        if payload.get("prev") != expected_prev:
            raise BadEntry(f"entry {seq}: prev does not match the hash of the previous entry", seq=seq)
        if seq == 1 and payload.get("type") != "start":
            raise BadEntry("the first entry is not a start entry", seq=1)
        opened.append(OpenedEntry(seq, token, payload))
        expected_prev = chain_hash(token)
    bad_seq = _first_bad_signature(public, unsigned)
    if bad_seq is not None:
        # A changed entry also breaks the next one's rebuilt prev: the first failure is the changed entry.
        raise BadEntry(f"entry {bad_seq}: signature does not verify", seq=bad_seq)
    if head != expected_prev:
        raise BadEntry("the batch's declared head does not match its last entry", seq=first + len(items) - 1)
    return opened


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
#: Below this many signatures, threads cost more than they save.
_PARALLEL_FROM = 64


def _executor() -> ThreadPoolExecutor:
    """A thread pool for signature checks (Ed25519 verification releases the GIL); one per process."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="verify")
        _pool_pid = os.getpid()
    return _pool


def _first_bad_in(public: Ed25519PublicKey, chunk: list[tuple[int, bytes, bytes]]) -> int | None:
    for seq, signature, signing_input in chunk:
        try:
            public.verify(signature, signing_input)
        except InvalidSignature:
            return seq
    return None


def _first_bad_signature(public: Ed25519PublicKey, unsigned: list[tuple[int, bytes, bytes]]) -> int | None:
    """The lowest seq whose signature does not verify, or None; large batches are checked on several cores."""
    if len(unsigned) < _PARALLEL_FROM or (os.cpu_count() or 1) == 1:
        return _first_bad_in(public, unsigned)
    size = -(-len(unsigned) // min(4, os.cpu_count() or 1))
    chunks = [unsigned[i:i + size] for i in range(0, len(unsigned), size)]
    failures = [seq for seq in _executor().map(lambda chunk: _first_bad_in(public, chunk), chunks) if seq is not None]
    return min(failures) if failures else None


# -- ack and downlink ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    """A verified ack: ``rejected`` maps seq -> reason; every other seq of ``first..last`` is settled."""

    station_id: str
    first: int
    last: int
    acked_through: int
    head: str
    rejected: dict[int, str]
    server_time: str
    downlink: dict


def make_ack(
    *,
    signer: Signer,
    station_id: str,
    first: int,
    last: int,
    acked_through: int,
    head: str,
    rejected: Mapping[int, str],
    server_time: str,
    downlink: Mapping,
    station_encryption_key: X25519PublicKey,
) -> dict:
    """The response body of an accepted batch: ``{"ack": JWS, "downlink": base64url(HPKE sealed)}``."""
    sealed = SUITE.encrypt(zlib.compress(canonical_json(dict(downlink)), 6), station_encryption_key,
                           info=downlink_info(station_id, acked_through))
    payload = {
        "v": ENVELOPE_VERSION,
        "typ": "ack",
        "station": station_id,
        "first": first,
        "last": last,
        "acked_through": acked_through,
        "head": head,
        "rejected": {str(seq): reason for seq, reason in sorted(rejected.items())},
        "server_time": server_time,
        "downlink_sha256": b64url(hashlib.sha256(sealed).digest()),
    }
    return {"ack": signer.sign(payload), "downlink": b64url(sealed)}


def open_ack(
    response: Mapping,
    *,
    server_signing_jwk: Mapping,
    station_id: str,
    station_encryption_key: X25519PrivateKey,
) -> Ack:
    """Verify an ack with the pinned server key and decrypt its downlink; raises :class:`EnvelopeError`."""
    try:
        payload = verify_token(response["ack"], verification_key(server_signing_jwk))
        sealed = b64url_decode(response["downlink"])
    except (TokenError, KeyError, TypeError, ValueError) as exc:
        raise BadBatchSignature(f"the ack does not verify with the server's pinned key ({exc})") from exc
    if payload.get("typ") != "ack" or payload.get("station") != station_id:
        raise EnvelopeError("the ack is not for this station")
    if b64url(hashlib.sha256(sealed).digest()) != payload.get("downlink_sha256"):
        raise EnvelopeError("the downlink does not match the ack")
    try:
        compressed = SUITE.decrypt(sealed, station_encryption_key,
                                   info=downlink_info(station_id, payload["acked_through"]))
    except (InvalidTag, ValueError) as exc:
        raise Undecryptable("the downlink does not decrypt with the station's key") from exc
    downlink = json.loads(_bounded_decompress(compressed))
    return Ack(
        station_id=station_id,
        first=payload["first"],
        last=payload["last"],
        acked_through=payload["acked_through"],
        head=payload["head"],
        rejected={int(seq): reason for seq, reason in payload.get("rejected", {}).items()},
        server_time=payload["server_time"],
        downlink=downlink,
    )
